"""A tuned point at the edge of its lr grid is flagged: the grid did not bracket the best
lr, and the tables that name the point say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.run_builder import write_run
from yfbench.analysis.runs import load_runs
from yfbench.analysis.speedup import grid_points, tuned


def _grid(root: Path, final_by_lr: dict[float, float]):
    for lr, final in final_by_lr.items():
        losses = [3.0, 2.5, 2.0, 1.5, final, final]
        write_run(root, {"name": "adam", "lr": lr}, 1, losses, name=f"lr{lr}")
    return grid_points(load_runs([root]), 2)


@pytest.mark.parametrize(
    ("finals", "note"),
    [
        ({0.01: 1.2, 0.1: 1.1, 1.0: 1.0}, "tuned at the largest lr tried (lr=1)"),
        ({0.01: 1.0, 0.1: 1.1, 1.0: 1.2}, "tuned at the smallest lr tried (lr=0.01)"),
        ({0.01: 1.2, 0.1: 1.0, 1.0: 1.1}, ""),
    ],
)
def test_a_tuned_lr_at_the_edge_of_the_grid_is_noted(tmp_path, finals, note):
    point, said = tuned(_grid(tmp_path, finals), "adam")
    assert point is not None and float(point.settings["lr"]) == min(finals, key=finals.get)
    if note:
        assert said == f"{note}: the grid does not bracket it"
    else:
        assert said == ""


def test_a_single_lr_is_no_grid_and_has_no_edge(tmp_path):
    assert tuned(_grid(tmp_path, {0.1: 1.0}), "adam")[1] == ""
