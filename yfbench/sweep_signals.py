"""A stop signal to a sweep's main process stops the whole sweep, workers included.

Hydra's joblib launcher trains in worker processes; a SIGTERM to the sweep's main process
alone would kill it and leave the workers training, orphaned. So the main process, while
its sweep runs, handles SIGTERM, SIGINT and SIGUSR2 itself: it marks the sweep stopped
(a file named in ``YFBENCH_SWEEP_STOP``, which jobs not yet started read and skip) and
passes a stop signal on to its worker processes: those of its descendants that ran a job
(each registers its pid when it starts one; helpers such as loky's resource tracker or
W&B's service are left alone). Each worker's run then stops after
its step with a checkpoint and records ``interrupted``, as a run in the main process
would; the sweep prints every run's status and exits 130.

The signal passed on is a *different* stop signal (SIGUSR2 for SIGTERM/SIGINT, SIGTERM for
SIGUSR2): when the same signal also reached the workers directly (Ctrl-C reaches the
whole process group), a repeat of it would be a second signal, which stops a run at once.
Between jobs a worker ignores stop signals, so an idle worker is never killed under
joblib (which would fail the sweep); the trainer handles them during a run.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

STOP_ENV = "YFBENCH_SWEEP_STOP"
MAIN_ENV = "YFBENCH_SWEEP_PID"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)
PASSED_ON = {signal.SIGTERM: signal.SIGUSR2, signal.SIGINT: signal.SIGUSR2}
PASSED_ON[signal.SIGUSR2] = signal.SIGTERM

_previous: dict[int, Any] = {}


def install(sweep_dir: Path) -> None:
    """In the sweep's main process, before any job starts."""
    stop_file = Path(sweep_dir).resolve() / f".sweep-stop-{os.getpid()}"
    stop_file.unlink(missing_ok=True)
    _workers(stop_file).mkdir(exist_ok=True)
    os.environ[STOP_ENV] = str(stop_file)
    os.environ[MAIN_ENV] = str(os.getpid())
    for sig in STOP_SIGNALS:
        _previous[sig] = signal.signal(sig, _on_signal)


def finish() -> bool:
    """In the main process when the sweep ends: whether it was stopped by a signal."""
    for sig, handler in _previous.items():
        signal.signal(sig, handler)
    _previous.clear()
    os.environ.pop(MAIN_ENV, None)
    named = os.environ.pop(STOP_ENV, "")
    if not named:  # no sweep was installed in this process
        return False
    stop_file = Path(named)
    stopped = stop_file.is_file()
    stop_file.unlink(missing_ok=True)
    workers = _workers(stop_file)
    for entry in workers.glob("*") if workers.is_dir() else []:
        entry.unlink(missing_ok=True)
    if workers.is_dir():
        workers.rmdir()
    return stopped


def stopped() -> bool:
    """In any job: the sweep was stopped, so a job that has not started must not start."""
    path = os.environ.get(STOP_ENV)
    return bool(path) and Path(path).is_file()


def in_worker() -> bool:
    """This job runs in a process other than the sweep's main one (joblib, submitit)."""
    main = os.environ.get(MAIN_ENV)
    return main is not None and main != str(os.getpid())


def start_job() -> None:
    """In a worker, as a job starts: register its pid; ignore stop signals outside a run
    (the trainer handles them during one)."""
    if not in_worker():
        return
    (_workers(Path(os.environ[STOP_ENV])) / str(os.getpid())).touch()
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _workers(stop_file: Path) -> Path:
    return stop_file.with_name(stop_file.name + ".workers")


def _registered_workers() -> list[int]:
    """The sweep's workers still running below this process."""
    stop_file = os.environ.get(STOP_ENV)
    if not stop_file or not _workers(Path(stop_file)).is_dir():
        return []
    registered = {int(p.name) for p in _workers(Path(stop_file)).iterdir() if p.name.isdigit()}
    return [pid for pid in descendants(os.getpid()) if pid in registered]


def _on_signal(signum: int, frame: Any) -> None:
    del frame
    stop_file = os.environ.get(STOP_ENV)
    if stop_file:
        Path(stop_file).touch()
    for pid in _registered_workers():
        try:
            os.kill(pid, PASSED_ON[signal.Signals(signum)])
        except ProcessLookupError:
            pass
    # A second signal to the main process: stop at once (and the workers, at their next).
    signal.signal(signum, lambda *_: _stop_now(signum))


def _stop_now(signum: int) -> None:
    for pid in _registered_workers():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; none elsewhere)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            # The command name (field 2) may hold spaces; the parent pid follows its ')'.
            parent = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        children = parents.get(queue.pop(), [])
        found += children
        queue += children
    return found
