"""Momentum ablation: does YellowFin's tuned momentum matter, or only its effective step?

Compares YellowFin (the speedup grid's runs) with three ablations run by
``experiment=momentum_ablation_*``, seed by seed in one (task, scale, setting):

- ``yellowfin_rescaled_sgd``: mu = 0 and lr = alpha / (1 - mu) of the pair YellowFin tunes
  at every step from its own statistics ("YellowFin rescaling", the readers' test);
- ``yellowfin_fixed_momentum`` with mu = 0 and mu = 0.9: momentum fixed, lr still tuned.

The table gives each variant's smoothed training loss minus YellowFin's at a fixed
budget (the shortest run length of the pair; :mod:`yfbench.analysis.final_loss`), its
mean over seeds and 95% t interval, and the verdict: "YellowFin lower" (the tuned momentum
helps), "variant lower", or "tie" (the interval contains 0). The figure shows the smoothed
losses and the effective step lr / (1 - mu) that each run applied.

Seeds (:mod:`yfbench.analysis.protocol`). Nothing here is chosen on a seed: YellowFin is
untuned, each variant is one fixed point (mu = 0 and mu = 0.9 are both reported, never
the better of them), so no seed tunes and every seed both points ran is an evaluation
seed; the table names them. A tuned baseline must never enter this table: it would
need the tuning seeds left out, as the asynchrony and clipping analyses do.

``python -m yfbench.analysis.momentum_ablation RUN_DIRS --out DIR``
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from yfbench import atomic
from yfbench.analysis import cli
from yfbench.analysis.final_loss import (
    difference_text,
    final_loss,
    paired_budget_difference,
    seed_band,
    verdict,
)
from yfbench.analysis.findings import Findings
from yfbench.analysis.plots import STYLE, figure_stem, optimizer_style, save_figure
from yfbench.analysis.protocol import band, evaluation_plan
from yfbench.analysis.runs import load_runs
from yfbench.analysis.speedup import GROUP_KEYS, GridPoint, grid_points, resolve_window
from yfbench.analysis.tables import markdown_table
from yfbench.errors import UserError

BASELINE = "yellowfin"
# The seeds that chose a point here: none (see the module docstring).
NO_TUNING: tuple[int, ...] = ()
RESCALED = "yellowfin_rescaled_sgd"
VARIANTS = (RESCALED, "yellowfin_fixed_momentum")
VERDICTS = {"higher": "YellowFin lower", "lower": "variant lower", "tie": "tie"}


def variant_label(point: GridPoint) -> str:
    """``rescaled SGD``, ``fixed μ=0.9``."""
    if point.optimizer == RESCALED:
        return "rescaled SGD (μ=0, lr=α/(1−μ))"
    return f"fixed μ={point.settings.get('momentum', '?')} (lr tuned)"


def _baseline(points: list[GridPoint], where: str) -> GridPoint:
    own = [p for p in points if p.optimizer == BASELINE]
    if len(own) != 1:
        found = "; ".join(p.hparams for p in own) or "none"
        raise UserError(
            f"{where}: the ablation needs exactly one YellowFin grid point in this setting "
            f"(the speedup grid's), found {len(own)} ({found}); pass the speedup grid's "
            "yellowfin runs and the ablation runs, run with the same trainer settings"
        )
    return own[0]


def ablation_table(frame: pd.DataFrame, window: int | None = None) -> pd.DataFrame:
    """One row per (task, scale, setting) and variant grid point."""
    rows = []
    for (task, scale, setting), group in frame.groupby(GROUP_KEYS, sort=True):
        size = resolve_window(group, window)
        points = grid_points(group, size)
        variants = [p for p in points if p.optimizer in VARIANTS]
        if not variants:
            continue
        base = _baseline(points, f"{task}/{scale} ({setting})")
        for point in variants:
            plan = evaluation_plan(point, base, NO_TUNING)
            difference = paired_budget_difference(point, base, plan)
            rows.append(
                {
                    "task": task,
                    "scale": scale,
                    "setting": setting,
                    "window": size,
                    "variant": variant_label(point),
                    "optimizer": point.optimizer,
                    "hparams": point.hparams,
                    "variant_final": _median_final(point, plan.used),
                    "yellowfin_final": _median_final(base, plan.used),
                    "variant_diverged": sum(s == "diverged" for s in point.statuses.values()),
                    **{k: v for k, v in difference.items() if k != "per_seed"},
                    "verdict": VERDICTS.get(verdict(difference), verdict(difference)),
                }
            )
    return pd.DataFrame(rows)


def _median_final(point: GridPoint, seeds: Iterable[int]) -> float:
    """Median final smoothed loss over ``seeds`` (the pair's), so both medians are paired."""
    return band(final_loss(point.curves[s]) for s in seeds).median


def display(table: pd.DataFrame) -> pd.DataFrame:
    rows = [
        [
            row["task"],
            row["scale"],
            row["setting"],
            row["variant"],
            row["seeds_used"],
            f"{row['yellowfin_final']:.4f}",
            f"{row['variant_final']:.4f}"
            + (f" ({row['variant_diverged']} diverged)" if row["variant_diverged"] else ""),
            str(row["budget"]),
            difference_text(row),
            row["verdict"],
        ]
        for _, row in table.iterrows()
    ]
    headers = [
        "task",
        "scale",
        "setting",
        "variant",
        "seeds",
        "YellowFin final loss (median)",
        "variant final loss (median)",
        "budget (iterations)",
        "variant − YellowFin at the budget (95% CI)",
        "verdict",
    ]
    return pd.DataFrame(rows, columns=headers)


def findings(table: pd.DataFrame, label: Callable[[str], str] = str) -> list[str]:
    """One sentence per (task, scale, setting) for the report's "What we found": each
    variant's loss minus YellowFin's at the budget, with its interval and verdict."""
    lines = []
    for (task, scale, setting), group in table.groupby(["task", "scale", "setting"], sort=True):
        where = f"{label(task)} ({scale}{'' if setting == 'default' else ', ' + setting})"
        parts = [
            f"{row['variant']} {difference_text(row)}: {row['verdict']}"
            for _, row in group.iterrows()
        ]
        lines.append(
            f"Does the tuned momentum matter? {where}, smoothed training loss of each "
            f"variant minus YellowFin's at the budget (95% t interval): " + "; ".join(parts) + "."
        )
    return lines


def rescaled_summary(table: pd.DataFrame, label: Callable[[str], str] = str) -> list[str]:
    """Across tasks: how rescaled SGD (YellowFin's own effective step, no momentum) ends
    against YellowFin. In bold where YellowFin is lower on none: there its tuned momentum
    bought nothing at these budgets."""
    rows = _rescaled(table)
    if len(rows) < 2:
        return []
    groups: dict[str, list[str]] = {}
    for _, row in rows.iterrows():
        verdict_said = row["verdict"].replace("variant", "rescaled SGD")
        groups.setdefault(verdict_said, []).append(f"{label(row['task'])} ({row['scale']})")
    said = "; ".join(f"{verdict} on {', '.join(where)}" for verdict, where in groups.items())
    text = (
        f"rescaled SGD (μ = 0, lr = YellowFin's own α/(1−μ) at every step) against "
        f"YellowFin, smoothed training loss at the budget: {said}."
    )
    matters = _matters(rows)
    if not matters.any():
        counts = _per_scale(rows, pd.Series(True, index=rows.index))
        return [
            f"**YellowFin's tuned momentum buys nothing over its own effective step on "
            f"{counts}:** {text}"
        ]
    return [f"YellowFin's tuned momentum matters on {_per_scale(rows, matters)}: {text}"]


def _rescaled(table: pd.DataFrame) -> pd.DataFrame:
    """The ablation table's rescaled-SGD rows, one per task and scale."""
    return table[table["optimizer"] == RESCALED]


def _matters(rows: pd.DataFrame) -> pd.Series:
    """Where YellowFin ends below the variant: its tuned momentum bought something."""
    return rows["verdict"] == VERDICTS["higher"]


def lead(table: pd.DataFrame) -> list[str]:
    """The summary line's clause: on how many tasks YellowFin's tuned momentum ends below
    rescaled SGD (its own effective step with μ = 0)."""
    rows = _rescaled(table)
    if rows.empty:
        return []
    return [
        f"YellowFin ends lower than rescaled SGD (μ = 0 at YellowFin's own effective step) on "
        f"{_per_scale(rows, _matters(rows))}; elsewhere the two tie or rescaled SGD ends lower"
    ]


def _per_scale(rows: pd.DataFrame, counted: pd.Series) -> str:
    """How many tasks ``counted`` marks: "1 of 4 tasks" at one scale, "1 of 4 tasks at the
    cpu scale, 0 of 1 at the paper scale" where a task ran at two (once per scale)."""
    scales = rows.groupby("scale", sort=True).groups
    if len(scales) == 1:
        return f"{int(counted.sum())} of {len(rows)} tasks"
    return ", ".join(
        f"{int(counted[index].sum())} of {len(index)}"
        + (" tasks" if i == 0 else "")
        + f" at the {scale} scale"
        for i, (scale, index) in enumerate(scales.items())
    )


def run_findings(found: list[tuple[Path, Path]], label: Callable[[str], str]) -> Findings:
    """:func:`lead`, :func:`rescaled_summary` and :func:`findings` of the ablation runs of
    every (runs, speedup grid) pair, each against its grid's YellowFin runs."""
    tables = [
        ablation_table(load_runs([runs, grid / BASELINE]))
        for runs, grid in found
        if (grid / BASELINE).is_dir()
    ]
    if not tables:
        return Findings([], [])
    table = pd.concat(tables, ignore_index=True)
    return Findings(lead(table), rescaled_summary(table, label) + findings(table, label))


def plot_task(group: pd.DataFrame, window: int, stem: Path, title: str) -> list[Path]:
    """Smoothed training loss and applied effective step lr/(1−μ), median over seeds."""
    points = [p for p in grid_points(group, window) if p.optimizer in (BASELINE, *VARIANTS)]
    if not points:
        return []
    names = [p.optimizer + p.hparams for p in points]
    with plt.rc_context(STYLE):
        fig, (loss_ax, step_ax) = plt.subplots(1, 2, figsize=(12.0, 4.2))
        for point, name in zip(points, names, strict=True):
            style = optimizer_style(name, names)
            label = "YellowFin" if point.optimizer == BASELINE else variant_label(point)
            band = seed_band(point.curves, thin=True)
            loss_ax.plot(band.index, band["median"], label=label, **style)
            loss_ax.fill_between(
                band.index, band["low"], band["high"], color=style["color"], alpha=0.15
            )
            steps = _effective_step(group, point)
            if not steps.empty:
                step_ax.plot(steps.index, steps.to_numpy(), label=label, **style)
        loss_ax.set_yscale("log")
        loss_ax.set_xlabel("iteration")
        loss_ax.set_ylabel(f"training loss ({window}-it. mean; median, min–max)")
        step_ax.set_yscale("log")
        step_ax.set_xlabel("iteration")
        step_ax.set_ylabel("effective step lr / (1 − μ) (median over seeds)")
        loss_ax.legend(fontsize=8)
        fig.suptitle(f"{title}: YellowFin's tuned momentum vs its ablations")
        return save_figure(fig, stem)


def _effective_step(group: pd.DataFrame, point: GridPoint) -> pd.Series:
    """Median over the point's seeds of the applied lr / (1 - momentum) per iteration."""
    runs = group[group["run_dir"].isin(point.run_dirs.values()) & (group["split"] == "train")]
    if "lr" not in runs or "momentum" not in runs:
        return pd.Series(dtype=float)
    steps = runs["lr"] / (1.0 - runs["momentum"])
    table = pd.DataFrame({"step": runs["step"], "seed": runs["seed"], "value": steps})
    return table.pivot_table(index="step", columns="seed", values="value").median(axis=1)


def write_outputs(run_dirs: list[Path], out: Path, window: int | None = None) -> list[Path]:
    frame = load_runs(run_dirs)
    table = ablation_table(frame, window)
    if table.empty:
        raise UserError(
            f"no ablation runs ({', '.join(VARIANTS)}) under {', '.join(map(str, run_dirs))}"
        )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for (task, scale), group in frame.groupby(["task", "scale"], sort=True):
        if not group["optimizer"].isin(VARIANTS).any():
            continue
        size = resolve_window(group, window)
        stem = Path(f"{out / figure_stem(task, scale, 'default')}_momentum_ablation")
        written += plot_task(group, size, stem, f"{task} ({scale})")
    csv = out / "momentum_ablation.csv"
    atomic.write_text(csv, table.to_csv(index=False))
    lines = [
        "# Momentum ablation: does YellowFin's tuned momentum matter?",
        "",
        "Generated by `python -m yfbench.analysis.momentum_ablation` from the run "
        "directories. Each variant against YellowFin, paired by seed: smoothed training "
        "loss (the speedup window) at the budget, the shortest run of the pair; mean "
        'difference over seeds with its 95% t interval. "YellowFin lower": the tuned '
        'momentum helps at this budget; "tie": the interval contains 0.',
        "",
        markdown_table(display(table)),
    ]
    return [cli.write_page(out / "momentum_ablation.md", lines, written), csv, *written]


def main(argv: list[str] | None = None) -> int:
    return cli.run("yfbench.analysis.momentum_ablation", write_outputs, argv)


if __name__ == "__main__":
    sys.exit(main())
