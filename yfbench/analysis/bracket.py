"""Did the peers' lr grids bracket and resolve each tuned lr? (results/peers/bracket.md)

Every optimizer that needs tuning gets the same budget: five lrs on the tuning seed, the
lowest smoothed training loss wins. Two things can make the leaderboard under-rate an
optimizer for its grid rather than for itself, and the check probes both with lrs outside
the grid (on the 1-3-10 ladder the grids use):

- *beyond an edge*: the winner is the largest or smallest lr of its grid, so the grid did
  not bracket the best lr; the probe continues the grid's own step one lr further;
- *between decade steps*: the grid steps by more than half a decade beside the winner
  (Adam's and momentum SGD's grids step by a decade; the others by half a decade), so
  five lrs resolve it more coarsely; the probes are the ladder's lrs the grid skipped next
  to the winner, half a decade from it.

Probes run on the tuning seed only and in a folder of their own, so that neither the choice
nor the equal budget changes: the check measures what the budget's grid costs an
optimizer, it does not retune it. One seed each, so a difference within the chosen point's
seed-to-seed spread (its evaluation seeds') is no verdict. Where a probe ends lower by more
than that, a grown or finer grid would choose it (or one beside it), so it also runs on the
evaluation seeds: their median final metric is the number the leaderboard would show.
Beyond an edge the check goes on as a grown grid would: while a probe ends lower, one
more lr out, until one does not.

``python -m yfbench.analysis.bracket probes RUN_DIR [PROBE_DIR]`` prints the
``grid_point=`` names to run on the tuning seed (``make peers-bracket-<task>``), ``... lower
RUN_DIR PROBE_DIR`` those to run on the evaluation seeds; ``python -m
yfbench.analysis.bracket TUNING_DIR... --probe-runs DIR --out DIR`` writes the table, and
names the grids that needed no probe.
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
from yfbench.analysis.findings import Findings
from yfbench.analysis.headline import final_value, headline
from yfbench.analysis.paper import optimizer_name
from yfbench.analysis.protocol import TUNING_SEED, band, seed_list
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
# One rung of that ladder, in log scale: half a decade.
HALF_DECADE = math.sqrt(10.0)
# Where make peers-bracket-<task> writes its runs, beside results/peers/runs.
PROBE_RUNS = "bracket_runs"
# What a grid with no edge and no decade step beside its choices says: nothing to probe.
INSIDE = "every tuned lr is inside its grid, at most half a decade from its neighbours"
# Where a probe lies, by what it asks.
BEYOND = {"largest": "beyond the largest", "smallest": "beyond the smallest"}
BETWEEN = {"above": "between, above", "below": "between, below"}


@dataclass(frozen=True)
class Probe:
    """An lr outside an optimizer's grid beside its tuned ``lr``: ``where`` says which side
    (:data:`BEYOND` an edge of the grid, or :data:`BETWEEN` it and a neighbour more than
    half a decade away)."""

    choice: Choice
    lr: float
    where: str
    probe: float

    @property
    def grid_point(self) -> str:
        return grid_point_name(self.choice.optimizer, self.probe)


def on_ladder(lr: float) -> float:
    """The value of the 1-3-10 ladder nearest ``lr`` in log scale (as written: 0.3, not
    3 * 0.1)."""
    decade = math.floor(math.log10(lr))
    rungs = [float(f"{m:g}e{k}") for k in (decade - 1, decade, decade + 1) for m in LADDER]
    return min(rungs, key=lambda rung: abs(math.log(rung / lr)))


def step_beyond(lr: float, neighbour: float) -> float:
    """One more step of a grid from ``neighbour`` through ``lr``, on the ladder: the lr a
    grid grown past its edge at ``lr`` would try next."""
    return on_ladder(lr * lr / neighbour)


def rung_between(lr: float, neighbour: float) -> float | None:
    """The ladder's lr next to ``lr`` on ``neighbour``'s side, where it lies strictly
    between the two (the grid skipped it); None where the grid is that fine already."""
    rung = on_ladder(lr * HALF_DECADE if neighbour > lr else lr / HALF_DECADE)
    low, high = sorted((lr, neighbour))
    return rung if low * (1 + 1e-9) < rung < high * (1 - 1e-9) else None


def grid_point_name(optimizer: str, lr: float) -> str:
    """``momo_lr30``, ``schedulefree_adamw_lr1e-1``: the grid points' file names."""
    if lr >= 1:
        return f"{optimizer}_lr{lr:g}"
    mantissa, exponent = f"{lr:.0e}".split("e")
    return f"{optimizer}_lr{mantissa}e{int(exponent)}"


