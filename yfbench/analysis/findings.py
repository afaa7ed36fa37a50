"""'What we found': a short list of sentences generated from the report's tables, written
at the top of results/README.md and between markers in the project README.md.

Every number comes from the :class:`~yfbench.analysis.bundle.Bundle` the tables are
printed from (paper convention, evaluation seeds). A summary line opens the list, one clause
per experiment family (:class:`Findings` ``lead``: this module's, the claims' and the
leaderboard's), so the README's first screen says where YellowFin stands. Where YellowFin
loses, the first detailed lines say so too: against hand-tuned momentum SGD first (per
scale: losses, then clear wins, then ties and mixed results), then against tuned Adam,
then YellowFin's rank on the held-out metric, then how far the largest speedup is from the
paper's, whether YellowFin had settled, and what the seeds are worth.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from yfbench import atomic
from yfbench.analysis.bundle import Bundle
from yfbench.analysis.paper import optimizer_name as _name
from yfbench.analysis.paper import task_label
from yfbench.analysis.speedup import SINGLE_SETTING
from yfbench.analysis.tables import speedup_cell, times
from yfbench.analysis.validation import findings as validation_findings
from yfbench.analysis.validation import lead as validation_lead
from yfbench.errors import UserError

START, END = "<!-- findings:start -->", "<!-- findings:end -->"
METHOD = "yellowfin"
# The fixed budget quoted beside a headline speedup: the end of the run.
END_BUDGET = 1.0
# A change of the effective step larger than this between 1/3 and the end is not settled.
SETTLED = 0.1


class Findings(NamedTuple):
    """One experiment family's findings: ``lead``, short clauses for the summary line that
    opens "What we found" (where YellowFin stands), and ``lines``, the bullets behind them."""

    lead: list[str]
    lines: list[str]


def outcome(row: pd.Series) -> str:
    """``loses`` (no seed reached the target, or all did more slowly), ``wins`` (all
    reached, median > 1), ``mixed`` (some seeds reached), ``none`` (no paired seed)."""
    n, k = int(row["seeds"]), int(row["reached_paper"])
    if n == 0:
        return "none"
    if k == 0 or (k == n and row["speedup_paper"] < 1):
        return "loses"
    if k == n:
        return "wins"
    return "mixed"


def _budget(bundle: Bundle, row: pd.Series) -> pd.Series | None:
    table = bundle.fixed_budget
    if table.empty:
        return None
    keys = ["task", "scale", "setting", "optimizer", "baseline"]
    match = table[(table[keys] == row[keys]).all(axis=1) & (table["budget"] == END_BUDGET)]
    return match.iloc[0] if not match.empty else None


def _budget_text(bundle: Bundle, row: pd.Series) -> str:
    budget = _budget(bundle, row)
    if budget is None or budget["n"] == 0:
        return ""
    text = (
        f"end-of-run smoothed loss, {_name(row['optimizer'])} minus "
        f"{_name(row['baseline'])}: {budget['mean']:+.3f}"
    )
    if not math.isnan(budget["low"]):
        text += f" (95% t CI {budget['low']:+.3f} to {budget['high']:+.3f}: {budget['verdict']})"
    return text


def _where(paper: dict[str, Any], row: pd.Series) -> str:
    setting = "" if row["setting"] == "default" else f", {row['setting']}"
    return f"{task_label(paper, row['task'])} ({row['scale']}{setting})"


def _row_line(bundle: Bundle, paper: dict[str, Any], row: pd.Series) -> str:
    detail = _budget_text(bundle, row)
    text = f"{_where(paper, row)}: {speedup_cell(row, 'paper')}"
    return text + (f"; {detail}" if detail else "") + f" [{row['seeds_used']}{_grid(row)}]"


def _grid(row: pd.Series) -> str:
    """Says so when the baseline's grid had one point: it was not tuned."""
    if row["baseline"] != "yellowfin" and row["baseline_hparams"] == SINGLE_SETTING:
        return f"; {_name(row['baseline'])} grid of one point so far: not yet tuned"
    return ""


