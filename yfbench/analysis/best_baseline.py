"""The best baseline per target: for each speedup-curve target, the baseline grid point
that reaches it first, beside the tuned baseline.

The baseline is tuned for the end of the run (lowest smoothed loss); an easier target,
e.g. tuned Adam's best loss by 25% of its run, may be reached sooner by another learning
rate. A speedup over tuned Adam at that rung then flatters the method. This table times
every baseline grid point on the tuning seed (the only seed every grid point has; see
:mod:`yfbench.analysis.protocol`) and names the first to reach each rung's target, with
the method's speedup over it (T/T convention, reached at ``<=``). Because the baseline
is picked per target on this seed, the numbers favour the baseline: a method that is
still faster than the best Adam per target is faster than any single Adam setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from yfbench.analysis.protocol import tuning_seeds
from yfbench.analysis.speedup import Comparison, GridPoint
from yfbench.analysis.tables import markdown_table

COLUMNS = [
    "task",
    "scale",
    "setting",
    "seed",
    "fraction",
    "target_loss",
    "tuned_hparams",
    "T_tuned",
    "best_hparams",
    "T_best",
    "optimizer",
    "T_method",
    "speedup_vs_tuned",
    "speedup_vs_best",
]


def first_baseline(
    grid: Sequence[GridPoint], seed: int, target: float
) -> tuple[GridPoint | None, int | None]:
    """The grid point whose ``seed`` run first reaches ``target`` (first in ``grid`` on
    ties), and that iteration; (None, None) when none does."""
    best: tuple[int, int] | None = None
    for index, point in enumerate(grid):
        curve = point.curves.get(seed)
        reached = curve.first_reach(target, strict=False) if curve else None
        if reached is not None and (best is None or reached < best[0]):
            best = (reached, index)
    return (grid[best[1]], best[0]) if best else (None, None)


def best_baseline_rows(comparisons: Sequence[Comparison], grid: Sequence[GridPoint]) -> list[dict]:
    """Rows for the comparisons of one (task, scale, setting) against one baseline;
    ``grid`` holds that group's grid points (all optimizers)."""
    if not comparisons:
        return []
    first = comparisons[0]
    base = first.base_point
    seeds = tuning_seeds(grid)
    if base is None or not seeds:
        return []
    seed = seeds[0]
    own = [p for p in grid if p.optimizer == base.optimizer and seed in p.curves]
    rows = []
    for fraction in first.ladder:
        best = base.curves[seed].best(fraction) if seed in base.curves else None
        if best is None:
            continue
        t_tuned, target = best
        winner, t_best = first_baseline(own, seed, target)
        for comparison in comparisons:
            method = comparison.method_point
            curve = method.curves.get(seed) if method else None
            t_method = curve.first_reach(target, strict=False) if curve else None
            rows.append(
                {
                    **{k: first.info[k] for k in ("task", "scale", "setting")},
                    "seed": seed,
                    "fraction": fraction,
                    "target_loss": target,
                    "tuned_hparams": first.info["baseline_hparams"],
                    "T_tuned": t_tuned,
                    "best_hparams": _varying(winner, own),
                    "T_best": t_best,
                    "optimizer": comparison.info["optimizer"],
                    "T_method": t_method if t_method is not None else math.nan,
                    "speedup_vs_tuned": t_tuned / t_method if t_method else math.nan,
                    "speedup_vs_best": t_best / t_method if t_method and t_best else math.nan,
                }
            )
    return rows


def best_baseline_table(
    comparisons: Sequence[Comparison], grids: dict[tuple[str, str, str], list[GridPoint]]
) -> pd.DataFrame:
    """Every (task, scale, setting) in ``grids``: rows for its comparisons against the
    same baseline (the first comparison's), one per rung and method."""
    rows = []
    for key, grid in grids.items():
        own = [
            c for c in comparisons if (c.info["task"], c.info["scale"], c.info["setting"]) == key
        ]
        baselines = sorted({str(c.info["baseline"]) for c in own})
        for baseline in baselines:
            rows += best_baseline_rows([c for c in own if c.info["baseline"] == baseline], grid)
    return pd.DataFrame(rows, columns=COLUMNS)


def display_best_baseline(table: pd.DataFrame, baseline: str = "Adam") -> pd.DataFrame:
    """One row per (task, scale, rung): tuned vs first baseline, then each method."""
    keys = ["task", "scale", "setting", "seed", "fraction"]
    rows = []
    for identity, group in table.groupby(keys, sort=True):
        first = group.iloc[0]
        methods = "; ".join(
            f"{r['optimizer']}: {_ratio(r['speedup_vs_tuned'])} vs tuned, "
            f"{_ratio(r['speedup_vs_best'])} vs first"
            for _, r in group.iterrows()
        )
        rows.append(
            [
                *identity[:3],
                f"seed {identity[3]}",
                f"{identity[4]:.0%}",
                f"{first['target_loss']:.4f}",
                f"{first['tuned_hparams']} at {first['T_tuned']:.0f}",
                f"{first['best_hparams']} at {first['T_best']:.0f}"
                if not pd.isna(first["T_best"])
                else "—",
                methods,
            ]
        )
    headers = ["task", "scale", "setting", "tuning seed", "rung", "target"]
    headers += [f"tuned {baseline} (T)", f"first {baseline} to reach it (T)", "speedup (T/T)"]
    return pd.DataFrame(rows, columns=headers)


def _ratio(value: float) -> str:
    return "not reached" if pd.isna(value) else f"{value:.2f}x"


def _varying(point: GridPoint | None, grid: Sequence[GridPoint]) -> str:
    if point is None:
        return ""
    varying = [k for k in point.settings if len({p.settings.get(k) for p in grid}) > 1]
    return ", ".join(f"{k}={point.settings[k]}" for k in varying) or point.hparams


def section(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    return [
        "## Best Adam per target",
        "",
        "For each speedup-curve target (tuned Adam's best smoothed loss by that share of its "
        "run, on the tuning seed), the Adam grid point that reaches it first, beside tuned "
        "Adam, and each method's speedup over both (T/T, tuning seed: the only seed every "
        "grid point ran). Picking Adam per target favours Adam.",
        "",
        markdown_table(display_best_baseline(table)),
    ]