def probes(group: pd.DataFrame, window: int) -> list[Probe]:
    """The lrs to probe beside the tuned lrs of one (task, scale, setting): one beyond each
    choice at an edge of its grid, and the ladder's lrs the grid skipped beside each."""
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
            found.append(Probe(choice, lr, BEYOND[side], step_beyond(lr, neighbour)))
        at = lrs.index(lr)
        for towards, neighbours in (("below", lrs[:at][-1:]), ("above", lrs[at + 1 :][:1])):
            rung = rung_between(lr, neighbours[0]) if neighbours else None
            if rung is not None:
                found.append(Probe(choice, lr, BETWEEN[towards], rung))
    return found


def probe_names(tuning: Path, probed: Path | None = None, window: int | None = None) -> str:
    """``momo_lr30,adam_lr3e-3``: the grid points to probe (empty when every tuned lr is
    bracketed and resolved), the lrs further out included where the probes under
    ``probed`` ended lower beyond an edge; one clear error when a config is missing."""
    table = _table_of(tuning, probed, window)
    names = list(
        dict.fromkeys(
            grid_point_name(optimizer, lr)
            for optimizer, lr in zip(table["optimizer"], table["lr_probe"], strict=True)
        )
    )
    missing = [n for n in names if not (CONFIG_DIR / "grid_point" / f"{n}.yaml").is_file()]
    if missing:
        raise UserError(
            f"no grid point config for {', '.join(missing)}: add conf/grid_point/<name>.yaml "
            "for each (as its optimizer's other grid points, with that lr), then run this again"
        )
    return ",".join(names)


def lower_names(tuning: Path, probed: Path) -> str:
    """``nesterov_cosine_lr3``: the probes that ended lower by more than the seeds' spread
    (what a grown or finer grid would choose at least), whose evaluation seeds show what
    the equal budget's grid costs; empty when none did (or none ran)."""
    table = _table_of(tuning, probed)
    lower = table[outcomes(table) == "lower"]
    return ",".join(
        grid_point_name(row["optimizer"], row["lr_probe"]) for _, row in lower.iterrows()
    )


def _table_of(tuning: Path, probed: Path | None, window: int | None = None) -> pd.DataFrame:
    """:func:`bracket_table` of the grid in folder ``tuning`` and the probes under ``probed``."""
    runs = load_runs([tuning])
    return bracket_table(runs, load_probes(probed, runs), window)


def load_probes(
    path: Path | None, tuning: pd.DataFrame, load: Callable[[Path], pd.DataFrame] = load_folder
) -> pd.DataFrame:
    """The probes' runs under ``path``; where the folder is absent or holds no run, nothing
    was probed: an empty frame shaped like ``tuning``."""
    if path is not None and path.is_dir() and find_run_dirs([path]):
        return load(path)
    return tuning[:0]


# The table's columns, so that a table with no probe has them too.
COLUMNS = [
    *GROUP_KEYS,
    "optimizer",
    "where",
    "lr",
    "score",
    "seed_sd",
    "final",
    "final_eval",
    "lr_probe",
    "status_probe",
    "score_probe",
    "final_probe",
    "final_eval_probe",
    "eval_seeds_probe",
    "metric",
]


