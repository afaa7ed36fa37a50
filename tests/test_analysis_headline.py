"""The headline validation metric every table reads: the one the runs declare, with its
direction; runs made before the declaration fall back to the first metric they log."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.run_builder import write_run
from yfbench.analysis.headline import Headline, headline
from yfbench.analysis.runs import load_runs
from yfbench.analysis.speedup import grid_points, tuned
from yfbench.analysis.validation import display_validation, validation_rows

ADAM = {"name": "adam", "lr": 0.01}
LOSSES = [3.0, 2.0, 1.5, 1.2, 1.0, 0.9]


def _runs(root: Path, valid: dict[str, float], summary: dict | None = None, seeds=(1,)):
    for seed in seeds:
        logged = {k: v + seed for k, v in valid.items()}
        write_run(root, ADAM, seed, LOSSES, name=f"adam-seed{seed}", valid=logged, summary=summary)
    return load_runs([root])


def test_the_declared_metric_and_its_direction_win_over_the_fallback_order(tmp_path):
    declared = {"target_metric": "loss", "metrics": {"loss": "min", "accuracy": "max"}}
    runs = _runs(tmp_path, {"loss": 0.5, "accuracy": 0.8}, declared)
    assert headline(runs) == Headline("loss", higher_is_better=False)


def test_runs_that_declare_nothing_take_the_first_logged_of_the_fallback_order(tmp_path):
    assert headline(_runs(tmp_path, {"loss": 0.5, "accuracy": 0.8})) == Headline("accuracy", True)
    assert headline(_runs(tmp_path / "lm", {"loss": 2.0, "perplexity": 7.0})) == Headline(
        "perplexity", False
    )


def test_no_validation_record_means_no_headline(tmp_path):
    assert headline(_runs(tmp_path, {})) is None


def test_the_validation_table_ranks_by_a_declared_metric_the_fallback_does_not_know(tmp_path):
    declared = {"target_metric": "bleu", "metrics": {"loss": "min", "bleu": "max"}}
    runs = _runs(tmp_path, {"loss": 0.5, "bleu": 20.0}, declared, seeds=(1, 2, 3))
    points = grid_points(runs, 2)
    rows = validation_rows(runs, points, {"adam": tuned(points, "adam")[0]})
    assert [(r["metric"], r["higher_is_better"], r["median"]) for r in rows] == [
        ("bleu", True, 22.0)
    ]


def test_a_diverged_evaluation_seed_has_no_final_value_and_is_counted(tmp_path):
    for seed in (1, 2, 3):
        diverged = seed == 3
        write_run(
            tmp_path,
            ADAM,
            seed,
            LOSSES[:3] if diverged else LOSSES,
            name=f"adam-seed{seed}",
            valid={"perplexity": 1e6 if diverged else 7.0 + seed},
            status="diverged" if diverged else "completed",
        )
    # A second grid point run on seed 1 only makes seed 1 the tuning seed.
    write_run(tmp_path, {"name": "adam", "lr": 0.1}, 1, LOSSES, valid={"perplexity": 20.0})
    runs = load_runs([tmp_path])
    points = grid_points(runs, 2)
    [row] = validation_rows(runs, points, {"adam": tuned(points, "adam")[0]})
    # Of the evaluation seeds 2 and 3, only seed 2 completed.
    assert (row["seeds"], row["median"], row["not_completed"]) == ("2", 9.0, 1)
    assert "1 more did not complete" in display_validation(pd.DataFrame([row]))["seeds"][0]
