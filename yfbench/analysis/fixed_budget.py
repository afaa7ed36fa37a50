"""Fixed-budget comparison: the paired difference in smoothed training loss at 25/50/75/100%
of the run, with a confidence interval over seeds, so that a tie reads as a tie.

A speedup times one target; a fixed budget asks the other question: after the same number
of iterations, which loss is lower, and by more than seed-to-seed noise? Per evaluation
seed (:mod:`yfbench.analysis.protocol`) the difference is method minus baseline of the
smoothed loss (:func:`yfbench.analysis.speedup.smooth`) at the last smoothed iteration
within the budget, both runs of the same seed (paired). Over seeds: the mean, the median
and a two-sided Student t interval for the mean difference (``CONFIDENCE``); with 2-3
seeds it is wide (t = 12.7 at 1 degree of freedom, 4.3 at 2), which is honest. A budget
whose interval excludes 0 is a win or a loss; otherwise a tie; with one seed, no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from yfbench.analysis.speedup import Comparison, Curve
from yfbench.analysis.tables import markdown_table

BUDGETS = (0.25, 0.5, 0.75, 1.0)
CONFIDENCE = 0.95
# Simpson intervals for the t density's integral; ample for 4 significant digits.
_SIMPSON_STEPS = 4000
COLUMNS = [
    "task",
    "scale",
    "setting",
    "optimizer",
    "baseline",
    "seeds_used",
    "budget",
    "step",
    "n",
    "mean",
    "median",
    "low",
    "high",
    "verdict",
    "differences",
]


def student_t_cdf(x: float, df: int) -> float:
    """P(T <= x) for Student's t with ``df`` degrees of freedom (Simpson's rule on the
    density; the standard library has no incomplete beta function)."""
    if x < 0:
        return 1.0 - student_t_cdf(-x, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    grid = np.linspace(0.0, x, _SIMPSON_STEPS + 1)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid**2 / df))
    weights = np.ones_like(grid)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return 0.5 + float(np.sum(weights * density)) * (x / _SIMPSON_STEPS) / 3


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`student_t_cdf`)."""
    if not 0.5 <= p < 1:
        raise ValueError(f"quantile level must lie in [0.5, 1), got {p}")
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        low, high = high, high * 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided t interval for the mean of ``values``; NaNs with fewer than two values."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return math.nan, math.nan
    half = student_t_quantile(0.5 + confidence / 2, values.size - 1)
    half *= values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


def loss_at(curve: Curve, step: float) -> float:
    """The smoothed loss at the last smoothed iteration <= ``step`` (NaN if none)."""
    keep = curve.steps <= step
    return float(curve.values[keep][-1]) if keep.any() else math.nan


def verdict(low: float, high: float, n: int) -> str:
    if n < 2 or math.isnan(low):
        return "one seed: no interval"
    if high < 0:
        return "method lower"
    if low > 0:
        return "baseline lower"
    return "tie"


def budget_rows(comparison: Comparison, budgets: Sequence[float] = BUDGETS) -> list[dict]:
    """One row per budget: the paired differences over the comparison's seeds."""
    method, base, plan = comparison.method_point, comparison.base_point, comparison.plan
    if method is None or base is None or plan is None or not plan.used:
        return []
    last = min(min(method.curves[s].last_step, base.curves[s].last_step) for s in plan.used)
    rows = []
    for budget in budgets:
        step = budget * last
        differences = [
            loss_at(method.curves[s], step) - loss_at(base.curves[s], step) for s in plan.used
        ]
        finite = [d for d in differences if math.isfinite(d)]
        low, high = t_interval(finite)
        rows.append(
            {
                **{k: comparison.info[k] for k in COLUMNS[:6]},
                "budget": budget,
                "step": int(step),
                "n": len(finite),
                "mean": float(np.mean(finite)) if finite else math.nan,
                "median": float(np.median(finite)) if finite else math.nan,
                "low": low,
                "high": high,
                "verdict": verdict(low, high, len(finite)),
                "differences": " ".join(f"{d:+.4f}" for d in differences),
            }
        )
    return rows


def fixed_budget_table(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """Every comparison's fixed-budget rows."""
    rows = [row for c in comparisons for row in budget_rows(c)]
    return pd.DataFrame(rows, columns=COLUMNS)


def display_fixed_budget(table: pd.DataFrame) -> pd.DataFrame:
    """Readable cells: ``-0.012 (95% t CI -0.030 to +0.006; tie)``, one column per budget."""
    keys = ["task", "scale", "setting", "optimizer", "baseline", "seeds_used"]
    rows = []
    for identity, group in table.groupby(keys, sort=True):
        cells = [_cell(row) for _, row in group.sort_values("budget").iterrows()]
        rows.append([*identity, *cells])
    budgets = sorted(table["budget"].unique())
    headers = ["task", "scale", "setting", "method", "vs", "seeds"]
    return pd.DataFrame(rows, columns=headers + [f"{b:.0%}" for b in budgets])


def _cell(row: pd.Series) -> str:
    if row["n"] == 0:
        return "—"
    text = f"{row['mean']:+.3f}"
    if math.isnan(row["low"]):
        return f"{text} (one seed)"
    return (
        f"{text} ({CONFIDENCE:.0%} t CI {row['low']:+.3f} to {row['high']:+.3f}; {row['verdict']})"
    )


def section(table: pd.DataFrame, title: str, baselines: Sequence[str]) -> list[str]:
    """A report section: the fixed-budget rows against ``baselines``."""
    rows = table[table["baseline"].isin(baselines)] if not table.empty else table
    if rows.empty:
        return []
    return [
        f"### {title}",
        "",
        "Smoothed training loss, method minus baseline, same seed, at each share of the run "
        f"(negative: the method is lower); mean over seeds with a {CONFIDENCE:.0%} Student t "
        "interval; an interval holding 0 is a tie.",
        "",
        markdown_table(display_fixed_budget(rows)),
    ]
