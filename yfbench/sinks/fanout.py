"""One object the trainer emits every record to, once: it writes each sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from yfbench.sinks.jsonl import JsonlSink, MetricsPosition
from yfbench.sinks.wandb_sink import WandbSink


class Sinks:
    """metrics.jsonl and the W&B run of one run directory (rank 0's, under torchrun)."""

    def __init__(self, jsonl: JsonlSink, wandb: WandbSink) -> None:
        self.jsonl = jsonl
        self.wandb = wandb

    @classmethod
    def open(
        cls, cfg: DictConfig, run_dir: Path, metrics_path: Path, resume_from: MetricsPosition | None
    ) -> Sinks:
        """The run's sinks; ``resume_from`` continues a verified prefix of metrics.jsonl."""
        return cls(JsonlSink(metrics_path, resume_from), WandbSink.from_config(cfg, run_dir))

    def emit(self, records: list[dict[str, Any]]) -> None:
        self.jsonl.log_many(records)
        for record in records:
            self.wandb.log(record)

    def position(self) -> MetricsPosition:
        """Where metrics.jsonl ends now (stored in checkpoints)."""
        return self.jsonl.position()

    def close(self, succeeded: bool) -> None:
        self.jsonl.close()
        self.wandb.close(exit_code=0 if succeeded else 1)
