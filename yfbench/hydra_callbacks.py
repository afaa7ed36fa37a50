"""Hydra callbacks: check the output directory before Hydra writes to it, and end a sweep
with one line per run and a non-zero exit status when any run failed (or, when Hydra's own
write fails on a full disk, undo the sweep's set-up: ``abandon_sweep``).

Every job of a sweep (in this process, a joblib worker or a SLURM job) appends its
outcome to a status file in the sweep directory, named in ``YFBENCH_SWEEP_STATUS``;
the sweep's process reads it back when the sweep ends.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from yfbench import sweep_signals
from yfbench.engine.environment import COMMAND_ENV, command_line
from yfbench.engine.run_dir import ensure_writable
from yfbench.errors import UserError

STATUS_ENV = "YFBENCH_SWEEP_STATUS"
log = logging.getLogger("yfbench")
# The sweep this process started (on_multirun_start): its directory and multirun.yaml text.
_sweep: dict[str, Any] = {}


class RunCallbacks(Callback):
    """Registered in conf/config.yaml (``hydra.callbacks.yfbench``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _writable_or_exit(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        _writable_or_exit(sweep_dir, "hydra.sweep.dir")
        _refuse_duplicate_values(config)
        # What Hydra's sweeper writes next (OmegaConf.save, unresolved): a multirun.yaml
        # that is not this text was cut short (abandon_sweep).
        _sweep.update(dir=sweep_dir, multirun_yaml=OmegaConf.to_yaml(config))
        status_file = sweep_dir / f".sweep-status-{os.getpid()}-{time.time_ns()}.jsonl"
        try:
            status_file.write_text("")
        except OSError as error:
            print(f"yfbench: error: cannot write {status_file} ({error.strerror})", file=sys.stderr)
            sys.exit(2)
        os.environ[STATUS_ENV] = str(status_file.resolve())
        os.environ[COMMAND_ENV] = command_line()
        sweep_signals.install(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _sweep.clear()
        os.environ.pop(COMMAND_ENV, None)
        stopped = sweep_signals.finish()
        status_file = Path(os.environ.pop(STATUS_ENV, ""))
        if not status_file.is_file():
            return
        outcomes = [json.loads(line) for line in status_file.read_text().splitlines() if line]
        status_file.unlink()
        _print_sweep_summary(outcomes)
        if stopped:
            sys.exit(130)  # as a single run stopped by a signal
        if any(o["status"] not in ("completed", "diverged") for o in outcomes):
            sys.exit(1)


def abandon_sweep() -> Path | None:
    """A sweep that Hydra could not go on with (its own write failed, on a full disk): undo
    what on_multirun_start set up, and remove a multirun.yaml that Hydra left cut short.
    Returns that file's path, or None."""
    sweep_dir, expected = _sweep.pop("dir", None), _sweep.pop("multirun_yaml", None)
    os.environ.pop(COMMAND_ENV, None)
    sweep_signals.finish()
    status = os.environ.pop(STATUS_ENV, "")
    if status:
        Path(status).unlink(missing_ok=True)
    if sweep_dir is None:
        return None
    path = Path(sweep_dir) / "multirun.yaml"
    if not (path.exists() or path.is_symlink()) or _holds(path, expected):
        return None
    path.unlink()
    return path


def _holds(path: Path, text: str) -> bool:
    """``path`` is a plain file with exactly ``text`` (read no further than that)."""
    if path.is_symlink() or not path.is_file():
        return False
    data = text.encode()
    with open(path, "rb") as handle:
        return handle.read(len(data) + 1) == data


def report_to_sweep(run_dir: Path, status: str, error: str | None) -> None:
    """Append this job's outcome to the sweep's status file (nothing outside a sweep)."""
    path = os.environ.get(STATUS_ENV)
    if not path:
        return
    line = json.dumps({"run_dir": str(run_dir), "status": status, "error": error}) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as handle:  # one short append per job
            handle.write(line)
    except OSError as error:  # a full disk: the run's own files say how it ended
        log.error("cannot record this run's outcome in %s (%s)", path, error.strerror)


def _print_sweep_summary(outcomes: list[dict[str, Any]]) -> None:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    totals = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"[yfbench] sweep finished: {len(outcomes)} runs: {totals}")
    for outcome in outcomes:
        if outcome["status"] not in ("completed", "diverged"):
            print(f"[yfbench]   {outcome['status']}: {outcome['run_dir']}: {outcome['error']}")


def _refuse_duplicate_values(config: DictConfig) -> None:
    """One message and exit 2 for a sweep that lists a value twice (``lr=0.001,1e-3``):
    both would be one run directory, reported as two runs."""
    texts = list(config.hydra.overrides.task)
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    texts += [f"{key}={value}" for key, value in params.items()]
    for override in OverridesParser.create().parse_overrides(texts):
        value = override.value() if override.is_sweep_override() else None
        if not isinstance(value, ChoiceSweep):
            continue
        seen: dict[tuple[str, Any], Any] = {}
        for item in value.list:
            key = (type(item).__name__, item if isinstance(item, int | float | str) else repr(item))
            if key in seen:
                print(
                    f"yfbench: error: the sweep lists {override.get_key_element()}={item!r} "
                    f"twice ({override.input_line}); each value names one run directory, so "
                    "list each value once",
                    file=sys.stderr,
                )
                sys.exit(2)
            seen[key] = item


def _writable_or_exit(path: Path, key: str) -> None:
    """Before Hydra creates ``path``: one message and exit 2 if it cannot be written."""
    try:
        ensure_writable(path)
    except UserError as error:
        print(f"yfbench: error: {error} (from {key})", file=sys.stderr)
        sys.exit(2)
