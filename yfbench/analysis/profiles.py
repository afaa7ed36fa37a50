"""Performance profiles (Dolan & Moré 2002) of optimizers across tasks, as AlgoPerf scores them.

For task p and optimizer s with time to target t_{p,s} (iterations or seconds; infinite
where the target was not reached), the performance ratio is r_{p,s} = t_{p,s} / min_s
t_{p,s}, and the profile rho_s(tau) is the fraction of tasks with r_{p,s} <= tau. Ratios
above ``r_max`` count as failures; the score is the area under rho_s over [1, r_max]
divided by r_max - 1 (1: fastest on every task). AlgoPerf uses r_max = 4.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from yfbench.analysis.plots import optimizer_style, save_figure
from yfbench.errors import UserError

R_MAX = 4.0  # AlgoPerf's tau_max


def ratios(times: pd.DataFrame) -> pd.DataFrame:
    """Performance ratios of a (task x optimizer) frame of times to target.

    A missing or infinite time is a failure (ratio inf); a task no optimizer solved
    gives every optimizer inf there.
    """
    times = times.astype(float)
    if (times <= 0).any().any():
        raise UserError("times to target must be positive (a time of 0 means no step was taken)")
    times = times.fillna(np.inf)
    best = times.min(axis=1)
    return times.div(best.where(np.isfinite(best)), axis=0).fillna(np.inf)


def profile(ratio: pd.DataFrame, taus: np.ndarray) -> pd.DataFrame:
    """rho_s(tau): per optimizer (columns), the fraction of tasks with ratio <= tau."""
    values = {name: [(ratio[name] <= tau).mean() for tau in taus] for name in ratio}
    return pd.DataFrame(values, index=pd.Index(taus, name="tau"))


def scores(ratio: pd.DataFrame, r_max: float = R_MAX) -> pd.Series:
    """Area under each profile over [1, r_max], normalised to 1: exact for the step function."""
    if not r_max > 1:
        raise UserError(f"r_max must be > 1, got {r_max}")
    clipped = ratio.where(ratio <= r_max, np.inf).clip(lower=1.0)
    # Each task contributes (r_max - r) / (r_max - 1) for a ratio r <= r_max, else 0.
    per_task = ((r_max - clipped) / (r_max - 1)).where(np.isfinite(clipped), 0.0)
    return per_task.mean(axis=0).rename("score")


def plot_profiles(
    ratio_by_measure: dict[str, pd.DataFrame], out: Path, r_max: float = R_MAX
) -> list[Path]:
    """One panel per measure (e.g. iterations, seconds); writes ``out`` as .png and .svg."""
    taus = np.linspace(1.0, r_max, 301)
    figure, axes = plt.subplots(
        1, len(ratio_by_measure), figsize=(7.5 * len(ratio_by_measure), 4.5), squeeze=False
    )
    for axis, (measure, ratio) in zip(axes[0], ratio_by_measure.items(), strict=True):
        rho = profile(ratio, taus)
        score = scores(ratio, r_max)
        names = list(ratio.columns)
        for name in score.sort_values(ascending=False).index:
            # The suite's colour and dash per optimizer: 17 optimizers outnumber any palette.
            style = optimizer_style(name, names)
            axis.step(taus, rho[name], where="post", label=f"{name} ({score[name]:.2f})", **style)
        axis.set_xlim(1.0, r_max)
        axis.set_ylim(-0.02, 1.02)
        axis.set_xlabel(f"ratio to the fastest, time in {measure} (r_max = {r_max:g})")
        axis.set_ylabel(f"fraction of the {len(ratio)} tasks")
        axis.grid(alpha=0.3)
        # Beside the panel, not on it: with 17 optimizers a legend inside hides the curves.
        axis.legend(
            fontsize=7,
            title="optimizer (score)",
            title_fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
    figure.tight_layout()
    return save_figure(figure, out)
