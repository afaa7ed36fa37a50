"""Did the peers' lr grids bracket each tuned lr? (results/peers/bracket.md)

Every optimizer that needs tuning gets the same budget: a few lrs on the tuning seed, the
lowest smoothed training loss wins. Where the winner is the largest or smallest lr of its
grid, the grid did not bracket the best lr, and the leaderboard may under-rate that
optimizer. The check runs one more lr beyond that edge (the grid's own step continued,
rounded to the 1-3-10 ladder the grids use), on the tuning seed only and in a folder of its
own, so that neither the choice nor the equal budget changes: it measures how much the
budget's edge costs an optimizer, it does not retune it. One seed each, so a difference
within the chosen point's seed-to-seed spread (its evaluation seeds') is no verdict. Where
the lr beyond ends lower by more than that, a grid grown until it brackets would choose it
(or one further out), so it also runs on the evaluation seeds: their median final metric
is the number the leaderboard would show for it.

``python -m yfbench.analysis.bracket beyond RUN_DIR`` prints the ``grid_point=`` names to
run (``make peers-bracket-<task>``), ``... lower RUN_DIR BEYOND_DIR`` those to run on the
evaluation seeds; ``python -m yfbench.analysis.bracket TUNING_DIR...
--beyond-runs DIR --out DIR`` writes the table, and names the grids that had no edge.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from yfbench import atomic
from yfbench.analysis import cli
from yfbench.analysis.headline import final_value, headline
from yfbench.analysis.paper import optimizer_name
from yfbench.analysis.protocol import TUNING_SEED, seed_list
from yfbench.analysis.runs import find_run_dirs, load_folder, load_runs
from yfbench.analysis.speedup import (
    GROUP_KEYS,
    Choice,
    GridPoint,
    grid_points,
    lr_edge,
    resolve_window,
    tuned_choices,
)
from yfbench.analysis.tables import DASH, markdown_table
from yfbench.config import CONFIG_DIR
from yfbench.errors import UserError

# The lrs the peers' grids are made of: 1 and 3 in every decade.
LADDER = (1.0, 3.0)
# Where make peers-bracket-<task> writes its runs, beside results/peers/runs.
BEYOND_RUNS = "bracket_runs"
# What a grid with no edge says: nothing to check.
INSIDE = "every tuned lr is inside its grid"


@dataclass(frozen=True)
class Edge:
    """An optimizer tuned at the ``side`` ("largest"/"smallest") lr of its grid, and the
    lr one step beyond it."""

    choice: Choice
    lr: float
    side: str
    beyond: float

    @property
    def grid_point(self) -> str:
        return grid_point_name(self.choice.optimizer, self.beyond)


def on_ladder(lr: float) -> float:
    """The value of the 1-3-10 ladder nearest ``lr`` in log scale."""
    decade = math.floor(math.log10(lr))
    rungs = [m * 10.0**k for k in (decade - 1, decade, decade + 1) for m in LADDER]
    return min(rungs, key=lambda rung: abs(math.log(rung / lr)))


def grid_point_name(optimizer: str, lr: float) -> str:
    """``momo_lr30``, ``schedulefree_adamw_lr1e-1``: the grid points' file names."""
    if lr >= 1:
        return f"{optimizer}_lr{lr:g}"
    mantissa, exponent = f"{lr:.0e}".split("e")
    return f"{optimizer}_lr{mantissa}e{int(exponent)}"


def edges(group: pd.DataFrame, window: int) -> list[Edge]:
    """The optimizers of one (task, scale, setting) tuned at an edge of their lr grid."""
    found = []
    for choice in tuned_choices(group, window):
        if choice.point is None or "lr" not in choice.point.settings:
            continue
        lrs = sorted(
            {float(p.settings["lr"]) for p in choice.points if p.optimizer == choice.optimizer}
        )
        lr = float(choice.point.settings["lr"])
        side = lr_edge(lr, lrs)
        if side:
            neighbour = lrs[-2] if side == "largest" else lrs[1]
            found.append(Edge(choice, lr, side, on_ladder(lr * lr / neighbour)))
    return found


def beyond_names(run_dirs: list[Path], window: int | None = None) -> str:
    """``momo_lr30,nesterov_cosine_lr3``: the grid points one step beyond each edge (empty
    when every tuned lr is bracketed); one clear error when a config is missing."""
    frame = load_runs(run_dirs)
    names = []
    for _, group in frame.groupby(GROUP_KEYS, sort=True):
        names += [e.grid_point for e in edges(group, resolve_window(group, window))]
    names = list(dict.fromkeys(names))
    missing = [n for n in names if not (CONFIG_DIR / "grid_point" / f"{n}.yaml").is_file()]
    if missing:
        raise UserError(
            f"no grid point config for {', '.join(missing)}: add conf/grid_point/<name>.yaml "
            "for each (as its optimizer's other grid points, with that lr), then run this again"
        )
    return ",".join(names)


