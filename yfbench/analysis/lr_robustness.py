"""Robustness to a misspecified learning rate: loss and validation metric vs lr multiplier.

For Adam and momentum SGD the multiplier is lr over the optimizer's tuned lr, the tuned
point being chosen by :func:`yfbench.analysis.speedup.tuned` on the speedup grid's runs
(``--tuned-from``) over the grid's tuning seeds (:mod:`yfbench.analysis.protocol`: seed 1
of a two-stage grid); for YellowFin it is its ``lr_factor`` (absent = 1). Per grid point
and seed: the final smoothed training loss (:func:`yfbench.analysis.final_loss.final_loss`;
none for a run that did not complete) and the last value of the task's headline validation metric
(:mod:`yfbench.analysis.headline`). The table and figure give the median over
seeds and the min-max band, and count the seeds that diverged or failed, which have no
value.

Seeds. The 1x point won its grid on the tuning seeds, so on them the curve's minimum at
1x is favoured (the winner's curse) and the curve's shape would flatter the tuned
optimizers. Every point, at every multiplier and for every optimizer, YellowFin included,
therefore aggregates only its evaluation seeds (its seeds minus the tuning seeds), and
says which; a point with no other seed yet shows its tuning seeds, labelled provisional
as in the speedup report.

Runs found twice (the same config hash, e.g. a speedup-grid run passed again) count once.

``python -m yfbench.analysis.lr_robustness RUN_DIRS --tuned-from GRID_DIR --out DIR``
``python -m yfbench.analysis.lr_robustness missing GRID_DIR --seeds 2,3,4`` prints the
sweeps that give the grid's points the ``--seeds`` they lack, a line ``SEEDS POINTS`` each
(for a second stage).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from yfbench import atomic
from yfbench.analysis import cli
from yfbench.analysis.final_loss import final_loss
from yfbench.analysis.findings import Findings
from yfbench.analysis.headline import final_value, headline
from yfbench.analysis.paper import optimizer_name
from yfbench.analysis.plots import STYLE, figure_stem, optimizer_style, save_figure
from yfbench.analysis.protocol import band, own_plan, seed_list, tuning_seeds
from yfbench.analysis.runs import load_runs, runs_table
from yfbench.analysis.speedup import GROUP_KEYS, grid_points, resolve_window, tuned
from yfbench.analysis.tables import DASH, markdown_table
from yfbench.errors import UserError

OPTIMIZERS = ("adam", "momentum_sgd", "yellowfin")
# The findings' robust region: the multipliers whose median final loss is within this share
# of the optimizer's best (the paper's claim is qualitative; this makes it a number).
ROBUST = 0.05


@dataclass(frozen=True)
class Tuned:
    """The speedup grid's tuned lrs, (task, optimizer) -> lr, and per task the tuning seeds
    that chose them (every reported number leaves those out)."""

    lrs: dict[tuple[str, str], float] = field(default_factory=dict)
    seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)


def tuned_lrs(grid: pd.DataFrame, window: int | None = None) -> Tuned:
    """The tuned lr of Adam and momentum SGD in the speedup grid, and its tuning seeds."""
    found = Tuned()
    for (task, _, _), group in grid.groupby(GROUP_KEYS, sort=True):
        points = grid_points(group, resolve_window(group, window))
        seeds = set(found.seeds.get(task, ())) | set(tuning_seeds(points))
        found.seeds[task] = tuple(sorted(seeds))
        for optimizer in ("adam", "momentum_sgd"):
            point, _ = tuned(points, optimizer)
            if point is not None:
                found.lrs[(task, optimizer)] = float(point.settings["lr"])
    return found


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    """One copy of each run: the first directory of every config hash."""
    first = frame.drop_duplicates("run_dir").drop_duplicates("config_hash")["run_dir"]
    return frame[frame["run_dir"].isin(set(first))]


def robustness_table(
    frame: pd.DataFrame, tuned_lr: Tuned, window: int | None = None
) -> pd.DataFrame:
    """One row per (task, scale, setting, optimizer, grid point) with its multiplier, over
    the point's evaluation seeds (``seeds_used`` says which, ``provisional`` when only
    tuning seeds exist)."""
    rows = []
    frame = _dedupe(frame)
    for (task, scale, setting), group in frame.groupby(GROUP_KEYS, sort=True):
        size = resolve_window(group, window)
        judged_on = headline(group)
        metric = judged_on.metric if judged_on else None
        for point in grid_points(group[group["optimizer"].isin(OPTIMIZERS)], size):
            if point.optimizer == "yellowfin":
                multiplier = float(point.settings.get("lr_factor", 1.0))
            elif (task, point.optimizer) in tuned_lr.lrs:
                multiplier = float(point.settings["lr"]) / tuned_lr.lrs[(task, point.optimizer)]
            else:
                raise UserError(
                    f"{task}: no tuned {point.optimizer} lr in the speedup grid passed with "
                    "--tuned-from; pass the task's speedup grid runs"
                )
            plan = own_plan(point, tuned_lr.seeds.get(task, ()))
            # A seed that did not complete has no value in either column (its last
            # evaluation came before it diverged or failed); it is counted below.
            completed = [seed for seed in plan.used if point.statuses[seed] == "completed"]
            losses = [final_loss(point.curves[seed]) for seed in completed]
            metrics = [
                final_value(group[group["run_dir"] == point.run_dirs[seed]], metric)
                for seed in completed
            ]
            statuses = [point.statuses[seed] for seed in plan.used]
            rows.append(
                {
                    "task": task,
                    "scale": scale,
                    "setting": setting,
                    "window": size,
                    "optimizer": point.optimizer,
                    "hparams": point.hparams,
                    "multiplier": multiplier,
                    "seeds_used": plan.label,
                    "provisional": plan.provisional,
                    "seeds": len(statuses),
                    "diverged": statuses.count("diverged"),
                    "failed": sum(s not in ("completed", "diverged") for s in statuses),
                    **_band("loss", losses),
                    "metric": metric,
                    **_band("valid", metrics),
                }
            )
    return pd.DataFrame(rows).sort_values(GROUP_KEYS + ["optimizer", "multiplier"])


def _band(prefix: str, values: list[float]) -> dict[str, float]:
    over_seeds = band(values)
    return {f"{prefix}_{name}": value for name, value in vars(over_seeds).items()}


def _cell(row: pd.Series, prefix: str) -> str:
    if row[f"{prefix}_n"] == 0:
        return DASH
    text = f"{row[f'{prefix}_median']:.4g}"
    if row[f"{prefix}_n"] > 1:
        text += f" ({row[f'{prefix}_low']:.4g}–{row[f'{prefix}_high']:.4g})"
    return text + f" [{int(row[f'{prefix}_n'])}/{int(row['seeds'])}]"


def display(table: pd.DataFrame) -> pd.DataFrame:
    rows = [
        [
            row["task"],
            row["scale"],
            row["optimizer"],
            f"{row['multiplier']:.3g}x",
            row["hparams"],
            row["seeds_used"],
            f"{row['diverged']} / {row['failed']}",
            _cell(row, "loss"),
            f"{row['metric']}: {_cell(row, 'valid')}" if row["metric"] else DASH,
        ]
        for _, row in table.iterrows()
    ]
    headers = [
        "task",
        "scale",
        "optimizer",
        "lr multiplier",
        "hyperparameters",
        "seeds",
        "diverged / failed",
        "final smoothed training loss: median (min–max) [seeds with a value]",
        "validation metric, last evaluation",
    ]
    return pd.DataFrame(rows, columns=headers)


def plot_task(table: pd.DataFrame, stem: Path, title: str) -> list[Path]:
    """Final loss and validation metric vs multiplier; median line and min-max band over
    each point's evaluation seeds, a hollow marker where a point has only tuning seeds
    (provisional), and an x near the top (a row per optimizer) for every point where some seed
    diverged or failed."""
    names = sorted(table["optimizer"].unique())
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(12.0, 4.6), gridspec_kw={"wspace": 0.3})
        for ax, prefix in zip(axes, ("loss", "valid"), strict=True):
            for optimizer, rows in table.groupby("optimizer", sort=True):
                style = optimizer_style(optimizer, names)
                ax.plot(
                    rows["multiplier"],
                    rows[f"{prefix}_median"],
                    marker="o",
                    label=optimizer,
                    **style,
                )
                ax.fill_between(
                    rows["multiplier"],
                    rows[f"{prefix}_low"],
                    rows[f"{prefix}_high"],
                    color=style["color"],
                    alpha=0.15,
                )
                provisional = rows[rows["provisional"].astype(bool)]
                ax.plot(
                    provisional["multiplier"],
                    provisional[f"{prefix}_median"],
                    "o",
                    markerfacecolor="white",
                    markeredgecolor=style["color"],
                )
                # One row of x marks per optimizer, so that two at a multiplier both show.
                lost = rows[(rows["diverged"] + rows["failed"]) > 0]
                ax.plot(
                    lost["multiplier"],
                    [1.0 - 0.04 * names.index(optimizer)] * len(lost),
                    "x",
                    color=style["color"],
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                    markersize=8,
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.axvline(1.0, color="grey", linewidth=0.8)
            ax.set_xlabel("lr / tuned lr (YellowFin: lr_factor)")
        metric = table["metric"].dropna().iloc[0] if table["metric"].notna().any() else "loss"
        axes[0].set_ylabel("final smoothed training loss")
        axes[1].set_ylabel(f"validation {metric} (last evaluation)")
        axes[0].legend()
        fig.suptitle(
            f"{title}: median and min–max over evaluation seeds\n"
            "(hollow: provisional, tuning seeds only; × at the top: a seed diverged)"
        )
        return save_figure(fig, stem)


def robust_span(rows: pd.DataFrame) -> tuple[float, float] | None:
    """The multipliers, contiguous around the best one, whose median final loss is within
    :data:`ROBUST` of the best (a point with no value ends the span); None without one."""
    rows = rows.sort_values("multiplier").reset_index(drop=True)
    losses = rows["loss_median"].to_numpy(dtype=float)
    if not np.isfinite(losses).any():
        return None
    best = int(np.nanargmin(losses))
    bound = losses[best] * (1.0 + ROBUST)
    low = high = best
    while low > 0 and losses[low - 1] <= bound:
        low -= 1
    while high < len(losses) - 1 and losses[high + 1] <= bound:
        high += 1
    return float(rows["multiplier"][low]), float(rows["multiplier"][high])


def _no_loss(row: pd.Series) -> str:
    return "diverged" if row["diverged"] > 0 else "no loss"


def _span_text(rows: pd.DataFrame, span: tuple[float, float], tried: str) -> str:
    """``0.3x–3x (1.0 decades of the 0.01x–10x tried)``; for a single best point, how far
    above the best its tried neighbours end (``0.0 decades`` hides whether by 6% or 60%)."""
    if span[0] != span[1]:
        decades = math.log10(span[1] / span[0])
        return f"{span[0]:.3g}x–{span[1]:.3g}x ({decades:.1f} decades of the {tried} tried)"
    rows = rows.sort_values("multiplier").reset_index(drop=True)
    best = int(np.flatnonzero(rows["multiplier"].to_numpy() == span[0])[0])
    neighbours = []
    for _, row in rows.iloc[max(best - 1, 0) : best + 2].drop(index=best).iterrows():
        excess = row["loss_median"] / rows["loss_median"][best] - 1.0
        neighbours.append(
            f"{row['multiplier']:.3g}x "
            + (f"{excess:+.0%}" if np.isfinite(excess) else _no_loss(row))
        )
    return (
        f"only {span[0]:.3g}x (its neighbours' loss above it: {', '.join(neighbours)}; "
        f"{tried} tried)"
    )


def findings(table: pd.DataFrame, label: Callable[[str], str] = str) -> list[str]:
    """One sentence per task and scale for the report's "What we found": each optimizer's
    robust region (multipliers within :data:`ROBUST` of its best final loss, in decades)
    against the range tried, and where seeds diverged."""
    lines = []
    for (task, scale), group in table.groupby(["task", "scale"], sort=True):
        parts, diverged = [], []
        for optimizer, rows in group.groupby("optimizer", sort=True):
            tried = f"{rows['multiplier'].min():.3g}x–{rows['multiplier'].max():.3g}x"
            span = robust_span(rows)
            if span is None:
                parts.append(f"{optimizer_name(optimizer)} no final loss at {tried}")
                continue
            parts.append(f"{optimizer_name(optimizer)} {_span_text(rows, span, tried)}")
            diverged += [
                f"{optimizer_name(optimizer)} {r['multiplier']:.3g}x "
                f"({int(r['diverged'])}/{int(r['seeds'])})"
                for _, r in rows[rows["diverged"] > 0].iterrows()
            ]
        provisional = " (provisional: tuning seeds only)" if group["provisional"].any() else ""
        lines.append(
            f"Learning-rate robustness, {label(task)} ({scale}){provisional}: multipliers of "
            f"the tuned lr (YellowFin: lr_factor) where the final smoothed training loss "
            f"(median over evaluation seeds) is within {ROBUST:.0%} of the optimizer's best: "
            + "; ".join(parts)
            + (f"; diverged: {', '.join(diverged)}" if diverged else "")
            + "."
        )
    return lines


def run_findings(found: list[tuple[Path, Path]], label: Callable[[str], str]) -> Findings:
    """:func:`findings` of each task's robustness runs with its speedup grid (the tuned lrs,
    and the grid's runs at the other multipliers); no clause for the summary line."""
    lines = [
        line
        for runs, grid in found
        if grid.is_dir()
        for line in findings(
            robustness_table(load_runs([runs, grid]), tuned_lrs(load_runs([grid]))), label
        )
    ]
    return Findings([], lines)