def bracket_table(
    tuning: pd.DataFrame, probed: pd.DataFrame, window: int | None = None
) -> pd.DataFrame:
    """One row per probe: the chosen lr's and the probe's lowest smoothed training loss
    (the tuning rule) and final validation metric on the tuning seed, and each one's median
    final metric over its evaluation seeds where they ran. Where a probe beyond an edge
    ends lower, the grid grown until it brackets goes on: one more lr out, compared with
    that probe (its evaluation seeds' spread), until one does not end lower or has not run."""
    rows = []
    for key, group in tuning.groupby(GROUP_KEYS, sort=True):
        others = probed[(probed[GROUP_KEYS] == pd.Series(key, index=GROUP_KEYS)).all(axis=1)]
        width = resolve_window(pd.concat([group, others]), window)
        judged = headline(group)
        metric = judged.metric if judged else None
        for probe in probes(group, width):
            base, base_runs = probe.choice.point, group
            while True:
                tried = _point_at(others, probe, width)
                row = dict(zip(GROUP_KEYS, key, strict=True)) | {
                    "optimizer": probe.choice.optimizer,
                    "where": probe.where,
                    "lr": probe.lr,
                    "score": base.score_on({TUNING_SEED}),
                    "seed_sd": _spread(base),
                    "final": _final(base_runs, base, metric),
                    "final_eval": _final_eval(base_runs, base, metric),
                    "lr_probe": probe.probe,
                    "status_probe": tried.statuses[TUNING_SEED] if tried else "not run",
                    "score_probe": tried.score_on({TUNING_SEED}) if tried else math.nan,
                    "final_probe": _final(others, tried, metric) if tried else math.nan,
                    "final_eval_probe": _final_eval(others, tried, metric) if tried else math.nan,
                    "eval_seeds_probe": _eval_seeds(tried) if tried else "",
                    "metric": metric or DASH,
                }
                rows.append(row)
                if probe.where not in BEYOND.values() or outcome(pd.Series(row)) != "lower":
                    break
                further = step_beyond(probe.probe, probe.lr)
                probe = Probe(probe.choice, probe.probe, probe.where, further)
                base, base_runs = tried, others
    return pd.DataFrame(rows, columns=COLUMNS)


