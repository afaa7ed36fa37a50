"""One run over two processes (torchrun, gloo on CPU): the same run as one process, resumable,
written once, stopped by a signal with one line.

Runs start through the documented launcher, ``python -m yfbench.torchrun`` (torchrun's
arguments). They share one module-scoped uninterrupted reference: every launch costs
seconds of start-up on a busy machine.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.distributed.elastic.multiprocessing import api as elastic_api

from tests.helpers import REPO_ROOT, records, summary
from yfbench import torchrun
from yfbench.config import compose
from yfbench.engine import checkpoint
from yfbench.errors import UserError
from yfbench.tasks import TaskContext, build_task

# A small LSTM and YellowFin: 40 steps, validation at 20 and 40.
RUN = [
    "task=tinyshakespeare_lstm",
    "task.model.hidden_size=32",
    "task.model.embed_size=32",
    "optimizer=yellowfin",
    "trainer.max_steps=40",
    "trainer.eval_every=20",
    "trainer.threads=1",
]
# One process and two round differently (one mean over the batch, or the mean of two
# half-batch means). Measured over these 40 steps: loss 1e-7, lr 6e-7, h_min 5e-7,
# grad_norm_sq 8e-7; grad_var (a difference of near-equal averages) 3e-6 and the momentum
# (a cubic's root in it) 5e-6, hence their looser bound.
CLOSE = {"loss": 1e-5, "lr": 1e-5, "h_min": 1e-5, "h_max": 1e-5, "grad_norm_sq": 1e-5}
LOOSER = {"momentum": 1e-4, "grad_var": 1e-4}
RUN_FILES = {".lock", "metrics.jsonl", "run_config.json", "summary.json", "yfbench.log"}
DATA = Path(os.environ.get("YFBENCH_TEST_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def _environment() -> dict[str, str]:
    """conftest's offline settings, which the module-scoped reference run starts before."""
    offline = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    return {**os.environ, "YFBENCH_DATA_DIR": str(DATA), **offline}


def _torchrun(args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "yfbench.torchrun",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "yfbench",
        *args,
    ]


