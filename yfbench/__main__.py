"""Hydra entry point: ``python -m yfbench task=... optimizer=... scale=cpu|paper seed=...``.

``python -m yfbench.torchrun --nproc_per_node=N -m yfbench ...`` (torchrun's arguments;
yfbench/torchrun.py) trains the same run with N processes.
Under Hydra's Optuna sweeper (``hydra/sweeper=optuna``, e.g. ``experiment=optuna_lr``)
each run returns its objective (:mod:`yfbench.analysis.objective`); a failed run returns
none, and the sweeper records that trial as failed.
"""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra import compose
from hydra._internal import utils as hydra_utils
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import yfbench.config  # noqa: F401 - registers the config tree's resolver
from yfbench import sweep_signals
from yfbench.errors import UserError
from yfbench.hydra_callbacks import abandon_sweep, report_to_sweep

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
EXIT_CODES = {"completed": 0, "diverged": 0, "interrupted": 130, "failed": 1}
log = logging.getLogger("yfbench")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Train one run; in a multirun, a failed run is recorded and the sweep goes on."""
    # The engine (and torch, seconds to import) only once the config has composed: a
    # mistyped command line answers at once.
    from yfbench.engine.distributed import Ranks, log_file_for_main_only
    from yfbench.engine.trainer import run

    logging.captureWarnings(True)  # library warnings (a rebuilt cache, say) reach the run's log
    # A log file that cannot be written (a full disk) must not print logging's tracebacks
    # around the run's own message; the console handlers still show every line.
    logging.raiseExceptions = False
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = list(hydra_cfg.overrides.task)
    choices = {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra")}
    ranks = Ranks.from_environment()
    log_file_for_main_only(ranks)
    if multirun and sweep_signals.stopped():
        report_to_sweep(run_dir, "interrupted", "the sweep was stopped before this run started")
        return
    sweep_signals.start_job()
    if multirun and ranks.distributed:
        log.error("error: torchrun trains one run; start one torchrun per run, without -m")
        sys.exit(2)
    try:
        summary = run(cfg, run_dir, overrides, choices, reference=_reference(choices))
    except UserError as error:
        log.error("error: %s", error)
        report_to_sweep(run_dir, "failed", str(error))
        if multirun:
            return
        sys.exit(2)
    except Exception as error:  # already recorded in summary.json as failed
        report_to_sweep(run_dir, "failed", f"{type(error).__name__}: {error}")
        if not multirun:
            raise
        log.exception("run %s failed", run_dir)
        return
    status = summary["status"]
    report_to_sweep(run_dir, status, summary.get("error"))
    if ranks.is_main:  # one status line per run, not one per process
        log.info("%s: %s after %d steps", run_dir, status, summary["steps"])
        if status == "diverged":
            log.info("%s", summary["error"])
    if status == "interrupted" and multirun and sweep_signals.in_worker():
        return  # the sweep's main process stops the sweep (yfbench/sweep_signals.py)
    if status == "interrupted" or (not multirun and EXIT_CODES[status]):
        sys.exit(EXIT_CODES[status])  # a signal stops the whole sweep, not just this run
    if multirun and _searches(hydra_cfg):
        from yfbench.analysis.objective import run_objective  # pandas only where needed

        return run_objective(run_dir)
    return None


def _searches(hydra_cfg: DictConfig) -> bool:
    """Whether the sweeper minimises what a run returns (Hydra's Optuna sweeper)."""
    return "optuna" in str(hydra_cfg.sweeper.get("_target_", "")).lower()


def _reference(choices: dict[str, str | None]) -> DictConfig:
    """The config of the same group choices without value overrides: the key schema."""
    overrides = [f"{group}={choice}" for group, choice in choices.items() if choice is not None]
    return compose(config_name="config", overrides=overrides)


def stop_on_a_full_disk(func: Callable[[], Any]) -> Any:
    """``func()``; a full disk under it is one message and exit 2, never a traceback.

    Hydra writes some files itself before any run of a sweep starts (the sweep's
    multirun.yaml; ``hydra.output_subdir`` is null, so no ``.hydra/`` copies) and reports
    an error there with a traceback. Only ENOSPC and EDQUOT are caught; a multirun.yaml
    Hydra cut short is removed (``abandon_sweep``).
    """
    try:
        return func()
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        cut_short = abandon_sweep()
        where = error.filename or cut_short or "Hydra's files"
        print(
            f"yfbench: error: cannot write {where} ({error.strerror}): free some space and "
            "rerun the same command",
            file=sys.stderr,
        )
        sys.exit(2)


def _full_disk_is_one_message() -> None:
    """Hydra runs the app through ``run_and_report``, which prints any error's traceback:
    each function it runs goes through ``stop_on_a_full_disk`` first."""
    report = getattr(hydra_utils, "run_and_report", None)
    if report is None:  # another Hydra: its own report stays
        return
    hydra_utils.run_and_report = lambda func: report(lambda: stop_on_a_full_disk(func))


if __name__ == "__main__":
    _full_disk_is_one_message()
    main()
