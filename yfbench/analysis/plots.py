"""Figures of the speedup experiments (PNG + SVG, print-readable), per task, scale and
setting: training loss, validation metric and YellowFin's tuned hyperparameters for each
optimizer's tuned grid point, and the speedup curve over the tuned baseline.

Files are named ``<task>_<scale>_<kind>`` (plus the setting, e.g.
``_trainer.staleness-15``, when a task and scale has several settings).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    Locator,
    LogLocator,
    NullFormatter,
)

from yfbench import atomic
from yfbench.analysis.headline import headline
from yfbench.analysis.runs import DEFAULT_SETTING
from yfbench.analysis.speedup import (
    CONVENTIONS,
    DEFAULT_LADDER,
    GROUP_KEYS,
    Comparison,
    GridPoint,
    compare_all,
    grid_points,
    resolve_window,
    seeds_frame,
    summary_frame,
    tuned,
)
from yfbench.errors import UserError

log = logging.getLogger("yfbench.analysis")

# Okabe-Ito colours and distinct dashes stay distinguishable in greyscale print.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
DASHES = ["-", "--", "-.", ":"]
KNOWN = ["yellowfin", "adam", "momentum_sgd", "sgd"]
MAX_POINTS = 2000
# Speedup-axis ticks (log scale): readable ratios on either side of 1x.
SPEEDUP_TICKS = [0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "lines.linewidth": 1.8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",
    "svg.hashsalt": "yfbench",  # stable element ids: regenerated SVGs diff only if they change
}


def save_figure(fig: plt.Figure, stem: Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.svg and close the figure; the SVG without a date
    and with stable element ids, so a figure regenerated from the same runs is the same
    file."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.svg"]
    try:
        with atomic.replaced(paths[0]) as handle:
            fig.savefig(handle, format="png", dpi=200, bbox_inches="tight")
        with (
            atomic.replaced(paths[1]) as handle,
            plt.rc_context({"svg.hashsalt": STYLE["svg.hashsalt"]}),
        ):
            fig.savefig(handle, format="svg", bbox_inches="tight", metadata={"Date": None})
    finally:
        plt.close(fig)
    return paths


def optimizer_style(name: str, names: list[str]) -> dict[str, object]:
    """Fixed colours for the suite's optimizers, so every figure uses the same legend."""
    order = KNOWN + sorted(n for n in names if n not in KNOWN)
    index = order.index(name)
    return {"color": PALETTE[index % len(PALETTE)], "linestyle": DASHES[index % len(DASHES)]}


def figure_stem(task: str, scale: str, setting: str) -> str:
    """``<task>_<scale>``, plus a file-name-safe setting label unless it is the default."""
    stem = f"{task}_{scale}"
    if setting != DEFAULT_SETTING:
        stem += "_" + re.sub(r"[^A-Za-z0-9.]+", "-", setting).strip("-")
    return stem


def plot_runs(
    frame: pd.DataFrame,
    out_dir: Path,
    window: int | None = None,
    baseline: str = "adam",
    ladder: Iterable[float] = DEFAULT_LADDER,
) -> list[Path]:
    """All figures for every (task, scale, setting) in ``frame``; returns the written files."""
    from yfbench.analysis.hyperparams import plot_effective_step

    written: list[Path] = []
    with plt.rc_context(STYLE):
        for (task, scale, setting), group in frame.groupby(GROUP_KEYS, sort=True):
            size = resolve_window(group, window)
            points = grid_points(group, size)
            best = _tuned_points(group, points)
            base = Path(out_dir) / figure_stem(task, scale, setting)
            title = f"{task} ({scale})" + ("" if setting == DEFAULT_SETTING else f", {setting}")
            written += plot_train_loss(best, size, title, Path(f"{base}_train_loss"))
            written += plot_validation(group, best, title, Path(f"{base}_valid"))
            for point in best:
                if _has_yellowfin_stats(group, point):
                    stem = Path(f"{base}_{point.optimizer}_hyperparams")
                    written += plot_yellowfin(group, point, title, stem)
            chosen = {p.optimizer: p for p in best}
            stem = Path(f"{base}_effective_step")
            written += plot_effective_step(group, points, chosen, size, title, stem)
            try:
                comparisons = compare_all(group, baseline, (), size, ladder)
            except UserError as error:
                log.warning("no speedup curve: %s", error)
                continue
            written += plot_speedup_curve(comparisons, title, Path(f"{base}_speedup_curve"))
    return written


def _tuned_points(group: pd.DataFrame, points: list[GridPoint]) -> list[GridPoint]:
    chosen = []
    for name in sorted({p.optimizer for p in points}):
        point, note = tuned(points, name)
        if point is None:
            log.warning("%s: no curve plotted for %s: %s", group["task"].iloc[0], name, note)
        else:
            chosen.append(point)
    return chosen