def run_two(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        _torchrun(args),
        cwd=REPO_ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_two(args: list[str], output: Path | None = None) -> subprocess.Popen:
    """torchrun in the background (a session of its own: no terminal signal reaches it);
    its stdout and stderr into ``output``/stdout and ``output``/stderr when given."""
    streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        streams = {name: open(output / name, "w") for name in streams}
    try:
        return subprocess.Popen(
            _torchrun(args), cwd=REPO_ROOT, env=_environment(), start_new_session=True, **streams
        )
    finally:
        for stream in streams.values():
            if stream is not subprocess.DEVNULL:
                stream.close()  # the child holds its own copy


def wait_for(condition, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"the run ended (exit {process.poll()}) or timed out first")


def crash(process: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers, as a machine failure would (each worker has a
    session of its own, so the process group of torchrun does not hold them)."""
    workers = [
        int(pid)
        for pid in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    ]
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie): it may still hold the run directory's lock."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def metrics_lines(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted two-process run."""
    if not DATA.is_dir():
        pytest.skip(f"offline data not found at {DATA}")
    run_dir = tmp_path_factory.mktemp("distributed") / "reference"
    result = run_two([*RUN, f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_two_processes_train_the_one_process_run(reference, tmp_path, run_main):
    single = tmp_path / "single"
    result = run_main([*RUN, f"hydra.run.dir={single}"])
    assert result.returncode == 0, result.stderr
    one, two = records(single), records(reference)
    assert [(r["step"], r["split"]) for r in two] == [(r["step"], r["split"]) for r in one]
    assert summary(reference)["processes"] == 2 and summary(single)["processes"] == 1
    for a, b in zip(one, two, strict=True):
        for key, rtol in {**CLOSE, **LOOSER}.items():
            if a["split"] == "train":
                assert b[key] == pytest.approx(a[key], rel=rtol), (a["step"], key)
        if a["split"] == "valid":  # rank 0 evaluates the same model on the whole set
            assert b["perplexity"] == pytest.approx(a["perplexity"], rel=1e-5)


def test_only_rank_0_writes_the_run_files(reference):
    assert {path.name for path in reference.iterdir()} == RUN_FILES
    steps = [r["step"] for r in records(reference) if r["split"] == "train"]
    assert steps == list(range(1, 41))  # each record once: no second writer
    log_text = (reference / "yfbench.log").read_text()
    assert log_text.count("completed after 40 steps") == 1


@pytest.mark.slow  # two torchrun launches; an in-process crash of each task is in test_faults
def test_a_killed_run_resumes_like_an_uninterrupted_one(reference, tmp_path):
    run_dir = tmp_path / "crashed"
    args = [*RUN, "trainer.checkpoint_every=8", "trainer.flush_every=1", f"hydra.run.dir={run_dir}"]
    process = start_two(args)
    wait_for(lambda: (run_dir / "checkpoint.pt").exists(), process)
    crash(process)
    assert not (run_dir / "summary.json").exists(), "the run finished before the kill"
    payload = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert [len(rank["task"]["hidden"][0][0]) for rank in payload["ranks"]] == [25, 25]

    resumed = run_two(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    assert records(run_dir) == records(reference)


@pytest.mark.slow  # two torchrun launches: minutes on a busy machine
def test_sigterm_to_the_launcher_stops_every_rank_at_one_step_then_resumes(reference, tmp_path):
    run_dir, output = tmp_path / "stopped", tmp_path / "output"
    args = [*RUN, "trainer.flush_every=1", f"hydra.run.dir={run_dir}"]
    process = start_two(args, output)
    wait_for(lambda: metrics_lines(run_dir) >= 5, process)
    process.send_signal(signal.SIGTERM)  # the launcher passes it on to its workers
    assert process.wait(timeout=60) == torchrun.STOP_EXIT_CODE  # 130, as one process
    stderr = (output / "stderr").read_text()
    assert stderr.splitlines() == [STOPPED.format("SIGTERM")], stderr  # no traceback
    assert (output / "stdout").read_text().count("interrupted after") == 1  # rank 0's line
    stopped = summary(run_dir)  # the workers got SIGUSR2: another stop signal, passed on
    assert stopped["status"] == "interrupted" and "SIGUSR2" in stopped["error"]
    assert stopped["steps"] < 40 and (run_dir / "checkpoint.pt").exists()

    resumed = run_two(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert records(run_dir) == records(reference)


# ------------------------------------------------------------------ in one process
STOPPED = "[yfbench] stopped by {}; rerun the same command to resume the run from its checkpoint"
LAUNCH = ["--standalone", "--nproc_per_node=2", "-m", "yfbench", "task=noisy_quadratic"]


@pytest.fixture
def launcher(monkeypatch):
    """yfbench.torchrun's main with torchrun's launch replaced by ``action(args)``; returns
    the args it got. Restored after: torch's handler, the process's signal handlers, the
    launcher's record of stops and the environment."""
    monkeypatch.setattr(
        elastic_api, "_terminate_process_handler", elastic_api._terminate_process_handler
    )
    monkeypatch.setattr(torchrun, "_stops", [])
    monkeypatch.delenv(torchrun.SHUTDOWN_TIMEOUT_ENV, raising=False)
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2)
    before = {sig: signal.getsignal(sig) for sig in handled}
    launched = []

    def launch(action=lambda args: None):
        def fake(args) -> None:
            launched.append(args)
            action(args)

        monkeypatch.setattr(torchrun, "_launch", fake)
        return launched

    yield launch
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_the_launcher_ends_torchruns_stop_with_one_line_and_exit_130(launcher, capsys):
    # A real SIGTERM to this process while torchrun's agent runs (its rendezvous, say).
    launcher(lambda args: os.kill(os.getpid(), signal.SIGTERM))
    assert torchrun.main(LAUNCH) == 130
    captured = capsys.readouterr()
    assert captured.err == STOPPED.format("SIGTERM") + "\n" and captured.out == ""
    # once it starts the processes, torchrun's agent installs this module's handler
    assert elastic_api._terminate_process_handler is torchrun._on_stop_signal
    assert "_terminate_process_handler" in inspect.getsource(elastic_api.PContext.start)


def test_the_launcher_handles_sigusr2_and_waits_for_a_checkpoint(launcher, monkeypatch):
    launched = launcher()
    assert torchrun.main(LAUNCH) == 0
    assert launched[-1].signals_to_handle.split(",")[-1] == "SIGUSR2"
    assert launched[-1].shutdown_timeout == torchrun.SHUTDOWN_TIMEOUT_S
    assert torchrun.main(["--signals_to_handle=SIGTERM", "--shutdown_timeout=5", *LAUNCH]) == 0
    assert (launched[-1].signals_to_handle, launched[-1].shutdown_timeout) == ("SIGTERM", 5)
    monkeypatch.setenv(torchrun.SHUTDOWN_TIMEOUT_ENV, "7")  # torchrun reads it itself
    assert torchrun.main(LAUNCH) == 0 and launched[-1].shutdown_timeout is None


def test_a_second_stop_signal_to_the_launcher_kills_its_processes_at_once(
    launcher, monkeypatch, capsys
):
    killed, handlers = [], {}
    monkeypatch.setattr(torchrun, "descendants", lambda pid: [101, 102])
    monkeypatch.setattr(torchrun.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    monkeypatch.setattr(torchrun.signal, "signal", lambda sig, h: handlers.setdefault(sig, h))
    with pytest.raises(elastic_api.SignalException) as first:  # torchrun's own handling
        torchrun._on_stop_signal(signal.SIGINT, None)
    assert first.value.sigval == signal.SIGUSR2  # passed on as another stop signal
    assert killed == [] and capsys.readouterr().err == ""
    with pytest.raises(SystemExit):  # only as the signal is not delivered here
        torchrun._on_stop_signal(signal.SIGINT, None)
    own = (os.getpid(), signal.SIGINT)  # then ends by the signal, as one process does
    assert killed == [(101, signal.SIGKILL), (102, signal.SIGKILL), own]
    assert handlers == {signal.SIGINT: signal.SIG_DFL}
    assert "stopped at once by a second SIGINT" in capsys.readouterr().err


def _record(logger: logging.Logger, message: str, *args) -> logging.LogRecord:
    return logger.makeRecord(logger.name, logging.WARNING, "", 0, message, args, None)


def test_torchruns_own_lines_about_a_stop_are_quiet_after_one(launcher):
    launcher()
    torchrun.main(LAUNCH)  # installs the filter
    logger = logging.getLogger("torch.distributed.elastic.multiprocessing.api")
    chatter = _record(logger, "Sending process %s closing signal %s", 1, "SIGUSR2")
    failure = _record(logger, "Unable to shutdown process %s via %s, forcefully exiting", 1, 2)
    assert logger.filter(chatter) and logger.filter(failure)  # no stop yet: all shown
    torchrun._stops.append(signal.SIGTERM)
    assert not logger.filter(chatter) and logger.filter(failure)


def test_the_ranks_rows_make_up_the_one_process_batch(build_tiny_task):
    whole = build_tiny_task("tinyshakespeare_lstm")
    shares = [build_tiny_task("tinyshakespeare_lstm", rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 3):
        joined = torch.cat([share._rows(epoch) for share in shares])
        assert torch.equal(joined, whole._rows(epoch))
    assert [share._rows(0).shape[0] for share in shares] == [5, 5]  # half the batch each


def test_a_batch_that_does_not_split_evenly_is_one_message():
    ctx = TaskContext(
        seed=1,
        device=torch.device("cpu"),
        data_dir=Path("."),
        cache_dir=Path("."),
        rank=1,
        world_size=3,
    )
    assert ctx.share(30) == slice(10, 20)
    with pytest.raises(UserError, match=r"task.batch_size=50 .* divisible .* \(3\)"):
        ctx.share(50)


def test_the_noisy_quadratic_refuses_several_processes(tmp_path):
    cfg = compose(["task=noisy_quadratic", "task.dim=10"])
    ctx = TaskContext(1, torch.device("cpu"), tmp_path, tmp_path, rank=0, world_size=2)
    with pytest.raises(UserError, match="run it in one process"):
        build_task(cfg.task, ctx)


def test_a_checkpoint_resumes_only_with_the_processes_that_saved_it(tmp_path):
    shared = {"model": {}, "run_state": {}}
    own = [{"rng": r, "task": {"hidden": r}, "divergence": r} for r in range(2)]
    payload = checkpoint.with_ranks({**shared, **own[0]}, own)
    assert checkpoint.for_rank(payload, tmp_path, 1, 2) == {**payload, **own[1]}
    with pytest.raises(UserError, match="saved by a run of 2 process"):
        checkpoint.for_rank(payload, tmp_path, 0, 1)
    single = {**shared, **own[0]}
    assert checkpoint.with_ranks(single, own[:1]) is single
    with pytest.raises(UserError, match="saved by a run of 1 process"):
        checkpoint.for_rank(single, tmp_path, 0, 2)
