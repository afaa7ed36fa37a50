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

The null. Residuals are autocorrelated (the moving average leaves slow wiggles), so
+-2/sqrt(n) is too narrow a band for "independent". The band used is a circular-shift
null: shift one seed's residuals against the other's by ``NULL_SHIFTS`` offsets spread
over (w, n - w) for w the detrending window (so the shift exceeds the autocorrelation
length), take the statistic (the median r over pairs) for each shift, and keep the
central ``NULL_LEVEL`` of those values. A shift keeps each series' autocorrelation and
breaks any step-locked relation, so r beyond this band means the seeds share something
tied to the step number.

Epoch starts. The language models reset their LSTM state to zeros at every epoch start,
at the same steps for every seed (the epoch length does not depend on the seed). The
loss jumps there in every seed, and those shared jumps raise r (they are step-locked,
so the null does not contain them) without any shared data. ``r_no_epoch_starts`` is
the same statistic with the steps within half a detrending window of an epoch start
left out, judged against its own circular-shift null (``null_no_epoch_*``: the same
steps left out of both series before shifting, so statistic and null see the same
steps); where it falls inside that band, the excess r came from the resets.
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
# Circular shifts in the null distribution, and the share of it kept as the band.
NULL_SHIFTS = 200
NULL_LEVEL = 0.95
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
    "null_low",
    "null_high",
    "beyond_null",
    "steps_per_epoch",
    "r_no_epoch_starts",
    "null_no_epoch_low",
    "null_no_epoch_high",
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
    x, y = aligned_pair(a, b)
    return _pearson(x.to_numpy(), y.to_numpy()), len(x)


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
        combos = list(itertools.combinations(sorted(residuals), 2))
        aligned = [aligned_pair(residuals[a], residuals[b]) for a, b in combos]
        pairs = [correlation(residuals[a], residuals[b]) for a, b in combos]
        row = _row(key, sorted(residuals), pairs, window)
        row["null_low"], row["null_high"] = shift_null(aligned, window)
        row["beyond_null"] = not row["null_low"] <= row["r_median"] <= row["null_high"]
        epoch = steps_per_epoch(frame[frame["run_dir"].isin(point["run_dir"].unique())])
        row["steps_per_epoch"] = epoch
        reduced = [_away_from_epoch_starts(x, y, epoch, window) for x, y in aligned]
        row["r_no_epoch_starts"] = _median_r(reduced)
        row["null_no_epoch_low"], row["null_no_epoch_high"] = shift_null(reduced, window)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def aligned_pair(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Two residual series on their common finite steps."""
    both = pd.concat([a, b], axis=1, join="inner").replace([np.inf, -np.inf], np.nan).dropna()
    return both.iloc[:, 0], both.iloc[:, 1]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < MIN_STEPS or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _median_r(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    values = [r for r in (_pearson(x, y) for x, y in pairs) if not math.isnan(r)]
    return float(np.median(values)) if values else math.nan


def shift_null(
    aligned: list[tuple[pd.Series, pd.Series]] | list[tuple[np.ndarray, np.ndarray]], window: int
) -> tuple[float, float]:
    """The central ``NULL_LEVEL`` of the median r over pairs when the second series of
    every pair is circularly shifted by the same share of its length (shares spread so
    that every shift lies in (window, n - window)); NaNs when a pair is too short."""
    lengths = [len(x) for x, _ in aligned]
    if not lengths or min(lengths) <= 2 * window + MIN_STEPS:
        return math.nan, math.nan
    low = max(window / n for n in lengths)
    shares = np.linspace(low, 1 - low, NULL_SHIFTS)
    null = []
    for share in shares:
        shifted = [
            (np.asarray(x), np.roll(np.asarray(y), round(share * len(y)))) for x, y in aligned
        ]
        null.append(_median_r(shifted))
    tail = (1 - NULL_LEVEL) / 2
    values = np.array([v for v in null if not math.isnan(v)])
    if values.size == 0:
        return math.nan, math.nan
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def steps_per_epoch(runs: pd.DataFrame) -> int | None:
    """The epoch length the runs log on their validation records (step / epoch)."""
    if "epoch" not in runs:
        return None
    valid = runs[(runs["split"] == "valid") & (runs["epoch"] > 0)]
    if valid.empty:
        return None
    lengths = (valid["step"] / valid["epoch"]).round().astype(int).unique()
    return int(lengths[0]) if len(lengths) == 1 else None


def _away_from_epoch_starts(
    x: pd.Series, y: pd.Series, epoch: int | None, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` without the steps within half a window of an epoch start."""
    if not epoch:
        return x.to_numpy(), y.to_numpy()
    phase = (x.index.to_numpy() - 1) % epoch
    keep = np.minimum(phase, epoch - phase) > window // 2
    return x.to_numpy()[keep], y.to_numpy()[keep]


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
