"""The peers leaderboard (results/leaderboard.md) and its performance profiles, from runs.

Protocol, as the runs carry it: every optimizer's grid point is chosen on the tuning seed
(an optimizer run at one setting there is tuning-free), and the table reports only the
other seeds, all at that chosen point. Per task, the target is the median final validation
metric of a reference optimizer (default: AlgoPerf's fixed-default NadamW, which no seed
tuned); an optimizer's time to target is the first evaluation that reaches it, in
iterations and in training wall-clock seconds (its own cost and host syncs included), and
is read on the evaluation grid (every ``trainer.eval_every`` steps). A seed that never
reaches it is infinite in the median and shown as a bound ("> T"), never as a zero.
Optimizer-state bytes per parameter and host syncs per step come from a measured file
(``scripts/measure_peers.py``), not from the runs.

Wall-clock seconds: the grid's runs share the machine with each other, so their own clocks
measure the load as much as the optimizer. Given ``--speed`` (``scripts/bench_training.py
--variants peers --json``: every optimizer's steps/s measured in one interleaved benchmark),
seconds to target are iterations to target over that rate (training only, evaluations left
out, as AlgoPerf counts them); without it they are the runs' own clocks, and the
leaderboard says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from yfbench.analysis.bracket import load_probes, probe_notes
from yfbench.analysis.findings import Findings
from yfbench.analysis.headline import Headline, final_value, headline
from yfbench.analysis.paper import optimizer_name
from yfbench.analysis.profiles import R_MAX, plot_profiles, ratios, scores
from yfbench.analysis.protocol import TUNING_SEED, band
from yfbench.analysis.runs import HPARAM_PREFIX, load_folder, load_runs
from yfbench.analysis.speedup import GROUP_KEYS, lr_edge
from yfbench.analysis.tables import DASH, markdown_table, ordinal
from yfbench.errors import UserError

REFERENCE = "nadamw_algoperf"


@dataclass(frozen=True)
class Target:
    metric: str
    higher_is_better: bool
    value: float

    def reached(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value >= self.value if self.higher_is_better else value <= self.value

    def __str__(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        return f"{self.metric} {sign} {self.value:.4g}"


def judged_on(group: pd.DataFrame) -> Headline:
    """The task's headline metric, or one clear error when its runs evaluated nothing."""
    found = headline(group)
    if found is None:
        raise UserError(
            "the runs logged no validation metric; run them with trainer.eval_every > 0"
        )
    return found