def missing_sweeps(grid_dir: Path, seeds: list[int]) -> list[tuple[list[int], list[str]]]:
    """The sweeps that complete ``grid_dir``'s runs on ``seeds``: its ``grid_point`` names
    grouped by the seeds they lack, so each group is one sweep (seeds x points, no run
    twice) and seeds lacking the same points share a sweep instead of leaving a core idle
    at the end of each."""
    runs = runs_table(load_runs([grid_dir])).dropna(subset=["grid_point"])
    groups: dict[tuple[int, ...], list[str]] = {}
    for name, present in runs.groupby("grid_point")["seed"].apply(set).items():
        lacking = tuple(sorted(set(seeds) - present))
        if lacking:
            groups.setdefault(lacking, []).append(str(name))
    return [(list(lacking), points) for lacking, points in sorted(groups.items())]


def write_outputs(
    run_dirs: list[Path], tuned_from: Path, out: Path, window: int | None = None
) -> list[Path]:
    tuned_lr = tuned_lrs(load_runs([tuned_from]), window)
    table = robustness_table(load_runs([*run_dirs, tuned_from]), tuned_lr, window)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for (task, scale), rows in table.groupby(["task", "scale"], sort=True):
        stem = Path(f"{out / figure_stem(task, scale, 'default')}_lr_robustness")
        written += plot_task(rows, stem, f"{task} ({scale})")
    csv = out / "lr_robustness.csv"
    atomic.write_text(csv, table.to_csv(index=False))
    lines = [
        "# Robustness to the learning rate",
        "",
        "Generated by `python -m yfbench.analysis.lr_robustness` from the run directories. "
        "Multiplier: lr over the optimizer's tuned lr in the speedup grid, YellowFin's "
        "lr_factor. Cells: median over the point's evaluation seeds (min–max) [seeds with a "
        "value]: every point, at every multiplier and for every optimizer, leaves out the "
        "tuning seeds that chose the 1x lrs (the winner's curse would flatter 1x on them); "
        "the seeds column names the seeds, and a point with only tuning seeds is labelled "
        "provisional. A diverged run has no final loss and is counted, never given a number.",
        "",
        "Tuned lrs used: "
        + ", ".join(f"{t} {o} {lr:g}" for (t, o), lr in sorted(tuned_lr.lrs.items()))
        + "; chosen on tuning seeds "
        + "; ".join(
            f"{t} {seed_list(seeds) or 'none'}" for t, seeds in sorted(tuned_lr.seeds.items())
        )
        + ".",
        "",
        markdown_table(display(table)),
    ]
    return [cli.write_page(out / "lr_robustness.md", lines, written), csv, *written]


def _tuned_from(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tuned-from",
        type=Path,
        required=True,
        help="the task's speedup grid runs (tuned lrs; reused runs)",
    )


def _missing(args: list[str]) -> str:
    """One line per sweep of :func:`missing_sweeps`: ``SEEDS POINTS``, comma-separated."""
    parser = argparse.ArgumentParser(prog="python -m yfbench.analysis.lr_robustness missing")
    parser.add_argument("grid_dir", type=Path)
    parser.add_argument("--seeds", default="2,3,4")
    parsed = parser.parse_args(args)
    sweeps = missing_sweeps(parsed.grid_dir, [int(s) for s in parsed.seeds.split(",")])
    return "\n".join(f"{seed_list(seeds)} {','.join(points)}" for seeds, points in sweeps)


def main(argv: list[str] | None = None) -> int:
    return cli.run(
        "yfbench.analysis.lr_robustness",
        write_outputs,
        argv,
        options=_tuned_from,
        subcommands={"missing": _missing},
    )


if __name__ == "__main__":
    sys.exit(main())
