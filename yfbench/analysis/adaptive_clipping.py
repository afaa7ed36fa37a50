"""Adaptive gradient clipping on a model with exploding gradients: loss and clip events.

Reads ``experiment=clipping_*`` runs: YellowFin with its adaptive clip, YellowFin without
it, and momentum SGD with a global-norm clip (``task.grad_clip_norm``) over a small
(lr, clip) grid, hand-tuned here by the speedup rule (:func:`yfbench.analysis.speedup.tuned`)
on the grid's tuning seeds (:mod:`yfbench.analysis.protocol`: the seeds every (lr, clip)
point has, seed 1 under the two-stage protocol); the evaluation seeds are then run at it.

Every number of the table (final losses, clip events, gradient-norm ratios, the paired
differences) is over evaluation seeds only, for YellowFin too, so that no method is
credited with the seed its tuning chose; a method with no evaluation seed yet shows its
tuning seeds, labelled provisional, as the speedup report does.

Clip events per run: YellowFin's own counters (``exploding_clips``: step 9 scaled the
update; ``protect_clips``: step 2 scaled the statistics' gradient), momentum SGD's the
iterations whose pre-clip gradient norm (``grad_norm``, logged by the trainer where the
task clips) exceeds the clip. The gradient-norm ratio (largest over median logged norm)
says whether gradients spiked at all: YellowFin logs ‖g‖² after its stat protection.

The methods differ in ``task.grad_clip_norm``, which is part of a run's setting; the
runs must agree on everything else (checked), and comparisons across the clip settings
are made here on purpose, by name.

``python -m yfbench.analysis.adaptive_clipping RUN_DIRS --out DIR``;
``python -m yfbench.analysis.adaptive_clipping tuned RUN_DIRS`` prints the overrides of the tuned
momentum-SGD point, ``grid_point=<name> task.grad_clip_norm=<clip>`` (for the second stage).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
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
from yfbench.analysis.plots import PALETTE, STYLE, save_figure
from yfbench.analysis.protocol import (
    band,
    evaluation_plan,
    own_plan,
    seed_list,
    tuning_seeds,
)
from yfbench.analysis.runs import flatten, load_runs
from yfbench.analysis.speedup import GridPoint, grid_points, resolve_window, tuned
from yfbench.analysis.tables import DASH, markdown_table
from yfbench.errors import UserError
from yfbench.run_contract import RUN_CONFIG_FILE, read_json_object

# The fix a damaged run record calls for.
FIX_RUN = "re-run the run, or leave its directory out of the inputs"

CLIP_KEY = "task.grad_clip_norm"
SGD = "momentum_sgd"


def _setting(run_dir: str) -> dict[str, str]:
    config = read_json_object(Path(run_dir) / RUN_CONFIG_FILE, FIX_RUN)["config"]
    return flatten({k: v for k, v in config.items() if k not in ("optimizer", "seed")})


def check_one_setting(frame: pd.DataFrame) -> None:
    """The runs may differ in ``task.grad_clip_norm`` only (besides optimizer and seed)."""
    settings = {d: _setting(d) for d in frame["run_dir"].unique()}
    rest = {
        json.dumps({k: v for k, v in s.items() if k != CLIP_KEY}, sort_keys=True): d
        for d, s in settings.items()
    }
    if len(rest) > 1:
        first, second = list(settings)[0], list(rest.values())[-1]
        keys = sorted(
            k
            for k in settings[first].keys() | settings[second].keys()
            if k != CLIP_KEY and settings[first].get(k) != settings[second].get(k)
        )
        raise UserError(
            f"{first} and {second} differ in {', '.join(keys)}, not only in {CLIP_KEY}: "
            "pass the runs of one clipping experiment"
        )


def methods(frame: pd.DataFrame, window: int) -> tuple[dict[str, GridPoint], tuple[int, ...]]:
    """Label -> grid point (YellowFin with/without the adaptive clip, tuned momentum SGD),
    and the tuning seeds that chose momentum SGD's point."""
    found: dict[str, GridPoint] = {}
    candidates = []
    for clip, group in frame.groupby(frame["run_dir"].map(lambda d: _setting(d).get(CLIP_KEY))):
        for point in grid_points(group, window):
            if point.optimizer == "yellowfin" and clip in ("None", None):
                on = point.settings.get("adaptive_clip", "True") == "True"
                found["YellowFin, adaptive clip" if on else "YellowFin, no clip"] = point
            elif point.optimizer == SGD:
                candidates.append((clip, point))
    best = tuned_sgd(candidates)
    if best is not None:
        clip, point, note = best
        how = "; ".join(filter(None, ["hand-tuned", note]))
        found[f"momentum SGD, lr={point.settings['lr']}, clip {clip} ({how})"] = point
    return found, tuning_seeds(p for _, p in candidates)


