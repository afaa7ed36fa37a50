"""The validation table beside each speedup table: the final validation metric of every
optimizer's tuned point, median and range over its evaluation seeds.

The speedup compares training losses; the paper's tasks are judged on held-out metrics
(test accuracy, validation perplexity, F1): the task's headline metric, with the direction
it declares (:mod:`yfbench.analysis.headline`). Seeds: the tuned point's seeds minus the
tuning seeds (:mod:`yfbench.analysis.protocol`), or the tuning seeds, labelled provisional.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from yfbench.analysis.headline import final_value, headline
from yfbench.analysis.protocol import own_evaluation_seeds, seed_list, tuning_seeds
from yfbench.analysis.speedup import GridPoint
from yfbench.analysis.tables import markdown_table, ordinal

COLUMNS = [
    "task",
    "scale",
    "setting",
    "optimizer",
    "hparams",
    "metric",
    "higher_is_better",
    "seeds",
    "provisional",
    "not_completed",
    "step",
    "median",
    "low",
    "high",
    "values",
]


def validation_rows(
    group: pd.DataFrame, points: Sequence[GridPoint], tuned: dict[str, GridPoint]
) -> list[dict]:
    """One row per optimizer's tuned point (``tuned``: optimizer -> point) of one group."""
    judged_on = headline(group)
    if judged_on is None:
        return []
    metric, tuning = judged_on.metric, tuning_seeds(points)
    rows = []
    for optimizer, point in sorted(tuned.items()):
        seeds, provisional = own_evaluation_seeds(point, tuning)
        runs = {seed: group[group["run_dir"] == point.run_dirs[seed]] for seed in seeds}
        finals = {seed: final_value(run, metric) for seed, run in runs.items()}
        finals = {seed: value for seed, value in finals.items() if math.isfinite(value)}
        values = list(finals.values())
        last_steps = [_last_valid_step(runs[seed]) for seed in finals]
        first = group.iloc[0]
        rows.append(
            {
                "task": first["task"],
                "scale": first["scale"],
                "setting": first["setting"],
                "optimizer": optimizer,
                "hparams": point.hparams,
                "metric": metric,
                "higher_is_better": judged_on.higher_is_better,
                "seeds": seed_list(finals),
                "provisional": provisional,
                "not_completed": sum(point.statuses[seed] != "completed" for seed in seeds),
                "step": max(last_steps) if last_steps else math.nan,
                "median": float(np.median(values)) if values else math.nan,
                "low": min(values) if values else math.nan,
                "high": max(values) if values else math.nan,
                "values": " ".join(f"{v:.4g}" for v in values),
            }
        )
    return rows


def _last_valid_step(run: pd.DataFrame) -> int:
    return int(run.loc[run["split"] == "valid", "step"].max())


def display_validation(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, row in table.iterrows():
        better = "higher" if row["higher_is_better"] else "lower"
        seeds = row["seeds"] + (" (provisional: tuning seeds)" if row["provisional"] else "")
        if row["not_completed"]:
            seeds += f"; {row['not_completed']} more did not complete (no final value)"
        spread = f"{row['low']:.4g}–{row['high']:.4g}" if row["low"] != row["high"] else "—"
        rows.append(
            [
                row["task"],
                row["scale"],
                row["setting"],
                row["optimizer"],
                f"{row['metric']} ({better} is better)",
                seeds,
                f"{row['median']:.4g}",
                spread,
            ]
        )
    headers = ["task", "scale", "setting", "optimizer", "final validation metric", "seeds"]
    return pd.DataFrame(rows, columns=headers + ["median", "range"])


def section(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    return [
        "## Validation",
        "",
        "Final validation metric of each optimizer's tuned point: median and range over its "
        "evaluation seeds (its seeds minus the tuning seeds).",
        "",
        markdown_table(display_validation(table)),
    ]


def _ranks(
    table: pd.DataFrame, where: Callable[[pd.Series], str], name: Callable[[str], str]
) -> tuple[dict[str, list[str]], list[str]]:
    """YellowFin's rank per task and scale ("last of 3" -> the places ranked so, last
    first), and a detail bullet per place with every optimizer's median and range."""
    rows = table[np.isfinite(table["median"].astype(float))]
    ranks: dict[str, list[str]] = {}
    details = []
    for _, group in rows.groupby(["task", "scale", "setting"], sort=True):
        if "yellowfin" not in set(group["optimizer"]):
            continue
        first = group.iloc[0]
        ordered = group.sort_values("median", ascending=not first["higher_is_better"])
        rank = list(ordered["optimizer"]).index("yellowfin") + 1
        label = where(first) + (" (provisional: tuning seeds)" if first["provisional"] else "")
        ranks.setdefault(ordinal(rank, len(ordered)) + f" of {len(ordered)}", []).append(label)
        values = ", ".join(
            f"{name(r['optimizer'])} {r['median']:.4g} [{r['low']:.4g}–{r['high']:.4g}]"
            for _, r in ordered.iterrows()
        )
        better = "higher" if first["higher_is_better"] else "lower"
        metric = f"{first['metric']} ({better} is better)"
        details.append(f"  - {label}, {metric}: {values} [seeds {first['seeds']}]")
    order = sorted(ranks, key=lambda text: (not text.startswith("last"), text))
    return {rank: ranks[rank] for rank in order}, details


def findings(
    table: pd.DataFrame, where: Callable[[pd.Series], str], name: Callable[[str], str]
) -> list[str]:
    """YellowFin's rank on each task's held-out metric (median over evaluation seeds), with
    the medians and ranges behind it: the speedups compare training losses, and the paper's
    tasks are judged on these. ``where`` labels a row's task and scale, ``name`` an optimizer."""
    ranks, details = _ranks(table, where, name)
    if not ranks:
        return []
    clauses = [f"{rank} on {', '.join(places)}" for rank, places in ranks.items()]
    if clauses[0].startswith("last"):
        clauses[0] = f"**{clauses[0]}**"
    return [
        "On the held-out metric the paper's tasks are judged by (final validation metric, "
        "median over evaluation seeds; the speedups above compare training loss), YellowFin "
        "ranks " + "; ".join(clauses) + ".",
        *details,
    ]


def lead(table: pd.DataFrame, where: Callable[[pd.Series], str]) -> list[str]:
    """The summary line's clause: how often YellowFin holds each rank on the held-out
    metric ("last of 3 on 3 of 5 tasks and scales, 2nd of 3 on 2")."""
    ranks, _ = _ranks(table, where, str)
    if not ranks:
        return []
    total = sum(len(places) for places in ranks.values())
    counts = [f"{rank} on {len(places)}" for rank, places in ranks.items()]
    counts[0] += f" of {total} tasks and scales"
    return ["on the held-out metric (final validation), YellowFin ranks " + ", ".join(counts)]