def _point_at(runs: pd.DataFrame, probe: Probe, window: int) -> GridPoint | None:
    """The tuning-seed run of ``probe``'s optimizer at the probed lr, if one finished."""
    own = runs[runs["optimizer"] == probe.choice.optimizer]
    points = grid_points(own, window) if len(own) else []
    return next(
        (
            p
            for p in points
            if np.isclose(float(p.settings.get("lr", math.nan)), probe.probe)
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
    return band(finals).median


def _eval_seeds(point: GridPoint) -> str:
    return seed_list(seed for seed in point.run_dirs if seed != TUNING_SEED)


def outcome(row: pd.Series) -> str:
    """``lower``/``higher``: the probe's score differs from the chosen lr's by more than
    the chosen point's seed-to-seed spread (its evaluation seeds' standard deviation; the
    sign alone when it has fewer than two); ``within`` the spread; ``stopped`` (diverged or
    failed); ``not run``."""
    if row["status_probe"] == "not run":
        return "not run"
    if row["status_probe"] != "completed" or not math.isfinite(row["score_probe"]):
        return "stopped"
    change, spread = row["score_probe"] - row["score"], row["seed_sd"]
    noise = spread if math.isfinite(spread) else 0.0
    return "lower" if change < -noise else "higher" if change > noise else "within"


def outcomes(table: pd.DataFrame) -> pd.Series:
    """:func:`outcome` of every row (an empty Series for a table with no probe)."""
    return table.apply(outcome, axis=1) if len(table) else pd.Series(index=table.index, dtype=str)


def _under_tuned(row: pd.Series) -> str:
    """Why a probe that ends lower was outside the grid."""
    if row["where"] in BETWEEN.values():
        return "between the grid's decade steps"
    return "at the grid's edge"


def verdict(row: pd.Series) -> str:
    """What the probe says about the chosen lr, by the tuning rule."""
    said, lr = outcome(row), f"lr {row['lr_probe']:.4g}"
    if said == "not run":
        return "not run yet"
    if said == "stopped":
        return f"{lr} {row['status_probe']}: lr {row['lr']:.4g} stays"
    spread = f"seed sd {_cell(row['seed_sd'])}" if math.isfinite(row["seed_sd"]) else "no seed sd"
    change = f"{row['score_probe'] - row['score']:+.4f}, {spread}"
    said = {
        "lower": f"{lr} ends lower ({change}): under-tuned {_under_tuned(row)}",
        "higher": f"{lr} ends higher ({change}): lr {row['lr']:.4g} stays",
        "within": f"{lr} within the seeds' spread ({change}): no verdict",
    }[said]
    return said + _evaluated(row)


def _evaluated(row: pd.Series) -> str:
    """``; on evaluation seeds 2,3,4 final perplexity 59.16 -> 52.1`` where the probe ran
    them: the medians the leaderboard would show."""
    if not row["eval_seeds_probe"]:
        return ""
    finals = f"{_cell(row['final_eval'])} -> {_cell(row['final_eval_probe'])}"
    return f"; on evaluation seeds {row['eval_seeds_probe']} final {row['metric']} {finals}"


def probe_notes(tuning: pd.DataFrame, probed: pd.DataFrame) -> dict[tuple[str, ...], str]:
    """Per (task, scale, setting, optimizer) whose probes ran: what they say, for the
    leaderboard's tuning cell (``lr 3 ends lower: under-rated; lr 0.3 ends higher``). Only
    the task settings with probes are read: another's grid may still be running."""
    if probed.empty:
        return {}
    table = bracket_table(tuning.merge(probed[GROUP_KEYS].drop_duplicates()), probed)
    notes: dict[tuple[str, ...], list[str]] = {}
    for _, row in table.iterrows():
        said = outcome(row)
        if said == "not run":
            continue
        lr = f"lr {row['lr_probe']:.4g}"
        there = f", median final there {_cell(row['final_eval_probe'])}"
        notes.setdefault((*row[GROUP_KEYS], row["optimizer"]), []).append(
            {
                "lower": f"{lr} ends lower: under-rated"
                + (there if row["eval_seeds_probe"] else ""),
                "higher": f"{lr} ends higher",
                "within": f"{lr} within the seeds' spread",
                "stopped": f"{lr} {row['status_probe']}",
            }[said]
        )
    return {key: "; ".join(said) for key, said in notes.items()}


def findings(table: pd.DataFrame, label: Callable[[str], str] = str) -> list[str]:
    """One sentence per task and scale with probes (``label`` names a task)."""
    lines = []
    for (task, scale), group in table.groupby(["task", "scale"], sort=True):
        said = outcomes(group)
        named = {
            which: ", ".join(_named(row) for _, row in group[said == which].iterrows()) or "none"
            for which in ("lower", "within")
        }
        between = group["where"].isin(BETWEEN.values())
        lines.append(
            f"Grid check, {label(task)} ({scale}): {len(group)} lrs outside the grids, beside "
            f"the tuned ones ({int((~between).sum())} beyond an edge, {int(between.sum())} "
            f"between decade steps); {int((said != 'not run').sum())} ran on the tuning seed "
            f"and ended lower by more than the seeds' spread for {named['lower']} (within it "
            f"for {named['within']}) (results/peers/bracket.md)."
        )
    return lines


def _named(row: pd.Series) -> str:
    """``nesterov_cosine at lr 3 (final perplexity 58.42 -> 52.32)``: the metric the
    leaderboard ranks, at the chosen lr and the probe, on the tuning seed."""
    finals = f"{_cell(row['final'])} -> {_cell(row['final_probe'])}"
    return (
        f"{optimizer_name(row['optimizer'])} at lr {row['lr_probe']:.4g} "
        f"(final {row['metric']} {finals}{_evaluated(row)})"
    )


def raised(table: pd.DataFrame, label: Callable[[str], str] = str) -> list[str]:
    """``Adam on CIFAR10 (cpu) (accuracy 0.658 -> 0.712)``: each probe that ended lower and
    ran on the evaluation seeds, with the medians the leaderboard shows and would show."""
    lower = table[(outcomes(table) == "lower") & (table["eval_seeds_probe"] != "")]
    return [
        f"{optimizer_name(row['optimizer'])} at lr {row['lr_probe']:.4g} on "
        f"{label(row['task'])} ({row['scale']}) ({row['metric']} {_cell(row['final_eval'])} "
        f"-> {_cell(row['final_eval_probe'])})"
        for _, row in lower.iterrows()
    ]


def run_findings(
    peers: Path,
    label: Callable[[str], str] = str,
    load: Callable[[Path], pd.DataFrame] = load_folder,
) -> Findings:
    """:func:`findings` for every ``<task>/<scale>`` grid under ``peers``/runs whose second
    stage has begun (some run on an evaluation seed: the tuning seed's grid is whole),
    against its probes under ``peers``/bracket_runs; a grid that needs none says so
    (``load`` reads one folder). The lead names what the probes would raise, so that the
    first screen says where the equal budget's grids under-rate an optimizer."""
    lines, better = [], []
    for tuning in sorted((peers / "runs").glob("*/*")):
        if not find_run_dirs([tuning]):
            continue
        where = f"{label(tuning.parent.name)} ({tuning.name})"
        probed = peers / PROBE_RUNS / tuning.relative_to(peers / "runs")
        try:
            runs = load(tuning)
            if not (runs["seed"] != TUNING_SEED).any():
                continue
            table = bracket_table(runs, load_probes(probed, runs, load))
        except UserError as error:
            lines.append(f"Grid check, {where}: not checked ({error}).")
            continue
        lines += findings(table, label) or [f"Grid check, {where}: {INSIDE}."]
        better += raised(table, label)
    lead = [
        "learning rates probed outside the peers' equal-budget grids raise, on the evaluation "
        "seeds, " + ", ".join(better)
    ]
    return Findings(lead if better else [], lines)


def write_outputs(
    run_dirs: list[Path], out: Path, window: int | None = None, probe_runs: Path | None = None
) -> list[Path]:
    """bracket.csv and bracket.md under ``out``."""
    tuning = load_runs(run_dirs)
    table = bracket_table(tuning, load_probes(probe_runs, tuning), window)
    table = table.assign(verdict=[verdict(row) for _, row in table.iterrows()])
    out.mkdir(parents=True, exist_ok=True)
    csv, page = out / "bracket.csv", out / "bracket.md"
    atomic.write_text(csv, table.to_csv(index=False))
    checked = sorted({"/".join(key) for key, _ in tuning.groupby(GROUP_KEYS)})
    probed = {"/".join(key) for key, _ in table.groupby(GROUP_KEYS)}
    inside = [key for key in checked if key not in probed]
    lines = [
        "# Did the lr grids bracket and resolve the tuned lrs?",
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
        eval_seeds_probe=table["eval_seeds_probe"].replace("", DASH),
        **{c: table[c].map(lambda v: f"{v:.4g}") for c in ("lr", "lr_probe")},
        **{c: table[c].map(_cell) for c in COLUMNS if c.startswith(("score", "seed_", "final"))},
    )
    lines += [
        f"Each row probes one lr outside an optimizer's grid, beside its tuned lr (tuning "
        f"seed {TUNING_SEED}, lowest smoothed training loss): *beyond* the grid's largest or "
        "smallest lr where the tuned lr is that edge (the grid did not bracket the best lr), "
        "or *between* the tuned lr and a grid neighbour more than half a decade away, half a "
        "decade from the tuned lr (Adam's and momentum SGD's grids step by a decade, the "
        "others' by half a decade). Probes run on the tuning seed, apart from the grid: the "
        "leaderboard's choices and equal budget stay as they were. Where a probe ends lower, "
        "the leaderboard's number for that optimizer is pessimistic. One seed each: a "
        "difference within the chosen point's seed-to-seed spread (`seed_sd`) is no "
        "verdict; where it ends lower by more than that, the probe also ran on the "
        "evaluation seeds, and beyond an edge the next row probes one lr further out against "
        "it (its `lr` is that probe's), as a grid grown until it brackets would, until one "
        "does not end lower.",
        "",
        "`score`: lowest smoothed training loss on the tuning seed (the tuning rule); "
        "`seed_sd`: its standard deviation over the chosen point's evaluation seeds; "
        "`final`: final validation metric on that seed; `final_eval`: its median over the "
        "chosen point's evaluation seeds (the leaderboard's number); `final_eval_probe`: "
        "the same at the probed lr, on `eval_seeds_probe`, run only where the probe ended "
        "lower (a grown or finer grid would choose it, or one beside it).",
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
        "--probe-runs", type=Path, help="the probes' runs (make peers-bracket-<task>)"
    )


def _probes_command(args: list[str]) -> str:
    if len(args) not in (1, 2):
        raise UserError("usage: python -m yfbench.analysis.bracket probes TUNING_DIR [PROBE_DIR]")
    return probe_names(Path(args[0]), Path(args[1]) if len(args) == 2 else None)


def _lower_command(args: list[str]) -> str:
    if len(args) != 2:
        raise UserError("usage: python -m yfbench.analysis.bracket lower TUNING_DIR PROBE_DIR")
    return lower_names(Path(args[0]), Path(args[1]))


def main(argv: list[str] | None = None) -> int:
    commands = {"probes": _probes_command, "lower": _lower_command}
    return cli.run(
        "yfbench.analysis.bracket", write_outputs, argv, options=_options, subcommands=commands
    )


if __name__ == "__main__":
    sys.exit(main())
