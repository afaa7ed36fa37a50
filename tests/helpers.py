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
