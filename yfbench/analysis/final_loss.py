"""Fixed-budget comparisons of the smoothed training loss, shared by the claim experiments.

A run's loss *at a budget* of B iterations is its smoothed training loss (the speedup's
moving average, :func:`yfbench.analysis.speedup.smooth`) at its last logged iteration
<= B; a run that diverged or stopped before B has none (NaN), and is counted as such,
never given a number. Two grid points are compared seed by seed (paired by seed number):
the difference method - baseline at the common budget, its mean over seeds and a 95%
Student-t interval. An interval that contains 0 says the two are not told apart at this
budget by these seeds. The interval and the loss at a step are the report's own
(:mod:`yfbench.analysis.fixed_budget`), and so are the seeds: the caller passes the
:class:`~yfbench.analysis.protocol.SeedPlan` of the pair (evaluation seeds only, or the
tuning seeds labelled provisional), so that no point chosen on a seed is credited with
it; what differs from the report is one iteration count instead of shares of the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from yfbench.analysis import fixed_budget
from yfbench.analysis.protocol import SeedPlan
from yfbench.analysis.speedup import Curve, GridPoint


def loss_at(curve: Curve, budget: int) -> float:
    """The smoothed loss at the last logged iteration <= ``budget`` (NaN if the run has no
    smoothed loss there or stopped before ``budget``)."""
    return math.nan if curve.last_step < budget else fixed_budget.loss_at(curve, budget)


def final_loss(curve: Curve) -> float:
    """The smoothed loss at the run's own last logged iteration (NaN if it has none)."""
    return loss_at(curve, curve.last_step)


def mean_interval(values: Iterable[float]) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite ``values``, with a 95% Student-t interval."""
    finite = np.array([v for v in values if math.isfinite(v)], dtype=float)
    n = finite.size
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(finite.mean())
    low, high = fixed_budget.t_interval(finite)
    return mean, low, high, n


def paired_budget_difference(
    method: GridPoint, baseline: GridPoint, plan: SeedPlan, budget: int | None = None
) -> dict[str, object]:
    """Per seed of ``plan`` (both points ran it), ``method``'s smoothed loss minus
    ``baseline``'s at the budget; ``seeds_used`` and ``provisional`` say which seeds.

    The seeds come from the plan, never from "every seed both have": a baseline tuned on
    seed 1 must not be compared on seed 1 (:mod:`yfbench.analysis.protocol`). ``budget``
    defaults to the shortest run length among the paired runs (so every pair is compared
    at one iteration count). Seeds where either run has no loss at the budget (diverged,
    stopped early) are counted in ``missing`` and left out of the mean.
    """
    seeds = sorted(set(plan.used) & set(method.curves) & set(baseline.curves))
    if budget is None:
        lengths = [
            c.last_step for p in (method, baseline) for s, c in p.curves.items() if s in seeds
        ]
        budget = min(lengths) if lengths else 0
    differences = {
        seed: loss_at(method.curves[seed], budget) - loss_at(baseline.curves[seed], budget)
        for seed in seeds
    }
    mean, low, high, n = mean_interval(differences.values())
    return {
        "budget": budget,
        "seeds": len(seeds),
        "seeds_used": plan.label,
        "provisional": plan.provisional,
        "paired": n,
        "missing": len(seeds) - n,
        "difference": mean,
        "low": low,
        "high": high,
        "per_seed": differences,
    }


def difference_text(row: dict[str, object] | pd.Series, *, say_provisional: bool = True) -> str:
    """``-0.012 [-0.030, +0.006] (3 seeds)``; says when seeds are missing, and (unless the
    caller says so elsewhere) when the seeds are provisional (tuning seeds only)."""
    n, missing = int(row["paired"]), int(row["missing"])
    if n == 0:
        return f"— (no seed pair with a loss at {row['budget']} iterations)"
    text = f"{row['difference']:+.4f}"
    if n > 1:
        text += f" [{row['low']:+.4f}, {row['high']:+.4f}]"
    text += f" ({n} seed{'s' if n > 1 else ''}"
    if missing:
        text += f"; {missing} without a loss at the budget"
    if say_provisional and bool(row.get("provisional", False)):
        text += "; provisional: tuning seeds only"
    return text + ")"


def verdict(row: dict[str, object] | pd.Series) -> str:
    """Whether the interval tells the two apart: "lower", "higher" or "tie"."""
    if int(row["paired"]) < 2 or not math.isfinite(float(row["low"])):
        return "too few seeds"
    if float(row["high"]) < 0:
        return "lower"
    if float(row["low"]) > 0:
        return "higher"
    return "tie"


# Points per curve a figure draws (every k-th), so that the SVGs stay light.
FIGURE_POINTS = 600


def seed_band(curves: dict[int, Curve], thin: bool = False) -> pd.DataFrame:
    """Median, min and max over seeds of smoothed curves, aligned on iterations; ``thin``
    keeps about :data:`FIGURE_POINTS` rows, for a figure."""
    table = pd.DataFrame({seed: pd.Series(c.values, index=c.steps) for seed, c in curves.items()})
    table = table.sort_index()
    band = pd.DataFrame(
        {"median": table.median(axis=1), "low": table.min(axis=1), "high": table.max(axis=1)}
    )
    return band.iloc[:: max(1, len(band) // FIGURE_POINTS)] if thin else band
