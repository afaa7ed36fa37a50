"""The number a hyperparameter search minimises for one run.

It is the score the speedup protocol tunes on (:attr:`~yfbench.analysis.speedup.GridPoint.
score`: the lowest smoothed training loss, window W), so an Optuna study through Hydra's
Optuna sweeper chooses the way ``analysis tuned`` chooses among grid points. A diverged
run scores +inf: worse than any run that completed, as ``tuned`` ranks them.
"""

from __future__ import annotations

import math
from pathlib import Path

from yfbench.analysis.runs import load_runs
from yfbench.analysis.speedup import grid_points, resolve_window

# Statuses whose curve is a finished run's, so their score is the run's objective.
SCORED = ("completed", "diverged")


def run_objective(run_dir: Path) -> float:
    """The run's lowest smoothed training loss (+inf if it diverged or never reaches W)."""
    frame = load_runs([run_dir])
    status = str(frame["status"].iloc[0])
    if status not in SCORED:
        raise ValueError(f"{run_dir} is {status}; only a finished run has an objective")
    (point,) = grid_points(frame, resolve_window(frame, None))
    score = point.score
    return score if status == "completed" and math.isfinite(score) else math.inf