def tuned_sgd(candidates: list[tuple[str, GridPoint]]) -> tuple[str, GridPoint, str] | None:
    """The (clip, point, tuning note) the speedup rule tunes over the whole (lr, clip)
    grid, shown only the grid's tuning seeds: an evaluation seed (its loss, or a
    divergence) can never change the choice it is then used to evaluate."""
    tuning = tuning_seeds(p for _, p in candidates)
    shown = [on_seeds(p, tuning) if tuning else p for _, p in candidates]
    best, note = tuned(shown, SGD)
    chosen = (c for c, p in zip(candidates, shown, strict=True) if p is best)
    return next(((clip, point, note) for clip, point in chosen), None)


def clip_events(group: pd.DataFrame, point: GridPoint, clip: float | None) -> pd.DataFrame:
    """Per seed: the cumulative clip events at every logged train iteration."""
    columns = {}
    for seed, run_dir in point.run_dirs.items():
        run = group[(group["run_dir"] == run_dir) & (group["split"] == "train")].sort_values("step")
        if point.optimizer.startswith("yellowfin") and "exploding_clips" in run:
            events = run["exploding_clips"]
        elif clip is not None and "grad_norm" in run:
            events = (run["grad_norm"] > clip).cumsum()
        else:
            continue
        columns[seed] = pd.Series(events.to_numpy(dtype=float), index=run["step"].to_numpy())
    return pd.DataFrame(columns)


def spikiness(group: pd.DataFrame, point: GridPoint) -> float:
    """Median over seeds of max / median logged gradient norm."""
    ratios = []
    for run_dir in point.run_dirs.values():
        run = group[(group["run_dir"] == run_dir) & (group["split"] == "train")]
        if "grad_norm" in run and run["grad_norm"].notna().any():
            norms = run["grad_norm"]
        elif "grad_norm_sq" in run:
            norms = np.sqrt(run["grad_norm_sq"])
        else:
            continue
        norms = norms[np.isfinite(norms)]
        if len(norms) and norms.median() > 0:
            ratios.append(float(norms.max() / norms.median()))
    return float(np.median(ratios)) if ratios else math.nan


def _clip_of(point: GridPoint) -> float | None:
    clip = _setting(next(iter(point.run_dirs.values()))).get(CLIP_KEY)
    return None if clip in (None, "None") else float(clip)


def on_seeds(point: GridPoint, seeds: Iterable[int]) -> GridPoint:
    """``point`` restricted to ``seeds``: the tuning seeds for the choice, a plan's seeds
    for every number of the table."""
    keep = set(seeds)
    return GridPoint(
        point.optimizer,
        point.hparams,
        point.settings,
        {s: d for s, d in point.run_dirs.items() if s in keep},
        {s: st for s, st in point.statuses.items() if s in keep},
        {s: c for s, c in point.curves.items() if s in keep},
    )


def summary(
    frame: pd.DataFrame, window: int | None = None
) -> tuple[pd.DataFrame, dict[str, GridPoint], tuple[int, ...]]:
    """One row per method over its evaluation seeds; the methods' points (all seeds) and
    the tuning seeds."""
    check_one_setting(frame)
    size = resolve_window(frame, window)
    found, tuning = methods(frame, size)
    rows = []
    for label, full in found.items():
        plan = own_plan(full, tuning)
        point = on_seeds(full, plan.used)
        events = clip_events(frame, point, _clip_of(point))
        finals = band(final_loss(c) for c in point.curves.values())
        rows.append(
            {
                "method": label,
                "hparams": point.hparams,
                "seeds": len(point.curves),
                "seeds_used": plan.label,
                "provisional": plan.provisional,
                "diverged": list(point.statuses.values()).count("diverged"),
                "final_median": finals.median,
                "final_low": finals.low,
                "final_high": finals.high,
                "clip_events": float(events.iloc[-1].median()) if not events.empty else math.nan,
                "grad_norm_max_over_median": spikiness(frame, point),
            }
        )
    return pd.DataFrame(rows), found, tuning


