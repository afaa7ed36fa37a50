"""One object for what a run has done: checkpointed with the model, written as summary.json."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunState:
    """Progress and outcome of a run, across every session that worked on it."""

    step: int = 0
    wall_time_s: float = 0.0  # all sessions; excludes start-up (data, model, loggers)
    best: dict[str, float] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    status: str = "failed"  # until the loop says otherwise
    error: str | None = None
    diverged_step: int | None = None

    def observe_validation(self, metrics: dict[str, float], directions: Mapping[str, str]) -> None:
        """Keep the best finite value of every validation metric, and the latest ones.

        ``directions`` is the task's declaration (``Task.metrics``): "min" or "max" per metric.
        """
        undeclared = sorted(set(metrics) - set(directions))
        if undeclared:
            raise ValueError(
                f"the task's evaluate() returned metrics it does not declare: {undeclared}; "
                "add them, with their direction, to the task's `metrics`"
            )
        for key, value in metrics.items():
            if not math.isfinite(value):
                continue
            best = self.best.get(key)
            lower = directions[key] == "min"
            if best is None or (value < best if lower else value > best):
                self.best[key] = value
        self.final.update({f"valid_{key}": value for key, value in metrics.items()})

    def checkpoint(self) -> dict[str, Any]:
        """What a checkpoint keeps: the progress, not the outcome of this session."""
        return {
            "step": self.step,
            "wall_time_s": self.wall_time_s,
            "best": self.best,
            "final": self.final,
        }

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> RunState:
        return cls(
            step=int(saved["step"]),
            wall_time_s=float(saved["wall_time_s"]),
            best=dict(saved["best"]),
            final=dict(saved["final"]),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "steps": self.step,
            "wall_time_s": self.wall_time_s,
            "final": self.final,
            "best": self.best,
            "error": self.error,
            "diverged_step": self.diverged_step,
        }
