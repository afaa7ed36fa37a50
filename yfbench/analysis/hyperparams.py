"""Had YellowFin settled? Its tuned lr, momentum μ and effective step lr/(1−μ) over the
run, beside hand-tuned momentum SGD's (a figure per task and scale, and a table).

The effective step lr/(1−μ) is the long-run step size of heavy-ball momentum on a
constant gradient, so it compares YellowFin's tuned pair with momentum SGD's fixed one
(lr 1, μ 0.9: 10, times the task's decay). Values are the logged ``lr`` and ``momentum``
of the train records (the applied lr, decay included), averaged over the W logged steps
(the analysis window) that end at one third of the run and at its end; per optimizer's
tuned point the median over its evaluation seeds (:mod:`yfbench.analysis.protocol`).
A YellowFin whose effective step still moves between 1/3 and the end had not settled.

Part of that movement is the task's recipe decay (0.97 per epoch on the LSTMs), which acts
on YellowFin's lr factor as on momentum SGD's lr; it engages at the paper's run lengths.
The decay is the same for every optimizer of a task and scale, so momentum SGD's applied
lr over its first-step lr is that multiplier, and YellowFin's effective step divided by
it is what its tuner itself chose (``tuner_change``). Settling is judged on that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from yfbench.analysis.plots import optimizer_style, save_figure, set_log_if_positive
from yfbench.analysis.protocol import own_evaluation_seeds, seed_list, tuning_seeds
from yfbench.analysis.speedup import GridPoint
from yfbench.analysis.tables import markdown_table

# The optimizers whose tuned (lr, μ) are compared: YellowFin's against momentum SGD's.
OPTIMIZERS = ("yellowfin", "momentum_sgd")
MARKS = {"1/3": 1 / 3, "end": 1.0}
COLUMNS = (
    ["task", "scale", "setting", "optimizer", "seeds", "provisional"]
    + [f"{quantity}_{mark}" for mark in MARKS for quantity in ("lr", "momentum", "effective")]
    + ["change", "decay_change", "tuner_change"]
)


def schedules(
    group: pd.DataFrame, point: GridPoint, seeds: Sequence[int]
) -> dict[int, pd.DataFrame]:
    """Per seed: lr, momentum and effective step by training step."""
    train = group[(group["split"] == "train") & group["run_dir"].isin(point.run_dirs.values())]
    out = {}
    for seed in seeds:
        run = train[train["seed"] == seed].drop_duplicates("step", keep="last")
        if "lr" not in run or "momentum" not in run or run["lr"].isna().all():
            continue
        frame = run.set_index("step")[["lr", "momentum"]].astype(float).sort_index()
        frame["effective"] = frame["lr"] / (1.0 - frame["momentum"])
        out[seed] = frame
    return out


def decay_multiplier(
    group: pd.DataFrame, tuned: dict[str, GridPoint], tuning: Sequence[int]
) -> pd.Series | None:
    """The recipe's lr multiplier by step: momentum SGD's applied lr over its first-step lr
    (a tuning-seed run: the schedule does not depend on the seed). None without one."""
    if "momentum_sgd" not in tuned:
        return None
    series = schedules(group, tuned["momentum_sgd"], tuned["momentum_sgd"].run_dirs)
    if not series:
        return None
    lr = series[min(series, key=lambda seed: (seed not in tuning, seed))]["lr"]
    return lr / lr.iloc[0]


def averaged_at(frame: pd.DataFrame, step: float, window: int) -> pd.Series:
    """Mean of each column over the logged steps in (step - window, step]."""
    keep = (frame.index <= step) & (frame.index > step - window)
    return frame[keep].mean() if keep.any() else frame.iloc[:0].mean()


def hyperparams_rows(
    group: pd.DataFrame, points: Sequence[GridPoint], tuned: dict[str, GridPoint], window: int
) -> list[dict]:
    """One row per optimizer in ``OPTIMIZERS`` with a tuned point (``tuned``: optimizer ->
    point); ``points`` (the whole grid) give the tuning seeds."""
    tuning = tuning_seeds(points)
    decay = decay_multiplier(group, tuned, tuning)
    rows = []
    for point in (tuned[name] for name in OPTIMIZERS if name in tuned):
        seeds, provisional = own_evaluation_seeds(point, tuning)
        series = schedules(group, point, seeds)
        if not series:
            continue
        first = group.iloc[0]
        row = {
            "task": first["task"],
            "scale": first["scale"],
            "setting": first["setting"],
            "optimizer": point.optimizer,
            "seeds": seed_list(series),
            "provisional": provisional,
        }
        for mark, share in MARKS.items():
            values = [averaged_at(f, share * f.index.max(), window) for f in series.values()]
            for quantity in ("lr", "momentum", "effective"):
                row[f"{quantity}_{mark}"] = float(np.median([v[quantity] for v in values]))
        row["change"] = row["effective_end"] / row["effective_1/3"] - 1.0
        row["decay_change"], row["tuner_change"] = math.nan, row["change"]
        if decay is not None:
            ends = [
                averaged_at(decay.to_frame("m"), share * decay.index.max(), window)["m"]
                for share in MARKS.values()
            ]
            row["decay_change"] = ends[1] / ends[0] - 1.0
            row["tuner_change"] = (1.0 + row["change"]) / (1.0 + row["decay_change"]) - 1.0
        rows.append(row)
    return rows


def display_hyperparams(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, row in table.iterrows():
        seeds = f"{row['seeds']}" + (" (provisional: tuning seeds)" if row["provisional"] else "")
        rows.append(
            [row["task"], row["scale"], row["setting"], row["optimizer"], seeds]
            + [_g(row[f"{q}_{m}"]) for m in MARKS for q in ("lr", "momentum", "effective")]
            + [_percent(row[key]) for key in ("change", "decay_change", "tuner_change")]
        )
    headers = ["task", "scale", "setting", "optimizer", "seeds"]
    headers += [f"{q} at {m}" for m in MARKS for q in ("lr", "μ", "lr/(1−μ)")]
    changes = ["lr/(1−μ) end vs 1/3", "recipe decay end vs 1/3", "net of the decay"]
    return pd.DataFrame(rows, columns=headers + changes)


def _g(value: float) -> str:
    return f"{value:.3g}"


def _percent(value: float) -> str:
    return f"{value:+.0%}" if math.isfinite(value) else "—"


def plot_effective_step(
    group: pd.DataFrame,
    points: Sequence[GridPoint],
    tuned: dict[str, GridPoint],
    window: int,
    title: str,
    stem: Path,
) -> list[Path]:
    """lr, μ and lr/(1−μ) over the run (moving average of ``window`` steps; line: median
    over evaluation seeds, band: their range) for YellowFin and momentum SGD."""
    tuning = tuning_seeds(points)
    chosen = [tuned[name] for name in OPTIMIZERS if name in tuned]
    if not any(p.optimizer == "yellowfin" for p in chosen):
        return []
    fig, axes = plt.subplots(3, 1, figsize=(6.4, 7.6), sharex=True)
    names = [p.optimizer for p in chosen]
    drawn: dict[str, list[np.ndarray]] = {"lr": [], "effective": []}
    for point in chosen:
        seeds, provisional = own_evaluation_seeds(point, tuning)
        series = schedules(group, point, seeds)
        if not series:
            continue
        style = optimizer_style(point.optimizer, names)
        label = (
            f"{point.optimizer} (seeds {seed_list(series)}{', provisional' if provisional else ''})"
        )
        for ax, quantity in zip(axes, ("lr", "momentum", "effective"), strict=True):
            table = pd.DataFrame({s: f[quantity] for s, f in series.items()})
            table = table.rolling(window, min_periods=1).mean()
            table = table.iloc[:: max(1, len(table) // 2000)]
            ax.plot(table.index, table.median(axis=1), label=label, **style)
            ax.fill_between(
                table.index, table.min(axis=1), table.max(axis=1), color=style["color"], alpha=0.2
            )
            if quantity in drawn:
                drawn[quantity].append(table.to_numpy().ravel())
    for ax, quantity in ((axes[0], "lr"), (axes[2], "effective")):
        set_log_if_positive(ax, drawn[quantity])
    axes[0].set_ylabel("learning rate")
    axes[1].set_ylabel("momentum μ")
    axes[1].set_ylim(0.0, 1.0)
    axes[2].set_ylabel("effective step lr/(1−μ)")
    axes[2].set_xlabel(f"iteration (moving average of {window})")
    for share in MARKS.values():
        for ax in axes:
            ax.axvline(share * group["step"].max(), color="grey", linestyle=":", linewidth=0.8)
    axes[0].set_title(f"{title}: tuned lr and momentum")
    axes[0].legend()
    return save_figure(fig, stem)


def section(table: pd.DataFrame, figures: list[str]) -> list[str]:
    """The report's section; ``figures`` are Markdown links to the effective-step plots."""
    if table.empty:
        return []
    lines = [
        "## Had YellowFin settled?",
        "",
        "YellowFin's tuned lr and momentum μ and the effective step lr/(1−μ), beside tuned "
        "momentum SGD's, averaged over the W steps ending at 1/3 of the run and at its end "
        "(median over evaluation seeds). The recipe's lr decay (read from momentum SGD's "
        'applied lr) acts on both; "net of the decay" is what YellowFin\'s tuner itself '
        "did. A YellowFin whose net effective step still moves at the end had not settled, "
        "and a longer run could change its comparison.",
        "",
        markdown_table(display_hyperparams(table)),
    ]
    return lines + ([f"Figures: {', '.join(figures)}.", ""] if figures else [])