def display(table: pd.DataFrame) -> pd.DataFrame:
    rows = [
        [
            row["method"],
            row["seeds_used"],
            row["diverged"],
            f"{row['final_median']:.4f} ({row['final_low']:.4f}–{row['final_high']:.4f})"
            if math.isfinite(row["final_median"])
            else DASH,
            f"{row['clip_events']:.0f}" if math.isfinite(row["clip_events"]) else DASH,
            f"{row['grad_norm_max_over_median']:.1f}"
            if math.isfinite(row["grad_norm_max_over_median"])
            else DASH,
        ]
        for _, row in table.iterrows()
    ]
    headers = [
        "method",
        "seeds",
        "diverged",
        "final smoothed loss, median (min–max)",
        "clip events per run (median)",
        "gradient norm: max / median",
    ]
    return pd.DataFrame(rows, columns=headers)


def plot(
    frame: pd.DataFrame,
    found: dict[str, GridPoint],
    tuning: tuple[int, ...],
    window: int,
    stem: Path,
    title: str,
) -> list[Path]:
    """Loss band and clip events of each method over its evaluation seeds (the legend
    names them)."""
    with plt.rc_context(STYLE):
        fig, (loss_ax, clip_ax) = plt.subplots(1, 2, figsize=(12.0, 4.2))
        for index, (name, full) in enumerate(found.items()):
            plan = own_plan(full, tuning)
            point, label = on_seeds(full, plan.used), f"{name}, {plan.label}"
            color = PALETTE[index % len(PALETTE)]
            band = seed_band(point.curves, thin=True)
            loss_ax.plot(band.index, band["median"], color=color, label=label)
            loss_ax.fill_between(band.index, band["low"], band["high"], color=color, alpha=0.15)
            events = clip_events(frame, point, _clip_of(point))
            if not events.empty:
                clip_ax.plot(events.index, events.median(axis=1), color=color, label=label)
        loss_ax.set_yscale("log")
        loss_ax.set_xlabel("iteration")
        loss_ax.set_ylabel(f"training loss ({window}-it. mean; median, min–max)")
        clip_ax.set_xlabel("iteration")
        clip_ax.set_ylabel("clip events so far (median over seeds)")
        # Below both axes: the loss spikes and the clip counts fill their axes' corners.
        handles, labels = loss_ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2)
        fig.suptitle(f"{title}: adaptive clipping on a model with exploding gradients")
        return save_figure(fig, stem)


def write_outputs(run_dirs: list[Path], out: Path, window: int | None = None) -> list[Path]:
    frame = load_runs(run_dirs)
    table, found, tuning = summary(frame, window)
    if table.empty:
        raise UserError(f"no clipping-experiment runs under {', '.join(map(str, run_dirs))}")
    size = resolve_window(frame, window)
    out.mkdir(parents=True, exist_ok=True)
    task, scale = frame["task"].iloc[0], frame["scale"].iloc[0]
    stem = out / f"{task}_{scale}_clipping"
    written = plot(frame, found, tuning, size, stem, f"{task} ({scale})")
    csv = out / "clipping.csv"
    atomic.write_text(csv, table.to_csv(index=False))
    pairs = [
        f"- YellowFin (adaptive clip) − {other}: {_paired(diff)}"
        for other, diff in differences(found, tuning)
    ]
    lines = [
        "# Adaptive clipping on a model with exploding gradients",
        "",
        "Generated by `python -m yfbench.analysis.adaptive_clipping` from the run directories. "
        "Setup: yfbench.tasks.pixel_lstm (binarized CIFAR-10 grayscale pixels, not the "
        "authors' MNIST). Clip events: YellowFin's exploding-gradient clips (step 9), "
        "momentum SGD's iterations with a pre-clip gradient norm above its clip.",
        "",
        markdown_table(display(table)),
        "Every column is over evaluation seeds: the seeds other than the tuning seeds "
        f"({seed_list(tuning) or 'none'}) that chose momentum SGD's (lr, clip); a method "
        "with none yet shows its tuning seeds, labelled provisional.",
        "",
        "Paired smoothed-loss differences at the shortest run length (mean over evaluation "
        "seeds both ran, 95% t interval):",
        "",
        *pairs,
        "",
    ]
    return [cli.write_page(out / "clipping.md", lines, written), csv, *written]


