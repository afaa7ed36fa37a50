"""Hand-made run directories (the run contract's three files) for analysis tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from yfbench.engine.run_dir import config_hash
from yfbench.run_contract import json_safe


def write_run(
    root: Path,
    name: str,
    *,
    optimizer: dict[str, Any],
    seed: int,
    losses: list[float],
    task: str = "toy",
    scale: str = "cpu",
    trainer: dict[str, Any] | None = None,
    task_extra: dict[str, Any] | None = None,
    train_extra: dict[str, list[float]] | None = None,
    valid: dict[str, float] | None = None,
    status: str = "completed",
    window: int = 5,
    grid_point: str | None = None,
    max_steps: int | None = None,
    summary: dict[str, Any] | None = None,
) -> Path:
    """One run whose train loss at step t + 1 is ``losses[t]``; ``train_extra`` adds
    per-step columns, ``valid`` one validation record at the end. ``max_steps`` (default:
    the number of losses) is the configured length, e.g. of a run that diverged early;
    ``summary`` adds keys to summary.json (e.g. the task's declared metrics)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    max_steps = max_steps or len(losses)
    config = {
        "task": {"name": task, "paper_max_steps": 10 * max_steps, **(task_extra or {})},
        "scale": {"name": scale},
        "optimizer": optimizer,
        "trainer": {"max_steps": max_steps, "staleness": 0, **(trainer or {})},
        "seed": seed,
    }
    record = {
        "config_hash": config_hash(config),
        "config": config,
        "analysis": {"window": window},
        "overrides": [],
        "choices": {"grid_point": grid_point} if grid_point else {},
    }
    (run_dir / "run_config.json").write_text(json.dumps(record))
    ended = {"status": status, "steps": len(losses), **(summary or {})}
    (run_dir / "summary.json").write_text(json.dumps(ended))
    lines = []
    for t, loss in enumerate(losses):
        row = {"step": t + 1, "split": "train", "loss": loss}
        row.update({k: v[t] for k, v in (train_extra or {}).items()})
        lines.append(json.dumps(json_safe(row)))
    if valid:
        lines.append(json.dumps({"step": len(losses), "split": "valid", **valid}))
    with gzip.open(run_dir / "metrics.jsonl.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    return run_dir
