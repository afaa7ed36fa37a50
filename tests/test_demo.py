"""`make demo` trains the points the committed CPU-scale grid tuned, read from its runs:
the tuned learning rates live in one place, the grid's run directories."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent


def _demo_module():
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _optimizer_and_lr(grid_point: str) -> tuple[str, float | None]:
    config = OmegaConf.load(ROOT / "conf" / "grid_point" / f"{grid_point}.yaml")
    (override,) = [d["override /optimizer"] for d in config.defaults]
    return override, config.get("optimizer", {}).get("lr")


def test_the_demo_trains_the_points_the_committed_cpu_grid_tuned():
    names = _demo_module().tuned_grid_points().split(",")
    chosen = dict(_optimizer_and_lr(name) for name in names)
    assert sorted(chosen) == ["adam", "momentum_sgd", "yellowfin"]
    # The committed speedup table states each baseline's tuned lr (momentum SGD against
    # tuned Adam: best_hparams is momentum SGD's, baseline_hparams Adam's).
    table = pd.read_csv(ROOT / "results" / "tinyshakespeare_lstm" / "cpu" / "speedup.csv")
    row = table[(table["optimizer"] == "momentum_sgd") & (table["baseline"] == "adam")].iloc[0]
    assert row["best_hparams"] == f"lr={chosen['momentum_sgd']:g}"
    assert row["baseline_hparams"] == f"lr={chosen['adam']:g}"
