"""The paper's speedup: iterations for tuned Adam to reach its best smoothed loss, over
the iterations another method needs to first reach that loss (DESIGN.md, Metrics).

Iterations count from 1: the loss logged at ``step`` t is the loss of the t-th update.
The smoothed loss at t is the mean of the logged training losses at iterations
t-W+1..t and exists only for t >= W, so curves logged every k steps use their logged
points.  A window holding a non-finite loss has no smoothed value.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from yfbench.analysis.runs import HPARAM_PREFIX, format_value
from yfbench.errors import UserError

COMPLETED = "completed"
BOOTSTRAP_SAMPLES = 10_000


def smooth(steps: np.ndarray, losses: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform moving average over the last ``window`` iterations, at logged steps >= window."""
    if window < 1:
        raise UserError(f"the smoothing window must be >= 1 iteration, got {window}")
    steps = np.asarray(steps, dtype=np.int64)
    losses = np.asarray(losses, dtype=np.float64)
    if steps.size and (np.any(np.diff(steps) <= 0) or steps[0] < 1):
        raise UserError("training steps must be increasing and start at 1 or later")
    finite = np.isfinite(losses)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, losses, 0.0))])
    bad = np.concatenate([[0], np.cumsum(~finite)])
    lo = np.searchsorted(steps, steps - window + 1, side="left")
    hi = np.arange(1, steps.size + 1)
    with np.errstate(invalid="ignore"):
        mean = (sums[hi] - sums[lo]) / (hi - lo)
    mean[(bad[hi] - bad[lo]) > 0] = np.nan
    keep = steps >= window
    return steps[keep], mean[keep]


def best_point(steps: np.ndarray, smoothed: np.ndarray) -> tuple[int, float] | None:
    """(T, L*): the first iteration where the smoothed loss is lowest; None if it never exists."""
    if not np.isfinite(smoothed).any():
        return None
    index = int(np.nanargmin(smoothed))
    return int(steps[index]), float(smoothed[index])


def first_reach(steps: np.ndarray, smoothed: np.ndarray, target: float) -> int | None:
    """First iteration whose smoothed loss is at or below ``target``; None if never."""
    with np.errstate(invalid="ignore"):
        hit = smoothed <= target
    return int(steps[np.argmax(hit)]) if hit.any() else None


def bootstrap_interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean; NaN with fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(BOOTSTRAP_SAMPLES, values.size)).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class GridPoint:
    """One optimizer setting of one (task, scale), with a smoothed curve per seed."""

    optimizer: str
    hparams: str
    settings: dict[str, str]
    run_dirs: dict[int, str] = field(default_factory=dict)
    statuses: dict[int, str] = field(default_factory=dict)
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def all_completed(self) -> bool:
        return all(status == COMPLETED for status in self.statuses.values())

    @property
    def score(self) -> float:
        """Seed-mean of each seed's lowest smoothed loss (NaN if some seed has none)."""
        bests = [best_point(*curve) for curve in self.curves.values()]
        if not bests or any(best is None for best in bests):
            return float("nan")
        return float(np.mean([best[1] for best in bests]))


def grid_points(frame: pd.DataFrame, window: int) -> list[GridPoint]:
    """Group the runs of one (task, scale) into grid points (seeds grouped)."""
    points: dict[tuple[str, str], GridPoint] = {}
    for run_dir, run in frame.groupby("run_dir", sort=True):
        first = run.iloc[0]
        key = (first["optimizer"], first["hparams"])
        if key not in points:
            settings = {
                c[len(HPARAM_PREFIX) :]: format_value(first[c])
                for c in run
                if c.startswith(HPARAM_PREFIX) and _present(first[c])
            }
            points[key] = GridPoint(key[0], key[1], settings)
        point, seed = points[key], int(first["seed"])
        if seed in point.run_dirs:
            raise UserError(
                f"two runs of the same grid point and seed: {point.run_dirs[seed]} and {run_dir}; "
                "pass only one of them"
            )
        train = run[run["split"] == "train"].drop_duplicates("step", keep="last")
        train = train.sort_values("step")
        point.run_dirs[seed] = str(run_dir)
        point.statuses[seed] = str(first["status"])
        point.curves[seed] = smooth(train["step"].to_numpy(), train["loss"].to_numpy(), window)
    return list(points.values())


def _present(value: object) -> bool:
    return isinstance(value, list | tuple) or not pd.isna(value)


def tuned(points: list[GridPoint], optimizer: str) -> tuple[GridPoint | None, str]:
    """The optimizer's grid point with the lowest score, and a note on how it was chosen.

    A grid point with a diverged, failed or unfinished run is a candidate only when no
    grid point of that optimizer completed all its seeds.
    """
    own = [p for p in points if p.optimizer == optimizer and np.isfinite(p.score)]
    completed = [p for p in own if p.all_completed]
    note = ""
    if not completed and own:
        note = "no grid point completed all seeds; tuned among partial runs"
    candidates = completed or own
    if not candidates:
        return None, "no run has a smoothed loss (all failed, or shorter than the window)"
    return min(candidates, key=lambda p: p.score), note


