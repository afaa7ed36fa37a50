"""A task's headline validation metric and its direction, as its runs recorded them.

A task declares its validation metrics, their direction ("min"/"max") and the headline
one it is judged on (:mod:`yfbench.tasks.base`, as AlgoPerf's ``spec.py``); every run
records both in ``summary.json`` (``metrics``, ``target_metric``), and every table, plot
and leaderboard reads them here. Runs made before the declaration record neither: for
them the headline metric is the first of :data:`UNDECLARED` that they log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

# For runs that declare nothing: the tasks' headline metrics in order of preference, each
# with its direction (the one every task that logs it declares).
UNDECLARED = (("accuracy", "max"), ("f1", "max"), ("perplexity", "min"), ("loss", "min"))


@dataclass(frozen=True)
class Headline:
    """The metric a task is judged on, and which end of it is better."""

    metric: str
    higher_is_better: bool


def headline(runs: pd.DataFrame) -> Headline | None:
    """The headline metric of one task's runs (``load_runs`` rows, any splits), or None
    when they log no validation metric."""
    valid = runs[runs["split"] == "valid"]
    logged = {m for m in valid if valid[m].notna().any()}
    declared = _unique(runs, "target_metric")
    direction = _unique(runs, "target_direction")
    if declared in logged and direction in ("min", "max"):
        return Headline(declared, direction == "max")
    return next((Headline(m, d == "max") for m, d in UNDECLARED if m in logged), None)


def final_value(run: pd.DataFrame, metric: str | None) -> float:
    """The last validation value of ``metric`` in one run's rows, or NaN when the run did not
    complete: a diverged or failed run's last evaluation came before it stopped, so every
    table counts it and never gives it a final value."""
    if metric is None or run.empty or run["status"].iloc[0] != "completed":
        return math.nan
    values = run[run["split"] == "valid"].sort_values("step")[metric].dropna()
    return float(values.iloc[-1]) if len(values) else math.nan


def _unique(runs: pd.DataFrame, column: str) -> str | None:
    values = runs[column].dropna().unique() if column in runs else []
    return str(values[0]) if len(values) == 1 else None