def findings(frame: pd.DataFrame, label: Callable[[str], str] = str) -> list[str]:
    """The report's "What we found" sentence: what YellowFin's adaptive clip changes (its
    paired difference against YellowFin without it, and the gradient spikes each shows),
    then how hand-tuned momentum SGD and its clip compare, each with its interval."""
    table, found, tuning = summary(frame)
    adaptive = _with_adaptive_clip(found)
    if adaptive is None:
        return []  # nothing to say before YellowFin's runs land (the grid runs first)
    rows = table.set_index("method")
    task, scale = frame["task"].iloc[0], frame["scale"].iloc[0]
    sentences = []
    for other, diff in differences(found, tuning):
        against = rows.loc[other]
        if other.startswith("YellowFin"):
            sentences.append(
                f"YellowFin's adaptive clip {_EFFECT[verdict(diff)]} its final smoothed "
                f"training loss ({_paired(diff)}, with minus without; gradient norm "
                f"max/median {_spikes(rows.loc[adaptive])} with it, "
                f"{_spikes(against)} without)"
            )
        else:
            events = against["clip_events"]
            clips = (
                "logged no gradient norms to count clips by"
                if not math.isfinite(events)
                else "never reaches its clip"
                if events == 0
                else f"clips {events:.0f} times a run"
            )
            sentences.append(
                f"{other} {clips} (gradient norm max/median {_spikes(against)}); YellowFin "
                f"with its adaptive clip ends {_AGAINST[verdict(diff)]} ({_paired(diff)})"
            )
    finals = "; ".join(f"{method.split(' (')[0]} {_final(row)}" for method, row in rows.iterrows())
    return [
        f"Adaptive clipping, {label(task)} ({scale}): "
        + "; ".join(sentences)
        + f". Final smoothed training loss, median: {finals}."
    ]


_EFFECT = {
    "lower": "lowers",
    "higher": "raises",
    "tie": "does not change (a tie)",
    "too few seeds": "changes, on too few seeds to tell,",
}
_AGAINST = {
    "lower": "lower",
    "higher": "higher",
    "tie": "level with it (a tie)",
    "too few seeds": "on too few seeds to tell",
}


def _with_adaptive_clip(found: dict[str, GridPoint]) -> str | None:
    """The method label of YellowFin with its adaptive clip, None before its runs land."""
    return next((label for label in found if label.endswith("adaptive clip")), None)


def _paired(diff: dict[str, object]) -> str:
    """The difference and its seeds; ``seeds_used`` already says when they are provisional."""
    return f"{difference_text(diff, say_provisional=False)}, {diff['seeds_used']}"


def _final(row: pd.Series) -> str:
    """The median final loss, and how many seeds diverged (they have none)."""
    final = f"{row['final_median']:.4f}" if math.isfinite(row["final_median"]) else DASH
    return final + (f" ({row['diverged']} diverged)" if row["diverged"] else "")


def _spikes(row: pd.Series) -> str:
    ratio = row["grad_norm_max_over_median"]
    return f"{ratio:.0f}x" if math.isfinite(ratio) else "not logged"


def run_findings(found: list[tuple[Path, Path]], label: Callable[[str], str]) -> Findings:
    """:func:`findings` of each task's clipping runs (the speedup grids unused); no clause
    for the summary line."""
    return Findings([], [line for runs, _ in found for line in findings(load_runs([runs]), label)])


def differences(
    found: dict[str, GridPoint], tuning: tuple[int, ...]
) -> list[tuple[str, dict[str, object]]]:
    """(other method, paired difference): YellowFin with its adaptive clip minus each other
    method, on their evaluation seeds (:func:`paired_budget_difference`)."""
    adaptive = _with_adaptive_clip(found)
    if adaptive is None:
        return []
    rows = []
    for other, point in found.items():
        if other != adaptive:
            plan = evaluation_plan(found[adaptive], point, tuning)
            rows.append((other, paired_budget_difference(found[adaptive], point, plan)))
    return rows


def tuned_grid_point(run_dirs: list[Path], window: int | None = None) -> str:
    frame = load_runs(run_dirs)
    size = resolve_window(frame, window)
    candidates = []
    for clip, group in frame.groupby(frame["run_dir"].map(lambda d: _setting(d).get(CLIP_KEY))):
        candidates += [(clip, p) for p in grid_points(group, size) if p.optimizer == SGD]
    best = tuned_sgd(candidates)
    if best is None:
        raise UserError("no momentum-SGD run with a smoothed loss on the tuning seeds to tune on")
    runs = frame[frame["run_dir"].isin(best[1].run_dirs.values())]
    # The clip exactly as recorded (1.0, not 1), so the new seeds' configs match seed 1's.
    config = read_json_object(Path(runs["run_dir"].iloc[0]) / RUN_CONFIG_FILE, FIX_RUN)["config"]
    clip = config["task"]["grad_clip_norm"]
    return f"grid_point={runs['grid_point'].dropna().iloc[0]} {CLIP_KEY}={clip!r}"


def main(argv: list[str] | None = None) -> int:
    commands = {"tuned": lambda args: tuned_grid_point([Path(a) for a in args])}
    return cli.run("yfbench.analysis.adaptive_clipping", write_outputs, argv, subcommands=commands)


if __name__ == "__main__":
    sys.exit(main())