def lower_names(tuning: Path, beyond: Path) -> str:
    """``nesterov_cosine_lr3``: the points beyond an edge that ended lower by more than the
    seeds' spread (what a grid grown until it brackets would choose at least), whose
    evaluation seeds show what the equal budget costs; empty when none did (or none ran)."""
    runs = load_runs([tuning])
    table = bracket_table(runs, load_beyond(beyond, runs))
    if table.empty:
        return ""
    lower = table[table.apply(outcome, axis=1) == "lower"]
    return ",".join(
        grid_point_name(row["optimizer"], row["lr_beyond"]) for _, row in lower.iterrows()
    )


def load_beyond(
    path: Path | None, tuning: pd.DataFrame, load: Callable[[Path], pd.DataFrame] = load_folder
) -> pd.DataFrame:
    """The runs beyond the edges under ``path``; where the folder is absent or holds no run,
    nothing ran beyond: an empty frame shaped like ``tuning``."""
    if path is not None and path.is_dir() and find_run_dirs([path]):
        return load(path)
    return tuning[:0]


def bracket_table(
    tuning: pd.DataFrame, beyond: pd.DataFrame, window: int | None = None
) -> pd.DataFrame:
    """One row per edge: the chosen lr's and the lr beyond's lowest smoothed training loss
    (the tuning rule) and final validation metric on the tuning seed, and each one's median
    final metric over its evaluation seeds where they ran."""
    rows = []
    for key, group in tuning.groupby(GROUP_KEYS, sort=True):
        others = beyond[(beyond[GROUP_KEYS] == pd.Series(key, index=GROUP_KEYS)).all(axis=1)]
        width = resolve_window(pd.concat([group, others]), window)
        judged = headline(group)
        metric = judged.metric if judged else None
        for edge in edges(group, width):
            point = edge.choice.point
            tried = _point_at(others, edge, width)
            rows.append(
                dict(zip(GROUP_KEYS, key, strict=True))
                | {
                    "optimizer": edge.choice.optimizer,
                    "edge": edge.side,
                    "lr": edge.lr,
                    "score": point.score_on({TUNING_SEED}),
                    "seed_sd": _spread(point),
                    "final": _final(group, point, metric),
                    "final_eval": _final_eval(group, point, metric),
                    "lr_beyond": edge.beyond,
                    "status_beyond": tried.statuses[TUNING_SEED] if tried else "not run",
                    "score_beyond": tried.score_on({TUNING_SEED}) if tried else math.nan,
                    "final_beyond": _final(others, tried, metric) if tried else math.nan,
                    "final_eval_beyond": _final_eval(others, tried, metric) if tried else math.nan,
                    "eval_seeds_beyond": _eval_seeds(tried) if tried else "",
                    "metric": metric or DASH,
                }
            )
    return pd.DataFrame(rows)


def _point_at(runs: pd.DataFrame, edge: Edge, window: int) -> GridPoint | None:
    """The tuning-seed run of ``edge``'s optimizer at the lr beyond, if one finished."""
    own = runs[runs["optimizer"] == edge.choice.optimizer]
    points = grid_points(own, window) if len(own) else []
    return next(
        (
            p
            for p in points
            if np.isclose(float(p.settings.get("lr", math.nan)), edge.beyond)
            and TUNING_SEED in p.statuses
        ),
        None,
    )


def _spread(point: GridPoint) -> float:
    """The standard deviation of the point's score over its evaluation seeds (NaN: < 2)."""
    scores = [point.score_on({seed}) for seed in point.curves if seed != TUNING_SEED]
    return float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan


def _final(runs: pd.DataFrame, point: GridPoint, metric: str | None) -> float:
    run_dir = point.run_dirs.get(TUNING_SEED)
    return final_value(runs[runs["run_dir"] == run_dir], metric) if run_dir else math.nan


def _final_eval(runs: pd.DataFrame, point: GridPoint, metric: str | None) -> float:
    """The median final metric over the point's evaluation seeds (NaN: none ran), as the
    leaderboard reports it."""
    finals = [
        final_value(runs[runs["run_dir"] == run_dir], metric)
        for seed, run_dir in point.run_dirs.items()
        if seed != TUNING_SEED
    ]
    finite = [f for f in finals if math.isfinite(f)]
    return float(np.median(finite)) if finite else math.nan


def _eval_seeds(point: GridPoint) -> str:
    return seed_list(seed for seed in point.run_dirs if seed != TUNING_SEED)


