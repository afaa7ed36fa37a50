"""Hydra entry point: ``python -m yfbench task=... optimizer=... scale=mini|paper seed=...``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from yfbench.engine.trainer import Trainer
from yfbench.errors import UserError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
EXIT_CODES = {"completed": 0, "diverged": 0, "interrupted": 130, "failed": 1}


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Train one run; in a multirun, a failed run is recorded and the sweep goes on."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        summary = Trainer(cfg, run_dir).run()
    except UserError as error:
        print(f"yfbench: error: {error}", file=sys.stderr)
        if multirun:
            return
        sys.exit(2)
    except Exception as error:  # noqa: BLE001 - already recorded in summary.json as failed
        if not multirun:
            raise
        print(f"yfbench: run {run_dir} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return
    status = summary["status"]
    print(f"[yfbench] {run_dir}: {status} after {summary['steps']} steps")
    if status == "diverged":
        print(f"[yfbench] {summary['error']}")
    if status == "interrupted" or (not multirun and EXIT_CODES[status]):
        sys.exit(EXIT_CODES[status])  # a signal stops the whole sweep, not just this run


if __name__ == "__main__":
    main()