def _label(point: GridPoint) -> str:
    shown = point.settings.get("lr") if point.optimizer != "yellowfin" else None
    return f"{point.optimizer} (lr={shown})" if shown else point.optimizer


def _thin(frame: pd.DataFrame) -> pd.DataFrame:
    """Every k-th row, so that paper-scale runs (150k steps) give light SVGs."""
    return frame.iloc[:: max(1, len(frame) // MAX_POINTS)]


def _seed_band(series: dict[int, pd.Series]) -> pd.DataFrame:
    """Mean, min and max over seeds, aligned on the x values."""
    table = pd.DataFrame(series).sort_index()
    band = {"mean": table.mean(axis=1), "low": table.min(axis=1), "high": table.max(axis=1)}
    return _thin(pd.DataFrame(band))


def set_log_if_positive(ax: plt.Axes, values: list[np.ndarray]) -> None:
    """Log scale unless a value is <= 0 (e.g. a noisy objective), which log would hide."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if finite.size and finite.min() > 0:
        # Labels at 1, 2, 3, 5 times each power of ten.
        _log_y_axis(ax, LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))


def _log_y_axis(ax: plt.Axes, locator: Locator, unit: str = "") -> None:
    """A log y axis labelled plainly at ``locator``'s ticks (2, not 2 x 10^0), no minor labels."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(locator)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}{unit}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_train_loss(points: list[GridPoint], window: int, title: str, stem: Path) -> list[Path]:
    """Smoothed training loss vs iterations: seed mean, with a min-max band over seeds."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = [p.optimizer for p in points]
    plotted = []
    for point in points:
        band = _seed_band({s: pd.Series(c.values, index=c.steps) for s, c in point.curves.items()})
        style = optimizer_style(point.optimizer, names)
        ax.plot(band.index, band["mean"], label=_label(point), **style)
        ax.fill_between(band.index, band["low"], band["high"], color=style["color"], alpha=0.2)
        plotted.append(band.to_numpy().ravel())
    set_log_if_positive(ax, plotted)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"training loss (moving average, {window} it.)")
    ax.set_title(f"{title}: tuned optimizers")
    if points:
        ax.legend()
    return save_figure(fig, stem)


def plot_validation(
    group: pd.DataFrame, points: list[GridPoint], title: str, stem: Path
) -> list[Path]:
    """Validation metric vs iterations (or epochs when logged) for the tuned points."""
    judged_on = headline(group)
    if judged_on is None:
        return []
    valid, metric = group[group["split"] == "valid"], judged_on.metric
    x_name = "epoch" if "epoch" in valid and valid["epoch"].notna().all() else "step"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = [p.optimizer for p in points]
    for point in points:
        runs = valid[valid["run_dir"].isin(point.run_dirs.values())]
        series = {
            seed: run.drop_duplicates(x_name, keep="last").set_index(x_name)[metric]
            for seed, run in runs.groupby("seed")
        }
        if not series:
            continue
        band = _seed_band(series)
        style = optimizer_style(point.optimizer, names)
        ax.plot(band.index, band["mean"], marker="o", markersize=3, label=_label(point), **style)
        ax.fill_between(band.index, band["low"], band["high"], color=style["color"], alpha=0.2)
    ax.set_xlabel("epoch" if x_name == "epoch" else "iteration")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"{title}: validation")
    ax.legend()
    return save_figure(fig, stem)


def _has_yellowfin_stats(group: pd.DataFrame, point: GridPoint) -> bool:
    runs = group[group["run_dir"].isin(point.run_dirs.values())]
    return "h_min" in runs and runs["h_min"].notna().any()


def plot_yellowfin(group: pd.DataFrame, point: GridPoint, title: str, stem: Path) -> list[Path]:
    """YellowFin's tuned lr and momentum, and its curvature range [h_min, h_max], per seed."""
    train = group[(group["split"] == "train") & group["run_dir"].isin(point.run_dirs.values())]
    fig, axes = plt.subplots(3, 1, figsize=(6.4, 7.2), sharex=True)
    for index, (seed, run) in enumerate(sorted(train.groupby("seed"), key=lambda item: item[0])):
        run = _thin(run.sort_values("step"))
        color = PALETTE[index % len(PALETTE)]
        axes[0].plot(run["step"], run["lr"], color=color, label=f"seed {seed}")
        axes[1].plot(run["step"], run["momentum"], color=color)
        axes[2].plot(run["step"], run["h_max"], color=color, linestyle="-")
        axes[2].plot(run["step"], run["h_min"], color=color, linestyle="--")
    axes[0].set_ylabel("learning rate")
    axes[1].set_ylabel("momentum")
    axes[2].set_ylabel("curvature range")
    axes[2].plot([], [], color="grey", linestyle="-", label="h_max")
    axes[2].plot([], [], color="grey", linestyle="--", label="h_min")
    for ax, columns in ((axes[0], ["lr"]), (axes[2], ["h_min", "h_max"])):
        set_log_if_positive(ax, [train[c].to_numpy(dtype=float) for c in columns])
    axes[1].set_ylim(0.0, 1.0)
    axes[2].set_xlabel("iteration")
    axes[0].set_title(f"{title}: {point.optimizer} tuned hyperparameters")
    axes[0].legend()
    axes[2].legend()
    return save_figure(fig, stem)


def _speedup_ticks(values: list[float]) -> list[float]:
    """``SPEEDUP_TICKS``, or steps of 0.1 where fewer than three of them fall within the
    values' range (speedups between 1.0x and 1.25x would otherwise show one label)."""
    low, high = min(values), max(values)
    if sum(low <= tick <= high for tick in SPEEDUP_TICKS) >= 3:
        return SPEEDUP_TICKS
    return [k / 10 for k in range(max(1, math.floor(low * 10)), math.ceil(high * 10) + 1)]


def plot_speedup_curve(comparisons: list[Comparison], title: str, stem: Path) -> list[Path]:
    """Speedup over the tuned baseline at each ladder rung, one panel per convention.

    Lines: median over the seeds that reached the rung's target; dots: those seeds;
    open down-triangles: seeds that did not reach it, drawn at their bound (the speedup
    is below it); a filled down-triangle: a rung no seed reached (the largest bound).
    ``comparisons`` share one baseline and ladder (as :func:`compare_all` makes them).
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True)
    names = [str(c.info["optimizer"]) for c in comparisons]
    ladder = comparisons[0].ladder
    plotted: list[float] = [1.0]
    for ax, (convention, name) in zip(axes, CONVENTIONS.items(), strict=True):
        for index, comparison in enumerate(comparisons):
            offset = 0.008 * (index - (len(comparisons) - 1) / 2)
            style = optimizer_style(names[index], names)
            plotted += _draw_curve(ax, comparison, convention, offset, style)
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1.0)
        ax.set_xticks(ladder, [f"{f:.0%}" for f in ladder])
        ax.set_title(f"{name} convention")
    axes[0].set_ylabel(f"speedup over tuned {comparisons[0].info['baseline']}")
    finite = [v for v in plotted if math.isfinite(v)]
    if min(finite) > 0:
        _log_y_axis(axes[0], FixedLocator(_speedup_ticks(finite)), unit="x")
    axes[0].plot([], [], "v", color="grey", fillstyle="none", label="not reached: below this")
    axes[0].legend()
    fig.supxlabel("target: the baseline's best smoothed loss by this share of its run")
    fig.suptitle(f"{title}: speedup curve (median of reaching seeds; dots = seeds)")
    return save_figure(fig, stem)


def _draw_curve(
    ax: plt.Axes, comparison: Comparison, convention: str, offset: float, style: dict
) -> list[float]:
    """One optimizer's curve on ``ax``; returns the y values drawn (for the axis scale)."""
    seeds = seeds_frame([comparison])
    summary = summary_frame([comparison])
    color = style["color"]
    drawn: list[float] = []
    if not seeds.empty:
        hit = seeds[np.isfinite(seeds[f"speedup_{convention}"])]
        miss = seeds[seeds[f"speedup_{convention}"].isna()]
        miss = miss[np.isfinite(miss[f"bound_{convention}"])]
        ax.plot(
            hit["fraction"] + offset,
            hit[f"speedup_{convention}"],
            "o",
            color=color,
            markersize=3,
            alpha=0.5,
        )
        ax.plot(
            miss["fraction"] + offset,
            miss[f"bound_{convention}"],
            "v",
            color=color,
            fillstyle="none",
            markersize=5,
        )
        drawn += hit[f"speedup_{convention}"].tolist() + miss[f"bound_{convention}"].tolist()
    reached = summary[np.isfinite(summary[f"speedup_{convention}"])]
    ax.plot(
        reached["fraction"] + offset,
        reached[f"speedup_{convention}"],
        marker="o",
        label=str(comparison.info["optimizer"]),
        **style,
    )
    none = summary[(summary[f"reached_{convention}"] == 0) & (summary["seeds"] > 0)]
    none = none[np.isfinite(none[f"bound_{convention}"])]
    ax.plot(none["fraction"] + offset, none[f"bound_{convention}"], "v", color=color, markersize=8)
    drawn += reached[f"speedup_{convention}"].tolist() + none[f"bound_{convention}"].tolist()
    return drawn
