"""Hydra's Optuna sweeper minimises what each run returns: the score `analysis tuned` uses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_cli
from tests.run_builder import write_run
from yfbench.analysis.objective import run_objective

# Window 5: the smoothed loss of [9, 8, ..., 1, 1.5] is lowest at step 10: mean(4,3,2,1,1.5).
LINE = [10.0 - t for t in range(1, 10)] + [1.5]


def test_objective_is_the_lowest_smoothed_training_loss(tmp_path: Path):
    run = write_run(tmp_path, {"name": "adam", "lr": 0.1}, 1, LINE, name="a")
    assert run_objective(run) == pytest.approx(2.3)


def test_a_diverged_run_scores_worse_than_any_completed_one(tmp_path: Path):
    run = write_run(tmp_path, {"name": "adam", "lr": 1.0}, 1, LINE, name="d", status="diverged")
    assert run_objective(run) == math.inf


def test_an_unfinished_run_has_no_objective(tmp_path: Path):
    run = write_run(tmp_path, {"name": "adam", "lr": 1.0}, 1, LINE, name="i", status="interrupted")
    with pytest.raises(ValueError, match="interrupted"):
        run_objective(run)


def test_optuna_study_minimises_each_runs_objective(tmp_path: Path):
    sweep = tmp_path / "study"
    result = run_cli(
        [
            "-m",
            "experiment=optuna_lr",
            "task=noisy_quadratic",
            "task.dim=20",
            "optimizer=adam",
            "trainer.max_steps=50",
            "trainer.eval_every=25",
            "hydra.sweeper.n_trials=2",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    study = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    runs = sorted((sweep / "adam").iterdir())
    assert len(runs) == 2
    scores = {float(run.name.split("-seed")[0][2:]): run_objective(run) for run in runs}
    assert all(math.isfinite(score) for score in scores.values())
    best_lr = min(scores, key=scores.get)
    assert study["best_value"] == pytest.approx(scores[best_lr])
    assert study["best_params"]["optimizer.lr"] == pytest.approx(best_lr)
