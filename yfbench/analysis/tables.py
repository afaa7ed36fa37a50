"""Human-readable rendering of speedup tables (Markdown), shared by the CLI and the report."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

NOT_REACHED = "not reached"
DASH = "—"

SPEEDUP_COLUMNS = {
    "task": "task",
    "scale": "scale",
    "optimizer": "optimizer",
    "baseline": "vs",
    "best_hparams": "best hyperparameters",
    "baseline_hparams": "baseline hyperparameters",
    "seeds": "seeds",
    "T_baseline": "T_baseline",
    "T_method": "T_method",
    "speedup": "speedup",
    "interval": "95% interval",
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


def _escape(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def speedup_text(row: pd.Series) -> str:
    """ "1.93x", or "not reached", or the mean with how many seeds reached the target."""
    if row["seeds"] == 0 or _missing(row["speedup"]):
        return DASH
    if row["reached"] == 0:
        return NOT_REACHED
    text = f"{row['speedup']:.2f}x"
    if row["reached"] < row["seeds"]:
        text += f" (reached in {row['reached']}/{row['seeds']} seeds)"
    return text


def interval_text(row: pd.Series) -> str:
    if _missing(row["ci_low"]):
        return DASH
    return f"[{row['ci_low']:.2f}x, {row['ci_high']:.2f}x]"


def display_speedups(table: pd.DataFrame) -> pd.DataFrame:
    """The speedup table with readable cells ("not reached", intervals, run counts)."""
    shown = table.copy()
    shown["T_baseline"] = [_steps(v) for v in table["T_baseline"]]
    shown["T_method"] = [
        NOT_REACHED if row["seeds"] and row["reached"] == 0 else _steps(row["T_method"])
        for _, row in table.iterrows()
    ]
    shown["speedup"] = [speedup_text(row) for _, row in table.iterrows()]
    shown["interval"] = [interval_text(row) for _, row in table.iterrows()]
    shown["runs_note"] = [
        f"{row['diverged']} / {row['failed']} of {row['runs']}" for _, row in table.iterrows()
    ]
    shown["note"] = table["note"].fillna("").replace("", DASH)
    return shown[list(SPEEDUP_COLUMNS)].rename(columns=SPEEDUP_COLUMNS)


def _steps(value: float) -> str:
    return DASH if _missing(value) else f"{value:.0f}"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
