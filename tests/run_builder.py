"""Hand-made run directories (the run contract's three files) for analysis tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from yfbench.run_contract import config_hash, json_safe

# The analysis tests' runs, laid out as the launcher and logged as the trainer does:
# under toy_task/mini, at least 100 steps configured, lr 0.1 and momentum 0.5 on every
# train record, and a validation record (accuracy 0.5) every 10 steps.
TOY_TASK: dict[str, Any] = {
    "task": "toy_task",
    "scale": "mini",
    "max_steps": 100,
    "train_extra": {"lr": 0.1, "momentum": 0.5},
    "valid": {"accuracy": 0.5},
    "valid_every": 10,
}


def write_run(
    root: Path,
    optimizer: dict[str, Any],
    seed: int,
    losses: list[float],
    *,
    name: str | None = None,
    task: str = "toy",
    scale: str = "cpu",
    trainer: dict[str, Any] | None = None,
    task_extra: dict[str, Any] | None = None,
    train_extra: dict[str, float | list[float]] | None = None,
    valid: dict[str, float | list[float]] | None = None,
    valid_every: int | None = None,
    status: str | None = "completed",
    window: int = 5,
    grid_point: str | None = None,
    max_steps: int | None = None,
    summary: dict[str, Any] | None = None,
    packed: bool = False,
) -> Path:
    """One run whose train loss at step t + 1 is ``losses[t]``, in ``root / name``
    (default ``task/scale/optimizer/lr<lr>[-stale<staleness>]-seed<seed>``).

    ``train_extra`` adds columns to each train record; ``valid`` writes a validation
    record at the last step, or every ``valid_every`` steps with that step's train loss
    (a list value: one per record). ``max_steps`` is the configured length (at least the
    number of losses), e.g. of a run that diverged early. summary.json is the trainer's
    plus ``summary``'s keys (e.g. the task's declared metrics), none if ``status`` is
    None; ``packed`` gzips the metrics as committed runs have them.
    """
    trainer = {"max_steps": max(max_steps or 0, len(losses)), **(trainer or {})}
    if name is None:
        stale = f"-stale{trainer['staleness']}" if "staleness" in trainer else ""
        name = f"{task}/{scale}/{optimizer['name']}/lr{optimizer.get('lr')}{stale}-seed{seed}"
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = {
        "task": {"name": task, **(task_extra or {})},
        "scale": {"name": scale},
        "optimizer": optimizer,
        "trainer": trainer,
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
    if status is not None:
        ended = {
            "status": status,
            "steps": len(losses),
            "wall_time_s": 1.0,
            "steps_per_s": 40.0,
            "final": {},
            "best": {},
            "device": "cpu",
            "error": "boom" if status == "failed" else None,
            "git": {"commit": "abcdef0123456789", "dirty": False},
            "versions": {"torch": "2.9.0", "python": "3.12"},
            **({"diverged_step": len(losses)} if status == "diverged" else {}),
            **(summary or {}),
        }
        (run_dir / "summary.json").write_text(json.dumps(ended))

    def values(extra: dict[str, float | list[float]] | None, i: int) -> dict[str, float]:
        return {k: v[i] if isinstance(v, list) else v for k, v in (extra or {}).items()}

    every = valid_every or len(losses)
    rows = []
    for t, loss in enumerate(losses):
        step = t + 1
        rows.append({"step": step, "split": "train", "loss": loss, **values(train_extra, t)})
        if valid and step % every == 0:
            own_loss = {"loss": loss} if valid_every else {}
            rows.append(
                {"step": step, "split": "valid", **own_loss, **values(valid, step // every - 1)}
            )
    text = "".join(json.dumps(json_safe(row)) + "\n" for row in rows)
    if packed:
        with gzip.open(run_dir / "metrics.jsonl.gz", "wt") as handle:
            handle.write(text)
    else:
        (run_dir / "metrics.jsonl").write_text(text)
    return run_dir
