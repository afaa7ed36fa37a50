"""Human-readable cells and Markdown tables of speedups, shared by the CLI and the report.

A speedup cell says what was observed: the median over the seeds that reached the
target with "k/n reached", a range only with >= 3 reaching seeds, and for seeds that did
not reach it a bound ("< 0.94x") and the reverse measure ("reverse 0.67x"), never a zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from yfbench.analysis.speedup import CONVENTIONS, NOT_MEANINGFUL

DASH = "—"

SPEEDUP_COLUMNS = {
    "task": "task",
    "scale": "scale",
    "setting": "setting",
    "window": "window",
    "optimizer": "optimizer",
    "baseline": "vs",
    "best_hparams": "best hyperparameters",
    "baseline_hparams": "baseline hyperparameters",
    "seeds_used": "seeds",
    "T_baseline": "T_baseline (median)",
    "speedup_paper": "speedup (paper convention)",
    "speedup_tt": "speedup (T/T)",
    "runs_note": "diverged / failed runs",
    "note": "note",
}


def markdown_table(frame: pd.DataFrame, headers: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``frame``'s cells, as text."""
    headers = list(headers or frame.columns)
    cells = [[_escape(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def ordinal(rank: int, of: int) -> str:
    """A place in a ranking: "1st", "2nd", ..., and "last" for the last of several."""
    return (
        "last" if rank == of and of > 1 else {1: "1st", 2: "2nd", 3: "3rd"}.get(rank, f"{rank}th")
    )


def _escape(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def times(value: float) -> str:
    """``1.93x``; infinity (a method at its first smoothed point) as ``∞``."""
    return "∞" if math.isinf(value) else f"{value:.2f}x"


def bound_text(bound: float) -> str:
    """``< 0.94x``, or ``no bound`` when the run never had a smoothed loss to bound it."""
    return "no bound" if math.isinf(bound) else f"< {times(bound)}"


def reverse_text(row: pd.Series, convention: str) -> str:
    """``reverse 0.67x`` (the median reverse measure of the seeds that did not reach)."""
    value = row.get(f"reverse_{convention}", math.nan)
    return "" if _missing(value) else f"reverse {times(value)}"


def not_meaningful_text(row: pd.Series, convention: str) -> str:
    """``; not meaningful in 1/3 seeds (T − W < 0.5W)`` for paper-convention cells."""
    flagged = int(row.get(f"not_meaningful_{convention}", 0) or 0)
    if not flagged:
        return ""
    return f"; not meaningful in {flagged}/{int(row['seeds'])} seeds (T − W < {NOT_MEANINGFUL}W)"


def speedup_cell(row: pd.Series, convention: str) -> str:
    """One aggregate speedup as text, e.g. ``1.95x (3/3 reached, range 1.80x–2.10x)``,
    ``1.20x (2/3 reached; the other < 0.90x, reverse 0.85x)`` or, where no seed reached
    the target, the reverse measure first: ``reverse 0.67x (0/3 reached; < 0.94x)``."""
    n, k = int(row["seeds"]), int(row[f"reached_{convention}"])
    bound, reverse = row[f"bound_{convention}"], reverse_text(row, convention)
    flag = not_meaningful_text(row, convention)
    if n == 0:
        return DASH
    if k == 0 and reverse:
        return f"{reverse} (0/{n} reached; {bound_text(bound)}{flag})"
    if k == 0:
        return f"{bound_text(bound)} (0/{n} reached{flag})"
    text = f"{times(row[f'speedup_{convention}'])} ({k}/{n} reached"
    if not _missing(row[f"low_{convention}"]):
        text += f", range {times(row[f'low_{convention}'])}–{times(row[f'high_{convention}'])}"
    if k < n:
        text += f"; {'the other' if n - k == 1 else 'the others'} {bound_text(bound)}"
        text += f", {reverse}" if reverse else ""
    return text + flag + ")"


def runs_note(row: pd.Series) -> str:
    return f"{row['diverged']} / {row['failed']} of {row['runs']}"


def display_speedups(table: pd.DataFrame) -> pd.DataFrame:
    """The headline table with readable cells, both conventions side by side."""
    shown = table.copy()
    shown["T_baseline"] = [steps_text(v) for v in table["T_baseline"]]
    for convention in CONVENTIONS:
        shown[f"speedup_{convention}"] = [
            speedup_cell(row, convention) for _, row in table.iterrows()
        ]
    shown["runs_note"] = [runs_note(row) for _, row in table.iterrows()]
    shown["note"] = table["note"].fillna("").replace("", DASH)
    return shown[list(SPEEDUP_COLUMNS)].rename(columns=SPEEDUP_COLUMNS)


def display_curve(summary: pd.DataFrame) -> pd.DataFrame:
    """The speedup curve: one row per comparison and convention, one column per rung."""
    keys = ["task", "scale", "setting", "window", "optimizer", "baseline", "seeds_used"]
    rungs = sorted(summary["fraction"].unique())
    rows = []
    for identity, group in summary.groupby(keys, sort=True):
        by_rung = group.set_index("fraction")
        for convention, name in CONVENTIONS.items():
            cells = [speedup_cell(by_rung.loc[f], convention) for f in rungs]
            rows.append([*identity, name, *cells])
    headers = [*keys[:-2], "vs", "seeds", "convention", *(f"{f:.0%}" for f in rungs)]
    return pd.DataFrame(rows, columns=headers)


def display_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """Seed-independence rows with rounded correlations."""
    rows = [
        [
            row["task"],
            row["scale"],
            row["setting"],
            row["optimizer"],
            row["hparams"],
            row["seeds"],
            row["steps"],
            _r(row["r_median"]),
            f"{_r(row['r_min'])} to {_r(row['r_max'])}",
            f"±{row['band']:.2f}" if not _missing(row["band"]) else DASH,
        ]
        for _, row in table.iterrows()
    ]
    headers = [
        "task",
        "scale",
        "setting",
        "optimizer",
        "hyperparameters",
        "seeds",
        "steps",
        "median r",
        "range",
        "±2/√steps",
    ]
    return pd.DataFrame(rows, columns=headers)


def _r(value: float) -> str:
    return DASH if _missing(value) else f"{value:+.2f}"


def steps_text(value: float) -> str:
    return DASH if _missing(value) else f"{value:.0f}"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