@dataclass
class Comparison:
    """Speedup of one tuned method over one tuned baseline, per seed pair."""

    baseline_steps: list[int]
    method_steps: list[int | None]

    @property
    def speedups(self) -> np.ndarray:
        """T_baseline / T_method per seed pair; 0 when the method never reaches L*."""
        return np.array(
            [
                b / m if m is not None else 0.0
                for b, m in zip(self.baseline_steps, self.method_steps, strict=True)
            ]
        )

    @property
    def reached(self) -> int:
        return sum(m is not None for m in self.method_steps)


def compare(method: GridPoint, baseline: GridPoint) -> Comparison:
    """Pair seeds (same seed when both have it, else every pair) and time each pair."""
    common = sorted(set(method.curves) & set(baseline.curves))
    pairs = [(s, s) for s in common] or list(
        itertools.product(sorted(baseline.curves), sorted(method.curves))
    )
    baseline_steps, method_steps = [], []
    for base_seed, method_seed in pairs:
        best = best_point(*baseline.curves[base_seed])
        if best is None:
            continue
        baseline_steps.append(best[0])
        method_steps.append(first_reach(*method.curves[method_seed], best[1]))
    return Comparison(baseline_steps, method_steps)


def resolve_window(frame: pd.DataFrame, window: int | None) -> int:
    """``window`` if given, else the runs' ``analysis.window`` (which must agree)."""
    if window is not None:
        return int(window)
    windows = frame.drop_duplicates("run_dir")["window"].dropna().unique()
    if len(windows) == 0:
        raise UserError("the runs' configs have no analysis.window; pass --window")
    if len(windows) > 1:
        found = ", ".join(str(int(w)) for w in sorted(windows))
        raise UserError(f"runs disagree on analysis.window ({found}); pass --window")
    return int(windows[0])


def speedup_table(
    frame: pd.DataFrame,
    baseline: str,
    pairs: list[tuple[str, str]] = (),
    window: int | None = None,
) -> pd.DataFrame:
    """Speedup of every optimizer over tuned ``baseline``, plus each extra (method, baseline)
    pair present, per (task, scale): one row per comparison."""
    rows = []
    for (task, scale), group in frame.groupby(["task", "scale"], sort=True):
        size = resolve_window(group, window)
        points = grid_points(group, size)
        if not any(np.isfinite(p.score) for p in points):
            longest = int(group["step"].max()) if group["step"].notna().any() else 0
            raise UserError(
                f"{task}/{scale}: no run reaches the smoothing window ({size} iterations; "
                f"longest run logged {longest}); pass a smaller --window"
            )
        optimizers = sorted({p.optimizer for p in points})
        if baseline not in optimizers:
            raise UserError(
                f"{task}/{scale}: no {baseline!r} runs to compare against; found "
                f"{', '.join(optimizers)}; choose one with --baseline"
            )
        wanted = [(m, baseline) for m in optimizers if m != baseline]
        wanted += [p for p in pairs if p not in wanted and set(p) <= set(optimizers)]
        for method, base in wanted:
            rows.append(_row(task, scale, size, points, method, base))
    return pd.DataFrame(rows)


def _row(
    task: str, scale: str, window: int, points: list[GridPoint], method: str, base: str
) -> dict[str, object]:
    best_method, method_note = tuned(points, method)
    best_base, base_note = tuned(points, base)
    own = [p for p in points if p.optimizer == method]
    statuses = [s for p in own for s in p.statuses.values()]
    row: dict[str, object] = {
        "task": task,
        "scale": scale,
        "optimizer": method,
        "baseline": base,
        "best_hparams": _shown(best_method, own),
        "baseline_hparams": _shown(best_base, [p for p in points if p.optimizer == base]),
        "hparams": best_method.hparams if best_method else "",
        "runs": len(statuses),
        "diverged": statuses.count("diverged"),
        # failed, interrupted, or no summary.json
        "failed": sum(s not in (COMPLETED, "diverged") for s in statuses),
        "window": window,
        "seeds": 0,
        "reached": 0,
        "T_baseline": np.nan,
        "T_method": np.nan,
        "speedup": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "note": "; ".join(n for n in (method_note, base_note and f"{base}: {base_note}") if n),
    }
    if best_method is None or best_base is None:
        return row
    comparison = compare(best_method, best_base)
    speedups = comparison.speedups
    reached = [m for m in comparison.method_steps if m is not None]
    low, high = bootstrap_interval(speedups)
    row.update(
        seeds=len(speedups),
        reached=comparison.reached,
        T_baseline=float(np.mean(comparison.baseline_steps)),
        T_method=float(np.mean(reached)) if reached else np.nan,
        speedup=float(speedups.mean()) if speedups.size else np.nan,
        ci_low=low,
        ci_high=high,
    )
    return row


def _shown(point: GridPoint | None, grid: list[GridPoint]) -> str:
    """The tuned point's hyperparameters that vary across its grid (the full set is in
    ``hparams``); a grid of one point shows as "single setting"."""
    if point is None:
        return ""
    varying = [k for k in point.settings if len({p.settings.get(k) for p in grid}) > 1]
    return ", ".join(f"{k}={point.settings[k]}" for k in varying) or "single setting"
