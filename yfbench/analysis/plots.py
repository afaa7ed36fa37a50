"""Figures of the speedup experiments: training loss, validation metric and YellowFin's
tuned hyperparameters, for each optimizer's tuned grid point (PNG + SVG, print-readable)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from yfbench.analysis.speedup import GridPoint, grid_points, resolve_window, tuned  # noqa: E402

# Okabe-Ito colours and distinct dashes stay distinguishable in greyscale print.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
DASHES = ["-", "--", "-.", ":"]
KNOWN = ["yellowfin", "adam", "momentum_sgd", "sgd"]
VALID_METRICS = ("accuracy", "perplexity", "f1", "loss")
MAX_POINTS = 2000
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
    """Write ``stem``.png and ``stem``.svg and close the figure."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.svg"]
    fig.savefig(paths[0], dpi=200, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return paths


def optimizer_style(name: str, names: list[str]) -> dict[str, object]:
    """Fixed colours for the suite's optimizers, so every figure uses the same legend."""
    order = KNOWN + sorted(n for n in names if n not in KNOWN)
    index = order.index(name)
    return {"color": PALETTE[index % len(PALETTE)], "linestyle": DASHES[index % len(DASHES)]}


def plot_runs(frame: pd.DataFrame, out_dir: Path, window: int | None = None) -> list[Path]:
    """All figures for every (task, scale) in ``frame``; returns the written files."""
    written: list[Path] = []
    with plt.rc_context(STYLE):
        for (task, scale), group in frame.groupby(["task", "scale"], sort=True):
            size = resolve_window(group, window)
            best = _tuned_points(group, size)
            base, title = Path(out_dir) / f"{task}_{scale}", f"{task} ({scale})"
            written += plot_train_loss(best, size, title, Path(f"{base}_train_loss"))
            written += plot_validation(group, best, title, Path(f"{base}_valid"))
            for point in best:
                if _has_yellowfin_stats(group, point):
                    stem = Path(f"{base}_{point.optimizer}_hyperparams")
                    written += plot_yellowfin(group, point, title, stem)
    return written


def _tuned_points(group: pd.DataFrame, window: int) -> list[GridPoint]:
    points = grid_points(group, window)
    chosen = []
    for name in sorted({p.optimizer for p in points}):
        point, note = tuned(points, name)
        if point is None:
            warnings.warn(
                f"{group['task'].iloc[0]}: no curve plotted for {name}: {note}", stacklevel=2
            )
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


def _set_log_if_positive(ax: plt.Axes, values: list[np.ndarray]) -> None:
    """Log scale unless a value is <= 0 (e.g. a noisy objective), which log would hide."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if finite.size and finite.min() > 0:
        ax.set_yscale("log")


def plot_train_loss(points: list[GridPoint], window: int, title: str, stem: Path) -> list[Path]:
    """Smoothed training loss vs iterations: seed mean, with a min-max band over seeds."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = [p.optimizer for p in points]
    plotted = []
    for point in points:
        band = _seed_band({s: pd.Series(v, index=t) for s, (t, v) in point.curves.items()})
        style = optimizer_style(point.optimizer, names)
        ax.plot(band.index, band["mean"], label=_label(point), **style)
        ax.fill_between(band.index, band["low"], band["high"], color=style["color"], alpha=0.2)
        plotted.append(band.to_numpy().ravel())
    _set_log_if_positive(ax, plotted)
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
    valid = group[group["split"] == "valid"]
    metric = next((m for m in VALID_METRICS if m in valid and valid[m].notna().any()), None)
    if metric is None:
        return []
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
        _set_log_if_positive(ax, [train[c].to_numpy(dtype=float) for c in columns])
    axes[1].set_ylim(0.0, 1.0)
    axes[2].set_xlabel("iteration")
    axes[0].set_title(f"{title}: {point.optimizer} tuned hyperparameters")
    axes[0].legend()
    axes[2].legend()
    return save_figure(fig, stem)
