"""Shared helpers for tests: compose configs and run the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from yfbench.config import compose

REPO_ROOT = Path(__file__).resolve().parents[1]

# The small ResNet of both CIFAR tasks.
TINY_RESNET = [
    "task.train_subset=256",
    "task.test_subset=64",
    "task.batch_size=16",
    "task.eval_batch_size=64",
    "task.model.units_per_stage=1",
    "task.model.filters=[4,4,8,8]",
]

# Small versions of each task, for tests that build one (a task not listed here is built
# at its CPU scale: correct, only slower).
TINY_TASK_OVERRIDES: dict[str, list[str]] = {
    "noisy_quadratic": ["task.dim=50"],
    "tinyshakespeare_lstm": [
        "task.model.hidden_size=16",
        "task.model.embed_size=16",
        "task.batch_size=10",
        "task.unroll=10",
        "task.data.train_fraction=0.99",  # 11k validation characters
    ],
    "ptb_lstm": [
        "task.model.hidden_size=16",
        "task.model.embed_size=16",
        "task.unroll=10",
        "task.data.max_vocab=500",  # a 500-way softmax over the whole validation stream
    ],
    "wsj_parse_lstm": [
        "task.model.hidden_size=16",
        "task.model.embed_size=16",
        "task.model.num_layers=1",
        "task.model.dropout=0.0",
    ],
    "cifar10_resnet": TINY_RESNET,
    "cifar100_resnet": TINY_RESNET,
}


def compose_config(overrides: list[str]) -> DictConfig:
    return compose(overrides)


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    """``compose_config`` plus the ``hydra`` node (launcher, sweeper, output directories).

    The launcher and the sweep's grid live there, so tests of them need it.
    """
    return compose(overrides, with_hydra=True)


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 300):
    """Run ``python -m yfbench ARGS`` in the repo root; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "yfbench", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def records(run_dir: Path, drop: tuple[str, ...] = ("time_s",)) -> list[dict[str, Any]]:
    """metrics.jsonl records without wall-clock fields."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def run_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config a run recorded when it started (run_config.json's ``config``)."""
    return json.loads((run_dir / "run_config.json").read_text())["config"]


def sweep_runs(sweep_dir: Path) -> dict[str, Path]:
    """A sweep's run directories by subdir (``sgd/lr0.1-seed1``): those with a summary.json.

    Launchers leave their own files in the sweep directory (submitit's ``.submitit/``);
    only directories holding a run's summary count.
    """
    return {
        str(path.parent.relative_to(sweep_dir)): path.parent
        for path in sorted(sweep_dir.rglob("summary.json"))
    }