def outcome(row: pd.Series) -> str:
    """``lower``/``higher``: the lr beyond's score differs from the chosen lr's by more than
    the chosen point's seed-to-seed spread (its evaluation seeds' standard deviation; the
    sign alone when it has fewer than two); ``within`` the spread; ``stopped`` (diverged or
    failed); ``not run``."""
    if row["status_beyond"] == "not run":
        return "not run"
    if row["status_beyond"] != "completed" or not math.isfinite(row["score_beyond"]):
        return "stopped"
    change, spread = row["score_beyond"] - row["score"], row["seed_sd"]
    noise = spread if math.isfinite(spread) else 0.0
    return "lower" if change < -noise else "higher" if change > noise else "within"


def verdict(row: pd.Series) -> str:
    """What the lr beyond says about the chosen one, by the tuning rule."""
    said = outcome(row)
    if said == "not run":
        return "not run yet"
    if said == "stopped":
        return f"the lr beyond {row['status_beyond']}: the chosen lr stays"
    spread = f"seed sd {_cell(row['seed_sd'])}" if math.isfinite(row["seed_sd"]) else "no seed sd"
    change = f"{row['score_beyond'] - row['score']:+.4f}, {spread}"
    said = {
        "lower": f"the lr beyond ends lower ({change}): under-tuned at the grid's edge",
        "higher": f"the lr beyond ends higher ({change}): the chosen lr stays",
        "within": f"within the seeds' spread ({change}): no verdict",
    }[said]
    return said + _evaluated(row)


def _evaluated(row: pd.Series) -> str:
    """``; on evaluation seeds 2,3,4 final perplexity 59.16 -> 52.1`` where the lr beyond
    ran them: the medians the leaderboard would show."""
    if not row["eval_seeds_beyond"]:
        return ""
    finals = f"{_cell(row['final_eval'])} -> {_cell(row['final_eval_beyond'])}"
    return f"; on evaluation seeds {row['eval_seeds_beyond']} final {row['metric']} {finals}"


def edge_notes(tuning: pd.DataFrame, beyond: pd.DataFrame) -> dict[tuple[str, ...], str]:
    """Per (task, scale, setting, optimizer) tuned at an edge whose lr beyond ran: what it
    says, for the leaderboard's tuning cell (``lr 3 ends lower: under-rated``). Only the
    task settings with runs beyond are read: another's grid may still be running."""
    if beyond.empty:
        return {}
    table = bracket_table(tuning.merge(beyond[GROUP_KEYS].drop_duplicates()), beyond)
    notes = {}
    for _, row in table.iterrows():
        said = outcome(row)
        if said == "not run":
            continue
        lr = f"lr {row['lr_beyond']:.4g}"
        there = f", median final there {_cell(row['final_eval_beyond'])}"
        notes[(*row[GROUP_KEYS], row["optimizer"])] = {
            "lower": f"{lr} ends lower: under-rated" + (there if row["eval_seeds_beyond"] else ""),
            "higher": f"{lr} ends higher",
            "within": f"{lr} within the seeds' spread",
            "stopped": f"{lr} {row['status_beyond']}",
        }[said]
    return notes


def findings(table: pd.DataFrame, label: Callable[[str], str] = str) -> list[str]:
    """One sentence per task and scale whose grid had an edge (``label`` names a task)."""
    if table.empty:
        return []
    lines = []
    for (task, scale), group in table.groupby(["task", "scale"], sort=True):
        said = group.apply(outcome, axis=1)
        named = {
            which: ", ".join(_named(row) for _, row in group[said == which].iterrows()) or "none"
            for which in ("lower", "within")
        }
        lines.append(
            f"Grid edges, {label(task)} ({scale}): {_count(len(group))} tuned at an "
            f"edge of their lr grid; one lr beyond it ran for {int((said != 'not run').sum())} "
            "of them on the tuning seed and ended lower by more than the seeds' spread for "
            f"{named['lower']} (within it for {named['within']}) (results/peers/bracket.md)."
        )
    return lines


def _count(optimizers: int) -> str:
    return "1 optimizer was" if optimizers == 1 else f"{optimizers} optimizers were"


def _named(row: pd.Series) -> str:
    """``nesterov_cosine (final perplexity 58.42 -> 52.32)``: the metric the leaderboard
    ranks, at the chosen lr and the lr beyond, on the tuning seed."""
    finals = f"{_cell(row['final'])} -> {_cell(row['final_beyond'])}"
    return f"{optimizer_name(row['optimizer'])} (final {row['metric']} {finals}{_evaluated(row)})"


