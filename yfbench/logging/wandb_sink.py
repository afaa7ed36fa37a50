"""Weights & Biases sink: offline by default; any W&B failure warns and disables it."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any


class WandbSink:
    """Logs the same records as metrics.jsonl through the real wandb client."""

    def __init__(
        self, run_dir: Path, config: dict[str, Any], project: str, entity: str | None, mode: str
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
            )
        except Exception as error:  # noqa: BLE001 - W&B must never kill a run
            warnings.warn(f"W&B unavailable, logging to metrics.jsonl only: {error}", stacklevel=2)

    def log(self, record: dict[str, Any]) -> None:
        if self._run is None:
            return
        split = record.get("split", "train")
        values = {f"{split}/{k}": v for k, v in record.items() if k not in ("step", "split")}
        try:
            self._run.log(values, step=record["step"])
        except Exception as error:  # noqa: BLE001
            warnings.warn(f"W&B logging failed, continuing with JSONL only: {error}", stacklevel=2)
            self._run = None

    def close(self, exit_code: int = 0) -> None:
        if self._run is not None:
            try:
                self._run.finish(exit_code=exit_code)
            except Exception as error:  # noqa: BLE001
                warnings.warn(f"W&B finish failed: {error}", stacklevel=2)
            self._run = None