def beats(bundle: Bundle, row: pd.Series) -> bool:
    """YellowFin wins (every evaluation seed reached the baseline's target, median > 1) and
    ends the run with the lower smoothed loss, its interval below zero: a clear win, not a
    speedup that ends in a tie."""
    budget = _budget(bundle, row)
    return outcome(row) == "wins" and budget is not None and budget["verdict"] == "method lower"


def trails(bundle: Bundle, row: pd.Series) -> bool:
    """YellowFin loses (no seed reached the baseline's target, or all reached it later) and
    does not end the run lower: a loss that the end-of-run interval does not contradict.
    Reaching later but ending lower is a mixed result, not a loss."""
    budget = _budget(bundle, row)
    ends_lower = budget is not None and budget["verdict"] == "method lower"
    return outcome(row) == "loses" and not ends_lower


def _yellowfin_rows(bundle: Bundle, baseline: str) -> pd.DataFrame:
    """The headline rows of YellowFin against ``baseline``."""
    head = bundle.headline
    if head.empty:
        return head
    return head[(head["optimizer"] == METHOD) & (head["baseline"] == baseline)]


def _tally(
    bundle: Bundle, baseline: str
) -> list[tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """Per scale, YellowFin's rows against ``baseline``: all of them, its clear losses
    (:func:`trails`) and its clear wins (:func:`beats`)."""
    rows = _yellowfin_rows(bundle, baseline)
    if rows.empty:
        return []
    return [
        (
            str(scale),
            group,
            group[[trails(bundle, r) for _, r in group.iterrows()]],
            group[[beats(bundle, r) for _, r in group.iterrows()]],
        )
        for scale, group in rows.groupby("scale", sort=True)
    ]


def _provisional(group: pd.DataFrame) -> str:
    return " (provisional: tuning seeds only)" if group["provisional"].any() else ""


def versus_momentum(bundle: Bundle, paper: dict[str, Any]) -> list[str]:
    """YellowFin against tuned momentum SGD per scale: clear losses first, then clear wins
    (both in bold, with their tasks), then the rest (ties, and results where the time to
    target and the end-of-run loss disagree)."""
    lines = []
    for scale, group, losses, wins in _tally(bundle, "momentum_sgd"):
        provisional = _provisional(group)
        if not losses.empty:
            tasks = ", ".join(task_label(paper, t) for t in losses["task"])
            reverse = losses["reverse_paper"].dropna()
            span = (
                f"; momentum SGD reaches YellowFin's own best smoothed loss in "
                f"{_span(reverse)} of the iterations YellowFin needed (reverse measure)"
                if not reverse.empty
                else ""
            )
            share = f"{len(losses)} of {len(group)} tasks"
            reach = (
                "does not reach"
                if (losses["reached_paper"] == 0).all()
                else "reaches, later than momentum SGD or not at all,"
            )
            lines.append(
                f"**At the {scale} scale{provisional}, hand-tuned momentum SGD beats untuned "
                f"YellowFin on {share}: {tasks}.** YellowFin {reach} tuned momentum SGD's "
                f"lowest smoothed training loss{span}."
            )
            lines += [f"  - {_row_line(bundle, paper, r)}" for _, r in losses.iterrows()]
        if not wins.empty:
            tasks = ", ".join(task_label(paper, t) for t in wins["task"])
            lines.append(
                f"**At the {scale} scale{provisional}, untuned YellowFin beats hand-tuned "
                f"momentum SGD on {len(wins)} of {len(group)} tasks: {tasks}.** Every "
                f"evaluation seed reaches tuned momentum SGD's lowest smoothed training loss, "
                f"{_span(wins['speedup_paper'])} sooner (median over seeds), and ends the run "
                "lower."
            )
            lines += [f"  - {_row_line(bundle, paper, r)}" for _, r in wins.iterrows()]
        others = group.drop(losses.index.union(wins.index))
        if not others.empty:
            elsewhere = " elsewhere" if len(others) < len(group) else ""
            lines.append(
                f"YellowFin against tuned momentum SGD{elsewhere} at the {scale} scale"
                f"{provisional}: "
                + "; ".join(_row_line(bundle, paper, r) for _, r in others.iterrows())
                + "."
            )
    return lines


def versus_adam(bundle: Bundle, paper: dict[str, Any]) -> list[str]:
    """YellowFin against tuned Adam, per task, with the paper's number beside it."""
    rows = _yellowfin_rows(bundle, "adam")
    if rows.empty:
        return []
    lines = ["YellowFin against tuned Adam (paper convention; the paper's number in brackets):"]
    for _, row in rows.iterrows():
        reported = paper["tasks"].get(row["task"], {}).get("speedup_over_adam", {}).get(METHOD)
        theirs = f" [paper: {reported['value']}x]" if reported else ""
        lines.append(f"  - {_row_line(bundle, paper, row)}{theirs}")
    return lines


def _reached_every_seed(bundle: Bundle) -> pd.DataFrame:
    rows = _yellowfin_rows(bundle, "adam")
    if rows.empty:
        return rows
    return rows[rows["reached_paper"] == rows["seeds"]].dropna(subset=["speedup_paper"])


def _largest(bundle: Bundle) -> pd.Series | None:
    """The largest YellowFin speedup over tuned Adam reached on every seed. Provisional rows
    (tuning seed only, or a baseline grid still being run) never make it while a row
    measured on evaluation seeds exists."""
    reached = _reached_every_seed(bundle)
    if reached.empty:
        return None
    final = reached[~reached["provisional"].astype(bool)]
    best = final if not final.empty else reached
    return best.loc[best["speedup_paper"].idxmax()]


def largest_speedup(bundle: Bundle, paper: dict[str, Any]) -> list[str]:
    """Our largest YellowFin speedup over tuned Adam beside the paper's headline."""
    claim = paper["headline"][0]
    if _yellowfin_rows(bundle, "adam").empty:
        return []
    best = _largest(bundle)
    if best is None:
        return [
            "No YellowFin speedup over tuned Adam was measured in every seed; the paper: "
            f"{claim['value']}x."
        ]
    provisional = " (provisional: tuning seeds only)" if best["provisional"] else ""
    lines = [
        f"Our largest YellowFin speedup over tuned Adam: **{times(best['speedup_paper'])}** "
        f"({_where(paper, best)}, {best['seeds_used']}{_grid(best)}){provisional}, against "
        f"the paper's **{claim['value']}x** ({claim['claim']})."
    ]
    pending = _reached_every_seed(bundle)
    pending = pending[
        pending["provisional"].astype(bool) & (pending["speedup_paper"] > best["speedup_paper"])
    ]
    lines += [
        f"Provisional, not yet a result: {times(row['speedup_paper'])} on "
        f"{_where(paper, row)} ({row['seeds_used']}{_grid(row)})."
        for _, row in pending.iterrows()
    ]
    return lines


def settling(bundle: Bundle, paper: dict[str, Any]) -> list[str]:
    """How much YellowFin's effective step still moved between 1/3 of the run and its end,
    and how much of that was the recipe's lr decay (judged net of it)."""
    table = bundle.hyperparams
    yf = table[table["optimizer"] == METHOD]
    sgd = table[table["optimizer"] == "momentum_sgd"]
    if yf.empty:
        return []
    parts = []
    for _, r in yf.iterrows():
        same = sgd[(sgd["task"] == r["task"]) & (sgd["scale"] == r["scale"])]
        versus = f"; momentum SGD {same['effective_end'].iloc[0]:.2g}" if not same.empty else ""
        decay = (
            f", of which the lr decay {r['decay_change']:+.0%}: net {r['tuner_change']:+.0%}"
            if abs(r["decay_change"]) > 0.005
            else ""
        )
        parts.append(
            f"{task_label(paper, r['task'])} ({r['scale']}) {r['effective_1/3']:.2g} → "
            f"{r['effective_end']:.2g} ({r['change']:+.0%}{decay}{versus})"
        )
    text = "YellowFin's effective step lr/(1−μ) from 1/3 of the run to its end: " + "; ".join(parts)
    moving = yf[yf["tuner_change"].abs() > SETTLED]
    if not moving.empty:
        text += (
            f". Where it moved by more than {SETTLED:.0%} net of the lr decay, YellowFin had "
            "not settled by the end of the run"
        )
    return [text + "."]


def seeds_line(seeds: pd.DataFrame) -> list[str]:
    """Whether the seeds are independent replicates, against the circular-shift null."""
    if seeds.empty or "beyond_null" not in seeds:
        return []
    beyond = seeds[seeds["beyond_null"].astype(bool)]
    if beyond.empty:
        return ["Seeds: no grid point's seeds correlate beyond the circular-shift null."]
    inside = beyond[
        (beyond["r_no_epoch_starts"] >= beyond["null_no_epoch_low"])
        & (beyond["r_no_epoch_starts"] <= beyond["null_no_epoch_high"])
    ]
    return [
        f"Seeds: {len(beyond)} of {len(seeds)} grid points correlate beyond the "
        f"circular-shift null; leaving out the steps around epoch starts (where every seed's "
        f"LSTM state is reset at the same step) brings {len(inside)} of them inside the null "
        "of the same steps."
    ]


def _span(values: pd.Series) -> str:
    low, high = float(values.min()), float(values.max())
    return times(low) if math.isclose(low, high, rel_tol=0.005) else f"{times(low)}–{times(high)}"


def _tally_clause(bundle: Bundle, paper: dict[str, Any], baseline: str, who: str) -> list[str]:
    """On how many tasks ``who`` (the tuned ``baseline``) beats untuned YellowFin, per scale,
    with how many YellowFin wins and how many are neither."""
    scales = []
    for scale, group, losses, wins in _tally(bundle, baseline):
        others = [", ".join(task_label(paper, t) for t in losses["task"])] if len(losses) else []
        others.append(f"YellowFin wins {len(wins)}")
        neither = len(group) - len(losses) - len(wins)
        if neither:
            others.append(f"{neither} {'ties or is' if neither == 1 else 'tie or are'} mixed")
        scales.append(
            f"at the {scale} scale{_provisional(group)} on {len(losses)} of {len(group)} "
            f"tasks ({'; '.join(others)})"
        )
    return [f"{who} beats untuned YellowFin " + ", ".join(scales)] if scales else []


def lead(bundle: Bundle, paper: dict[str, Any]) -> list[str]:
    """The summary line's clauses from the speedup grids: against tuned momentum SGD and
    tuned Adam per scale, the largest speedup over Adam beside the paper's, and YellowFin's
    rank on the held-out metric."""
    clauses = _tally_clause(bundle, paper, "momentum_sgd", "hand-tuned momentum SGD")
    clauses += _tally_clause(bundle, paper, "adam", "tuned Adam")
    best = _largest(bundle)
    if best is not None:
        claim = paper["headline"][0]
        clauses.append(
            f"YellowFin's largest speedup over tuned Adam: {times(best['speedup_paper'])} "
            f"({_where(paper, best)}) against the paper's {claim['value']}x"
        )
    return clauses + validation_lead(bundle.validation, lambda row: _where(paper, row))


def summary_line(clauses: list[str]) -> list[str]:
    """The bullet that opens "What we found": one line per family, so the first screen says
    where YellowFin stands, losses included, before any detail."""
    if not clauses:
        return []
    return ["- **In short** (each is detailed below):"] + [
        f"  - {clause[0].upper()}{clause[1:]}." for clause in clauses
    ]


def findings(bundle: Bundle, paper: dict[str, Any], seeds: pd.DataFrame) -> list[str]:
    """The findings as Markdown bullet lines (sub-bullets indented)."""
    lines = versus_momentum(bundle, paper) + versus_adam(bundle, paper)
    lines += validation_findings(bundle.validation, lambda row: _where(paper, row), _name)
    lines += largest_speedup(bundle, paper) + settling(bundle, paper) + seeds_line(seeds)
    return [line if line.startswith("  ") else f"- {line}" for line in lines]


def write_findings(readme: Path, lines: list[str], source: str) -> Path:
    """Replace the text between ``START`` and ``END`` in ``readme`` with ``lines``."""
    text = readme.read_text()
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise UserError(
            f"{readme} has no '{START}' ... '{END}' block; add the two lines where the "
            "findings should go (e.g. under a '## What we found' heading) and rerun"
        )
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    body = [f"<!-- generated by {source}; do not edit by hand -->", "", *lines, ""]
    atomic.write_text(readme, head + START + "\n" + "\n".join(body) + END + tail)
    return readme
