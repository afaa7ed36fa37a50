"""Every table of the report from one loaded frame, computed once: the comparisons
(speedups and curves), fixed budgets, best baseline per target, validation, YellowFin's
hyperparameters and clip binding. The report and ``python -m yfbench.analysis tables``
both read this, so a number in results/README.md and in a per-task CSV are one number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from yfbench import atomic
from yfbench.analysis.best_baseline import best_baseline_table, display_best_baseline
from yfbench.analysis.clipping import COLUMNS as CLIP_COLUMNS
from yfbench.analysis.clipping import clip_norm, clipping_rows, display_clipping
from yfbench.analysis.fixed_budget import display_fixed_budget, fixed_budget_table
from yfbench.analysis.hyperparams import COLUMNS as HYPER_COLUMNS
from yfbench.analysis.hyperparams import display_hyperparams, hyperparams_rows
from yfbench.analysis.speedup import (
    GROUP_KEYS,
    Comparison,
    GridPoint,
    compare_all,
    grid_points,
    resolve_window,
    summary_frame,
    tuned,
)
from yfbench.analysis.tables import markdown_table
from yfbench.analysis.validation import COLUMNS as VALID_COLUMNS
from yfbench.analysis.validation import display_validation, validation_rows
from yfbench.errors import UserError

BASELINE = "adam"
EXTRA_PAIRS = (("yellowfin", "momentum_sgd"),)


@dataclass
class Bundle:
    """The report's tables (raw numbers; ``display_*`` functions make the cells)."""

    comparisons: list[Comparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    curve: pd.DataFrame = field(default_factory=pd.DataFrame)
    fixed_budget: pd.DataFrame = field(default_factory=pd.DataFrame)
    best_baseline: pd.DataFrame = field(default_factory=pd.DataFrame)
    validation: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=VALID_COLUMNS))
    hyperparams: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=HYPER_COLUMNS))
    clipping: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CLIP_COLUMNS))

    @property
    def headline(self) -> pd.DataFrame:
        return self.curve[self.curve["fraction"] == 1.0] if not self.curve.empty else self.curve


def build(
    frame: pd.DataFrame,
    window: int | None = None,
    baseline: str = BASELINE,
    pairs: Sequence[tuple[str, str]] = EXTRA_PAIRS,
) -> Bundle:
    """Every table for every (task, scale, setting) of ``frame``; a group that cannot be
    compared becomes a problem line (its message names it), the others go on."""
    bundle = Bundle()
    grids: dict[tuple[str, str, str], list[GridPoint]] = {}
    validation, hyper, clipping = [], [], []
    for key, group in frame.groupby(GROUP_KEYS, sort=True):
        try:
            size = resolve_window(group, window)
            points = grid_points(group, size)
        except UserError as error:
            bundle.problems.append(str(error))
            continue
        bundle.comparisons += _comparisons(group, size, baseline, pairs, bundle.problems)
        grids[key] = points
        chosen = {name: tuned(points, name)[0] for name in sorted({p.optimizer for p in points})}
        chosen = {name: point for name, point in chosen.items() if point is not None}
        validation += validation_rows(group, points, chosen)
        hyper += hyperparams_rows(group, points, chosen, size)
        clipping += clipping_rows(group, chosen, clip_norm(group))
    bundle.curve = summary_frame(bundle.comparisons)
    bundle.fixed_budget = fixed_budget_table(bundle.comparisons)
    bundle.best_baseline = best_baseline_table(
        [c for c in bundle.comparisons if c.info["baseline"] == baseline], grids
    )
    bundle.validation = pd.DataFrame(validation, columns=VALID_COLUMNS)
    bundle.hyperparams = pd.DataFrame(hyper, columns=HYPER_COLUMNS)
    bundle.clipping = pd.DataFrame(clipping, columns=CLIP_COLUMNS)
    return bundle


def _comparisons(
    group: pd.DataFrame,
    window: int,
    baseline: str,
    pairs: Sequence[tuple[str, str]],
    problems: list[str],
) -> list[Comparison]:
    """Every comparison against ``baseline`` plus ``pairs``; without a usable baseline
    (e.g. a grid still running), the pairs alone, and a problem line saying why."""
    try:
        return compare_all(group, baseline, pairs, window)
    except UserError as error:
        problems.append(str(error))
    comparisons = []
    for method, base in pairs:
        both = group[group["optimizer"].isin([method, base])]
        try:
            comparisons += compare_all(both, base, (), window)
        except UserError:
            continue  # the problem line above already names the group
    return comparisons


def write_tables(bundle: Bundle, out: Path) -> list[Path]:
    """``out``/<name>.csv (raw numbers) and .md (readable cells) for every table."""
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "fixed_budget": (bundle.fixed_budget, display_fixed_budget),
        "best_adam": (bundle.best_baseline, display_best_baseline),
        "validation": (bundle.validation, display_validation),
        "hyperparams": (bundle.hyperparams, display_hyperparams),
        "clipping": (bundle.clipping, display_clipping),
    }
    written = []
    for name, (table, display) in tables.items():
        csv, md = out / f"{name}.csv", out / f"{name}.md"
        atomic.write_text(csv, table.to_csv(index=False))
        atomic.write_text(md, markdown_table(display(table)) if not table.empty else "No rows.\n")
        written += [csv, md]
    return written