def run_findings(
    peers: Path,
    label: Callable[[str], str] = str,
    load: Callable[[Path], pd.DataFrame] = load_folder,
) -> list[str]:
    """:func:`findings` for every ``<task>/<scale>`` grid under ``peers``/runs whose second
    stage has begun (some run on an evaluation seed: the tuning seed's grid is whole),
    against its runs beyond under ``peers``/bracket_runs; a grid without an edge says so
    (``load`` reads one folder)."""
    lines = []
    for tuning in sorted((peers / "runs").glob("*/*")):
        if not find_run_dirs([tuning]):
            continue
        where = f"{label(tuning.parent.name)} ({tuning.name})"
        beyond = peers / BEYOND_RUNS / tuning.relative_to(peers / "runs")
        try:
            runs = load(tuning)
            if not (runs["seed"] != TUNING_SEED).any():
                continue
            table = bracket_table(runs, load_beyond(beyond, runs, load))
        except UserError as error:
            lines.append(f"Grid edges, {where}: not checked ({error}).")
            continue
        lines += findings(table, label) or [f"Grid edges, {where}: {INSIDE}."]
    return lines


def write_outputs(
    run_dirs: list[Path], out: Path, window: int | None = None, beyond_runs: Path | None = None
) -> list[Path]:
    """bracket.csv and bracket.md under ``out``."""
    tuning = load_runs(run_dirs)
    table = bracket_table(tuning, load_beyond(beyond_runs, tuning), window)
    table = table.assign(verdict=[verdict(row) for _, row in table.iterrows()])
    out.mkdir(parents=True, exist_ok=True)
    csv, page = out / "bracket.csv", out / "bracket.md"
    atomic.write_text(csv, table.to_csv(index=False))
    checked = sorted({"/".join(key) for key, _ in tuning.groupby(GROUP_KEYS)})
    with_edge = {"/".join(key) for key, _ in table.groupby(GROUP_KEYS)} if len(table) else set()
    inside = [key for key in checked if key not in with_edge]
    lines = [
        "# Did the lr grids bracket the tuned lrs?",
        "",
        "Generated by `make peers-bracket-<task>` (`python -m yfbench.analysis.bracket`); "
        "do not edit.",
        "",
    ]
    if inside:
        lines += [f"{', '.join(inside)}: {INSIDE}.", ""]
    if table.empty:
        atomic.write_text(page, "\n".join(lines))
        return [csv, page]
    shown = table.assign(
        eval_seeds_beyond=table["eval_seeds_beyond"].replace("", DASH),
        **{c: table[c].map(lambda v: f"{v:.4g}") for c in ("lr", "lr_beyond")},
        **{
            c: table[c].map(_cell)
            for c in (
                "score",
                "seed_sd",
                "score_beyond",
                "final",
                "final_beyond",
                "final_eval",
                "final_eval_beyond",
            )
        },
    )
    lines += [
        f"Each optimizer below was tuned at the largest or smallest lr of its grid (tuning "
        f"seed {TUNING_SEED}, lowest smoothed training loss). One more lr beyond that edge "
        "ran on the same seed, apart from the grid: the leaderboard's choices and equal "
        "budget stay as they were. Where the lr beyond ends lower, the leaderboard's "
        "number for that optimizer is pessimistic. One seed each: a difference within the "
        "chosen point's seed-to-seed spread (`seed_sd`) is no verdict; where it ends lower "
        "by more than that, the lr beyond also ran on the evaluation seeds.",
        "",
        "`score`: lowest smoothed training loss on the tuning seed (the tuning rule); "
        "`seed_sd`: its standard deviation over the chosen point's evaluation seeds; "
        "`final`: final validation metric on that seed; `final_eval`: its median over the "
        "chosen point's evaluation seeds (the leaderboard's number); `final_eval_beyond`: the "
        "same at the lr beyond, on `eval_seeds_beyond`, run only where the lr beyond ended "
        "lower (a grid grown until it brackets would choose it, or one further out).",
        "",
        markdown_table(shown),
        "",
    ]
    atomic.write_text(page, "\n".join(lines))
    return [csv, page]


def _cell(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else DASH


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--beyond-runs", type=Path, help="the runs beyond the edges (make peers-bracket-<task>)"
    )


def _lower_command(args: list[str]) -> str:
    if len(args) != 2:
        raise UserError("usage: python -m yfbench.analysis.bracket lower TUNING_DIR BEYOND_DIR")
    return lower_names(Path(args[0]), Path(args[1]))


def main(argv: list[str] | None = None) -> int:
    commands = {
        "beyond": lambda args: beyond_names([Path(a) for a in args]),
        "lower": _lower_command,
    }
    return cli.run(
        "yfbench.analysis.bracket", write_outputs, argv, options=_options, subcommands=commands
    )


if __name__ == "__main__":
    sys.exit(main())