def per_run(group: pd.DataFrame, target: Target | None) -> pd.DataFrame:
    """One row per run: final metric, time to ``target`` (inf: not reached), steps/s."""
    rows = []
    for run_dir, run in group.groupby("run_dir", sort=True):
        valid = run[run["split"] == "valid"].sort_values("step")
        train = run[run["split"] == "train"].sort_values("step")
        values = valid[target.metric] if target else pd.Series(dtype=float)
        hit = valid[[target.reached(float(v)) for v in values]] if target else valid[:0]
        seconds = float(train["time_s"].iloc[-1]) if len(train) else math.nan
        steps = int(train["step"].iloc[-1]) if len(train) else 0
        rows.append(
            {
                "run_dir": run_dir,
                "optimizer": run["optimizer"].iloc[0],
                "hparams": run["hparams"].iloc[0],
                "seed": int(run["seed"].iloc[0]),
                "status": run["status"].iloc[0],
                "final": final_value(run, target.metric if target else None),
                "iterations": float(hit["step"].iloc[0]) if len(hit) else math.inf,
                "seconds": float(hit["time_s"].iloc[0]) if len(hit) else math.inf,
                "last_step": int(valid["step"].iloc[-1]) if len(valid) else 0,
                "last_s": float(valid["time_s"].iloc[-1]) if len(valid) else 0.0,
                "steps_per_s": steps / seconds if seconds > 0 else math.nan,
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Entries:
    """The leaderboard's rows (one per task key and optimizer with evaluation runs), each
    key's target, per key the optimizers with tuning runs but no evaluation run yet, and
    the keys with no target yet, each with why (grids still running: named, never ranked)."""

    rows: pd.DataFrame
    targets: dict[tuple[str, ...], Target]
    awaiting: dict[tuple[str, ...], list[str]]
    reference: str
    unranked: dict[tuple[str, ...], str]


def entries(
    frame: pd.DataFrame, tuning_seed: int = TUNING_SEED, reference: str = REFERENCE
) -> Entries:
    """Per (task, scale, setting, optimizer) of the loaded runs: the evaluation seeds'
    aggregates; one clear error when no task has a target yet."""
    rows, targets, awaiting, unranked = [], {}, {}, {}
    for key, group in frame.groupby(GROUP_KEYS, sort=True):
        judged = judged_on(group)
        metric, higher = judged.metric, judged.higher_is_better
        evaluation = group[group["seed"] != tuning_seed]
        base = per_run(
            evaluation[evaluation["optimizer"] == reference], Target(metric, higher, math.nan)
        )
        if base.empty or not np.isfinite(base["final"]).any():
            unranked[key] = (
                f"no finished evaluation run (seed != {tuning_seed}) of the "
                f"reference optimizer {reference!r} sets the target; run it, or pass --reference"
            )
            continue
        target = Target(metric, higher, float(np.nanmedian(base["final"])))
        targets[key] = target
        tuned_only = set(group["optimizer"]) - set(evaluation["optimizer"])
        awaiting[key] = sorted(tuned_only)
        runs = per_run(evaluation, target)
        for optimizer, own in runs.groupby("optimizer", sort=True):
            if own["hparams"].nunique() > 1:
                raise UserError(
                    f"{'/'.join(key)}: the evaluation seeds of {optimizer} ran at "
                    f"{own['hparams'].nunique()} settings; run them at its tuned point only"
                )
            tuning = group[(group["optimizer"] == optimizer) & (group["seed"] == tuning_seed)]
            identity = dict(zip(GROUP_KEYS, key, strict=True))
            rows.append(identity | _aggregate(optimizer, own, tuning))
    if not targets:
        key, why = next(iter(unranked.items()))
        raise UserError(f"{'/'.join(key)}: {why}")
    return Entries(pd.DataFrame(rows), targets, awaiting, reference, unranked)


def _aggregate(optimizer: str, runs: pd.DataFrame, tuning: pd.DataFrame) -> dict[str, Any]:
    finals = band(runs["final"])
    return {
        "optimizer": optimizer,
        "hparams": runs["hparams"].iloc[0],
        "settings_tried": int(tuning["hparams"].nunique()),
        # "largest"/"smallest" when the chosen lr is that end of the lrs tuning tried
        "lr_edge": _lr_edge(runs["hparams"].iloc[0], tuning),
        "seeds": ",".join(str(s) for s in sorted(runs["seed"])),
        "n": len(runs),
        "reached": int(np.isfinite(runs["iterations"]).sum()),
        # inf where more than half the seeds never reached the target
        "iterations": float(np.median(runs["iterations"])),
        "seconds": float(np.median(runs["seconds"])),
        "bound_iterations": int(runs["last_step"].max()),
        "bound_seconds": float(runs["last_s"].max()),
        "final_median": finals.median,
        "final_min": finals.low,
        "final_max": finals.high,
        "not_completed": int((runs["status"] != "completed").sum()),
        "steps_per_s": float(runs["steps_per_s"].median()),
    }


def _lr_edge(chosen: str, tuning: pd.DataFrame) -> str:
    lr_column = HPARAM_PREFIX + "lr"
    if lr_column not in tuning:
        return ""
    lrs = tuning.drop_duplicates("hparams").set_index("hparams")[lr_column].dropna()
    return lr_edge(float(lrs[chosen]), lrs.astype(float)) if chosen in lrs else ""


def read_measured(path: Path, remake: str) -> tuple[dict[str, Any], str]:
    """``(its tasks, how it was measured)`` from a measurement file that scripts write as
    ``{"tasks": {task: {optimizer: ...}}, "measured": how}``: measure_peers.py's overhead
    (state bytes, host syncs) or bench_training.py's speed (steps/s). ``remake``: the
    command that writes it again."""
    try:
        data = json.loads(path.read_text())
        return data["tasks"], data["measured"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserError(f"cannot read {path} ({error!r}); regenerate it with {remake}") from error


def with_measured_speed(rows: pd.DataFrame, speed: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Seconds to target (and their bounds) and steps/s from the benchmark's rates."""
    rates = []
    for _, row in rows.iterrows():
        rate = speed.get(row["task"], {}).get(row["optimizer"])
        if not rate:
            raise UserError(
                f"the speed file has no rate for {row['optimizer']} on {row['task']}; "
                "rerun `make peers-speed` with that task (or leave --speed out)"
            )
        rates.append(float(rate))
    rate = pd.Series(rates, index=rows.index)
    return rows.assign(
        seconds=rows["iterations"] / rate,
        bound_seconds=rows["bound_iterations"] / rate,
        steps_per_s=rate,
    )


def time_table(rows: pd.DataFrame, measure: str) -> pd.DataFrame:
    """(task x optimizer) medians of time to target in ``measure`` (inf: not reached)."""
    keyed = rows.assign(case=rows["task"] + "/" + rows["scale"] + "/" + rows["setting"])
    return keyed.pivot(index="case", columns="optimizer", values=measure)


def write_leaderboard(
    paths: Iterable[str | Path],
    out: Path,
    overhead: Path | None = None,
    tuning_seed: int = TUNING_SEED,
    reference: str = REFERENCE,
    r_max: float = R_MAX,
    speed: Path | None = None,
    probe_runs: Path | None = None,
) -> list[Path]:
    """results/leaderboard.md and, beside it, the profiles plot (png + svg); with
    ``probe_runs`` (``make peers-bracket-<task>``), a tuned lr says what the lrs probed
    beside it outside its grid did."""
    frame = load_runs(paths)
    found = entries(frame, tuning_seed, reference)
    rows = found.rows
    notes = probe_notes(frame, load_probes(probe_runs, frame))
    measured = read_measured(overhead, "`make peers-overhead`")[0] if overhead else {}
    if speed is None:
        clock = (
            "the runs' own clocks: training wall time, evaluations included, on a machine "
            "the grid's runs shared (see the runs' records for its load)"
        )
    else:
        rates, how = read_measured(speed, "`make peers-speed`")
        rows = with_measured_speed(rows, rates)
        clock = (
            f"one interleaved benchmark (`{speed.name}`: {how}); seconds to target = "
            "iterations to target / steps/s (training only, evaluations left out)"
        )
    measures = {"iterations": "iterations", "seconds": "seconds"}
    tables = {m: ratios(time_table(rows, column)) for m, column in measures.items()}
    plot = out.parent / "peers" / "profiles"
    written = plot_profiles(tables, plot, r_max)
    score = pd.DataFrame({m: scores(t, r_max) for m, t in tables.items()})
    score = score.sort_values("seconds", ascending=False).reset_index(names="optimizer")
    lines = [
        "# Leaderboard: YellowFin and its peers",
        "",
        "Generated by `make leaderboard` (`python -m yfbench.analysis leaderboard`); do not edit.",
        "",
        f"- Evaluation seeds only: the tuning seed ({tuning_seed}) chose each optimizer's "
        "setting and is left out. 'settings tried' is how many settings the tuning seed ran "
        "(1: used at its published defaults, no tuning); 'chose the largest (smallest) lr "
        "tried': the grid did not bracket the best lr. `make peers-bracket-<task>` probes, on "
        "the tuning seed, one lr beyond such an edge and the half-decade lrs beside a choice "
        "whose grid steps by a decade there (Adam's, momentum SGD's); where a probe ran, the "
        "cell says whether it ended lower or higher by the tuning rule, by more than the "
        "chosen point's seed-to-seed spread ('under-rated': the number below is pessimistic; "
        "where the probe also ran on the evaluation seeds, their median final metric "
        "follows), or within it ([peers/bracket.md](peers/bracket.md)).",
        f"- Target per task: the median final validation metric of `{reference}`; time to "
        "target is read at the evaluations; a median over seeds that is infinite (most "
        "seeds never reached it) is shown as a bound '> T' (the longest run).",
        f"- Wall-clock seconds and steps/s (the optimizer's own cost and host syncs "
        f"included) come from {clock}. State bytes and host syncs per step are measured "
        "(scripts/measure_peers.py): tensor bytes in the optimizer's state_dict per model "
        "parameter, and tensor-to-host reads (`.item()`, `float()`, `bool()`, ...) per step.",
        f"- Performance profiles (Dolan & Moré), r_max = {r_max:g} (AlgoPerf's): score = "
        "area under the profile over [1, r_max] / (r_max - 1); 1 = fastest on every task.",
        "",
        f"![performance profiles]({written[0].relative_to(out.parent)})",
        "",
        "## Profile scores",
        "",
        markdown_table(score.round(3), ["optimizer", "score (iterations)", "score (wall seconds)"]),
    ]
    for key, group in rows.groupby(GROUP_KEYS, sort=True):
        task_overhead = measured.get(key[0], {})
        lines += [f"## {' / '.join(key)}", "", f"Target: {found.targets[key]}.", ""]
        if found.awaiting[key]:
            waiting = ", ".join(found.awaiting[key])
            lines += [f"Not evaluated yet (tuning seed only, not ranked): {waiting}.", ""]
        table = pd.DataFrame([_cells(row, task_overhead, notes) for _, row in group.iterrows()])
        lines.append(markdown_table(table))
    for key, why in found.unranked.items():
        lines += [f"## {' / '.join(key)}", "", f"Not ranked yet ({why}).", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return [out, *written]


def run_findings(
    found: Iterable[Path],
    label: Callable[[str], str],
    load: Callable[[Path], pd.DataFrame] = load_folder,
) -> Findings:
    """One sentence per task and scale of the peers' runs (``found``: their
    ``<task>/<scale>`` folders; ``label`` names a task): the target, who reaches it first,
    the best final metric, and YellowFin's place; a grid that cannot be ranked yet says why.
    The summary line gets YellowFin's places; a last line, the profile scores over every
    ranked task. ``load`` reads one folder."""
    lines, places, ranked_rows = [], [], []
    for runs in found:
        where = f"{label(runs.parent.name)} ({runs.name})"
        try:
            board = entries(load(runs))
        except UserError as error:
            lines.append(f"Against today's optimizers, {where}: no leaderboard yet ({error}).")
            continue
        ranked_rows.append(board.rows)
        for key, group in board.rows.groupby(GROUP_KEYS, sort=True):
            lines.append(_finding(group, board, key, where))
            ranked = _ranked(group, board.targets[key])
            if "yellowfin" in set(ranked["optimizer"]):
                metric = board.targets[key].metric
                places.append(f"{_place(ranked)} on {where} by final {metric}")
    if ranked_rows:
        lines.append(_profile_finding(pd.concat(ranked_rows)))
    lead = [f"against today's optimizers, YellowFin ranks {', '.join(places)}"] if places else []
    return Findings(lead, lines)


def _profile_finding(rows: pd.DataFrame) -> str:
    """The iteration profiles' scores over every ranked task (the wall-second ones need the
    measured speed file: results/leaderboard.md has them)."""
    score = scores(ratios(time_table(rows, "iterations"))).sort_index()
    score = score.sort_values(ascending=False, kind="stable")  # ties by name
    tasks = rows.drop_duplicates(GROUP_KEYS)
    best = ", ".join(f"{optimizer_name(o)} {v:.3f}" for o, v in score.head(3).items())
    settings = f"{len(tasks)} ranked task setting" + ("s" if len(tasks) > 1 else "")
    line = (
        f"Performance profiles over {settings} (time to target in iterations, "
        f"r_max = {R_MAX:g}; 1 = fastest on every one): highest {best}"
    )
    if "yellowfin" in score:
        higher = int((score > score["yellowfin"]).sum())
        line += f"; YellowFin {score['yellowfin']:.3f} ({higher} of {len(score)} score higher)"
    return line + " (wall-second scores: results/leaderboard.md)."


def _ranked(group: pd.DataFrame, target: Target) -> pd.DataFrame:
    """The group's optimizers, best final metric first (a run with none last)."""
    sign = -1.0 if target.higher_is_better else 1.0
    return group.assign(order=sign * group["final_median"]).sort_values(
        ["order", "optimizer"], na_position="last"
    )


def _place(ranked: pd.DataFrame) -> str:
    """YellowFin's place among ``ranked``: "12th of 17"."""
    place = list(ranked["optimizer"]).index("yellowfin") + 1
    return f"{ordinal(place, len(ranked))} of {len(ranked)}"


def _finding(group: pd.DataFrame, board: Entries, key: tuple[str, ...], where: str) -> str:
    target, awaiting = board.targets[key], board.awaiting[key]
    ranked = _ranked(group, target)
    waiting = f" ({len(awaiting)} more not evaluated yet)" if awaiting else ""
    parts = [
        f"Against today's optimizers, {where}, {len(group)} optimizers{waiting} on their "
        f"evaluation seeds, target {target} (the median of {board.reference})"
    ]
    soonest = group["iterations"].min()
    if math.isfinite(soonest):
        # Read on the evaluation grid, so ties are common: name every optimizer that ties.
        first = group[group["iterations"] == soonest].sort_values("optimizer")
        names = ", ".join(
            f"{optimizer_name(row['optimizer'])} ({row['reached']}/{row['n']} seeds)"
            for _, row in first.iterrows()
        )
        parts.append(f"first to reach it, at a median {soonest:.0f} iterations: {names}")
    best = ranked.iloc[0]
    parts.append(
        f"best final {target.metric}: {optimizer_name(best['optimizer'])} "
        f"{best['final_median']:.4g}"
    )
    if "yellowfin" in set(group["optimizer"]):
        own = ranked.set_index("optimizer").loc["yellowfin"]
        parts.append(
            f"**YellowFin {_place(ranked)}** on final "
            f"{target.metric} ({_final(own)}), target reached on {own['reached']}/{own['n']} "
            f"seeds ({_time(own['iterations'], own['bound_iterations'], '{:.0f}')} iterations)"
        )
    elif "yellowfin" in awaiting:
        parts.append("YellowFin not evaluated yet")
    stopped = [
        f"{optimizer_name(row['optimizer'])} {row['not_completed']}/{row['n']}"
        for _, row in group.iterrows()
        if row["not_completed"]
    ]
    if stopped:
        parts.append("runs that diverged or failed: " + ", ".join(stopped))
    return "; ".join(parts) + "."


def _tuning_cell(tried: int, edge: str, probed: str | None) -> str:
    if tried < 2:
        return "no"
    said = [f"{tried} settings"]
    if edge:
        said.append(f"chose the {edge} lr tried")
    if probed:
        said.append(probed)
    return f"yes ({'; '.join(said)})"


def _cells(
    row: pd.Series, overhead: dict[str, dict[str, float]], notes: dict[tuple[str, ...], str]
) -> dict[str, str]:
    measured = overhead.get(row["optimizer"], {})
    tried = int(row["settings_tried"])
    probed = notes.get((*row[GROUP_KEYS], row["optimizer"]))
    return {
        "optimizer": row["optimizer"],
        "tuning": _tuning_cell(tried, row["lr_edge"], probed),
        "reached": f"{row['reached']}/{row['n']}",
        "iterations to target": _time(row["iterations"], row["bound_iterations"], "{:.0f}"),
        "seconds to target": _time(row["seconds"], row["bound_seconds"], "{:.0f}"),
        "final metric (median [min, max])": _final(row),
        "steps/s": f"{row['steps_per_s']:.2f}",
        "state B/param": _number(measured.get("state_bytes_per_param"), "{:.1f}"),
        "host syncs/step": _number(measured.get("host_syncs_per_step"), "{:.1f}"),
        "setting": row["hparams"],
    }


def _time(value: float, bound: float, form: str) -> str:
    return form.format(value) if math.isfinite(value) else f"> {form.format(bound)}"


def _final(row: pd.Series) -> str:
    if not math.isfinite(row["final_median"]):
        return f"none ({row['not_completed']} runs not completed)"
    text = f"{row['final_median']:.4g} [{row['final_min']:.4g}, {row['final_max']:.4g}]"
    return text + (f"; {row['not_completed']} not completed" if row["not_completed"] else "")


def _number(value: float | None, form: str) -> str:
    return DASH if value is None else form.format(value)
