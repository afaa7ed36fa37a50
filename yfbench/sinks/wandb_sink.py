"""Weights & Biases sink: offline by default; bounded start-up; failures warn, never kill.

JSONL stays the source of truth. W&B's start-up is bounded by ``init_timeout`` (online
with no network it would otherwise retry for minutes) and happens before the run's
clock starts, so it never counts as training time.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from yfbench.run_contract import METRICS_FILE

log = logging.getLogger(__name__)


class WandbSink:
    """Logs the same records as metrics.jsonl through the real wandb client."""

    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any],
        project: str,
        entity: str | None,
        mode: str,
        init_timeout: float = 30.0,
    ) -> None:
        self._run = None
        try:
            import wandb

            run_id = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
            self._run = wandb.init(
                project=project,
                entity=entity,
                mode=os.environ.get("WANDB_MODE", mode),
                dir=str(run_dir),
                config=config,
                id=run_id,
                resume="allow",
                name=str(run_dir),
                reinit="finish_previous",
                settings=wandb.Settings(init_timeout=init_timeout),
            )
        except Exception as error:  # W&B must never kill a run
            log.warning("W&B unavailable, logging to %s only: %s", METRICS_FILE, error)

    @classmethod
    def from_config(cls, cfg: DictConfig, run_dir: Path) -> WandbSink:
        """The sink ``cfg.logger`` asks for; a disabled one logs nothing."""
        settings = cfg.logger.wandb
        if not settings.enabled:
            return cls.disabled()
        config = OmegaConf.to_container(cfg, resolve=True)
        return cls(
            run_dir,
            config,
            settings.project,
            settings.entity,
            settings.mode,
            settings.init_timeout,
        )

    @classmethod
    def disabled(cls) -> WandbSink:
        sink = cls.__new__(cls)
        sink._run = None
        return sink

    def log(self, record: dict[str, Any]) -> None:
        if self._run is None:
            return
        split = record.get("split", "train")
        values = {f"{split}/{k}": v for k, v in record.items() if k not in ("step", "split")}
        try:
            self._run.log(values, step=record["step"])
        except Exception as error:
            log.warning("W&B logging failed, continuing with JSONL only: %s", error)
            self._run = None

    def close(self, exit_code: int = 0) -> None:
        if self._run is not None:
            try:
                self._run.finish(exit_code=exit_code)
            except Exception as error:
                log.warning("W&B finish failed: %s", error)
            self._run = None
