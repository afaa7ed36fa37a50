"""Hydra callbacks: check the output directory before Hydra writes to it, and end a sweep
with one line per run and a non-zero exit status when any run failed.

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

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from yfbench.engine.environment import COMMAND_ENV, command_line
from yfbench.engine.run_dir import ensure_writable
from yfbench.errors import UserError

STATUS_ENV = "YFBENCH_SWEEP_STATUS"
log = logging.getLogger("yfbench")


class RunCallbacks(Callback):
    """Registered in conf/config.yaml (``hydra.callbacks.yfbench``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _writable_or_exit(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        _writable_or_exit(sweep_dir, "hydra.sweep.dir")
        status_file = sweep_dir / f".sweep-status-{os.getpid()}-{time.time_ns()}.jsonl"
        status_file.write_text("")
        os.environ[STATUS_ENV] = str(status_file.resolve())
        os.environ[COMMAND_ENV] = command_line()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(COMMAND_ENV, None)
        status_file = Path(os.environ.pop(STATUS_ENV, ""))
        if not status_file.is_file():
            return
        outcomes = [json.loads(line) for line in status_file.read_text().splitlines() if line]
        status_file.unlink()
        _print_sweep_summary(outcomes)
        if any(o["status"] not in ("completed", "diverged") for o in outcomes):
            sys.exit(1)


def report_to_sweep(run_dir: Path, status: str, error: str | None) -> None:
    """Append this job's outcome to the sweep's status file (nothing outside a sweep)."""
    path = os.environ.get(STATUS_ENV)
    if not path:
        return
    line = json.dumps({"run_dir": str(run_dir), "status": status, "error": error}) + "\n"
    with open(path, "a", encoding="utf-8") as handle:  # one short append per job
        handle.write(line)


def _print_sweep_summary(outcomes: list[dict[str, Any]]) -> None:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    totals = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"[yfbench] sweep finished: {len(outcomes)} runs: {totals}")
    for outcome in outcomes:
        if outcome["status"] not in ("completed", "diverged"):
            print(f"[yfbench]   {outcome['status']}: {outcome['run_dir']}: {outcome['error']}")


def _writable_or_exit(path: Path, key: str) -> None:
    """Before Hydra creates ``path``: one message and exit 2 if it cannot be written."""
    try:
        ensure_writable(path)
    except UserError as error:
        print(f"yfbench: error: {error} (from {key})", file=sys.stderr)
        sys.exit(2)
