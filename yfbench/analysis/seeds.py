"""Are a grid point's seeds independent replicates?

Speedups are aggregated over seeds as if each seed were an independent draw of the
training noise (initialisation, data order, dropout). If a seed did not reach the data
order, say, two seeds' losses would wiggle together step by step and "3 seeds" would
be one seed three times. This module measures that: per run, the per-step training loss
minus its centred moving average (``DETREND_WINDOW`` logged points, odd so it is
centred; the ends where the window does not fit are dropped) leaves the step-to-step
noise without the shared downward trend, and the Pearson correlation of two seeds'
residuals over their common steps is near 0 for independent seeds (within about
+-2/sqrt(n) for n steps, a rough band, as the residuals are mildly autocorrelated) and
near 1 for seeds that share their noise. The first ``EARLY_FRACTION`` of each run is
left out: there the loss falls faster than the moving average follows, and the common
shape of that fall (every seed's curve bends at about the same step), not shared data,
correlates the residuals (on Tiny Shakespeare at the CPU scale it lifted r from about
+0.04 to +0.12). Reported per grid point with >= 2 seeds: the median over seed pairs,
and the range.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from yfbench.analysis.speedup import GROUP_KEYS
from yfbench.errors import UserError

DETREND_WINDOW = 101
# Share of a run's steps, from its start, kept out of the correlation (the fast early fall).
EARLY_FRACTION = 0.1
# Fewer common steps than this give no correlation worth printing.
MIN_STEPS = 10
COLUMNS = [
    "task",
    "scale",
    "setting",
    "optimizer",
    "hparams",
    "seeds",
    "pairs",
    "steps",
    "r_median",
    "r_min",
    "r_max",
    "band",
    "detrend_window",
]


def detrend(losses: pd.Series, window: int = DETREND_WINDOW) -> pd.Series:
    """``losses`` (indexed by step) minus their centred moving average over ``window``
    logged points; NaN where the window holds a non-finite loss."""
    if window < 1 or window % 2 == 0:
        raise UserError(f"the detrending window must be a positive odd number, got {window}")
    trend = losses.rolling(window, center=True).mean()
    return (losses - trend).dropna()


def correlation(a: pd.Series, b: pd.Series) -> tuple[float, int]:
    """Pearson r of two residual series over their common finite steps, and that count."""
    both = pd.concat([a, b], axis=1, join="inner").replace([np.inf, -np.inf], np.nan).dropna()
    n = len(both)
    x, y = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
    if n < MIN_STEPS or x.std() == 0 or y.std() == 0:
        return math.nan, n
    return float(np.corrcoef(x, y)[0, 1]), n


def seed_correlations(frame: pd.DataFrame, window: int = DETREND_WINDOW) -> pd.DataFrame:
    """One row per grid point with >= 2 seeds: median, min and max r over seed pairs."""
    train = frame[frame["split"] == "train"]
    rows = []
    for key, point in train.groupby(GROUP_KEYS + ["optimizer", "hparams"], sort=True):
        _check_one_run_per_seed(point)
        residuals = {
            int(seed): _after_early_fall(detrend(_losses(run), window), run)
            for seed, run in point.groupby("seed")
        }
        if len(residuals) < 2:
            continue
        pairs = [
            correlation(residuals[a], residuals[b])
            for a, b in itertools.combinations(sorted(residuals), 2)
        ]
        rows.append(_row(key, sorted(residuals), pairs, window))
    return pd.DataFrame(rows, columns=COLUMNS)


def _check_one_run_per_seed(point: pd.DataFrame) -> None:
    for seed, runs in point.groupby("seed")["run_dir"]:
        dirs = sorted(runs.unique())
        if len(dirs) > 1:
            raise UserError(
                f"two runs of the same grid point, setting and seed {seed}: {dirs[0]} and "
                f"{dirs[1]}; pass only one of them"
            )


def _after_early_fall(residual: pd.Series, run: pd.DataFrame) -> pd.Series:
    """``residual`` from step ``EARLY_FRACTION`` x the run's last step on."""
    return residual[residual.index >= EARLY_FRACTION * run["step"].max()]


def _losses(run: pd.DataFrame) -> pd.Series:
    """Training loss by step; resumed runs may log a step twice (last wins)."""
    run = run.drop_duplicates("step", keep="last").sort_values("step")
    return pd.Series(run["loss"].to_numpy(dtype=float), index=run["step"].to_numpy())


def _row(
    key: tuple, seeds: list[int], pairs: list[tuple[float, int]], window: int
) -> dict[str, object]:
    values = [r for r, _ in pairs if not math.isnan(r)]
    steps = min(n for _, n in pairs)
    return {
        **dict(zip(GROUP_KEYS + ["optimizer", "hparams"], key, strict=True)),
        "seeds": ", ".join(str(s) for s in seeds),
        "pairs": len(pairs),
        "steps": steps,
        "r_median": float(np.median(values)) if values else math.nan,
        "r_min": min(values) if values else math.nan,
        "r_max": max(values) if values else math.nan,
        "band": 2 / math.sqrt(steps) if steps else math.nan,
        "detrend_window": window,
    }
