"""Speedup over a tuned baseline, as observed: per seed, in two named conventions.

The definition is written once, for readers, in :data:`DEFINITION` (printed at the top of
every generated report, ``results/README.md``); the READMEs point to it. This docstring
adds the exact rules the code implements (indices, ties, bounds).

Smoothing. Iterations count from 1: the loss logged at ``step`` t is the loss of the t-th
update. The smoothed loss at t is the mean of the logged training losses at iterations
t-W+1..t and exists only for t >= W (W = ``analysis.window``), so curves logged every k
steps use their logged points. A window holding a non-finite loss has no smoothed value.
For a curve logged every step this is the authors' 'valid' running mean
``(cumsum[W:] - cumsum[:-W]) / W``: its element i (from 0) covers iterations i+1..i+W, so
it is our smoothed loss at iteration t = i + W.

Targets and times. Tuned = the grid point (optimizer node minus ``name``) with the lowest
seed-mean of each seed's minimum smoothed loss, among grid points whose runs all
completed (among all, with a note, if none did); a tie goes to the point whose
hyperparameter text sorts first. Seeds are paired by seed number. For each pair, the
target L* is the baseline's lowest smoothed loss and T_baseline the first iteration where
it is reached (the first index on ties, as ``argmin``). T_method is the first iteration
where the method's smoothed loss reaches L*, in two conventions:

- ``paper``: the authors' ``argmin(base_s) / argmax(method_s < min(base_s))`` on indices
  into the smoothed series, i.e. strict ``<`` and (T_baseline - W) / (T_method - W) in
  iterations (exactly, not up to one, by the index-to-iteration map above; for curves
  logged every k steps the same formula on logged iterations). Use it next to any paper
  number. T_method = W gives infinity; T_baseline = W gives 0.
- ``tt``: T_baseline / T_method in iterations, reached at ``<=``.

A seed whose method never reaches L* is a bound, never a zero: its speedup is below the
ratio with T_end, the method run's last logged iteration, in place of T_method (no
bound, i.e. infinity, in the paper convention when T_end <= W). It also gets a number,
the *reverse measure*: with L_m the method's own lowest smoothed loss, first reached at
T_m*, and T_b' the baseline's first iteration at L_m (same convention), the ratio
T_b'/T_m* (paper: (T_b' - W)/(T_m* - W)): how much faster the baseline reaches the
best the method ever did ("0.67x" rather than only "< 0.91x").

A paper-convention value is *not meaningful* when its denominator T - W is below
``NOT_MEANINGFUL`` x W: the ratio then divides by a sliver of the window (WSJ's "30.16x"
at the 25% rung had T - W = 8 iterations for W = 50).

Aggregate, per convention: the median over the seeds that reached the target, with
"k/n reached"; a range (min-max over the reaching seeds) only when k >= 3; the
largest bound of the seeds that did not reach it (every such seed is below it) and the
median reverse measure of those seeds.

Seeds. Only evaluation seeds are timed (:mod:`yfbench.analysis.protocol`): the seeds
both tuned points ran minus the tuning seeds that chose them; with none, the tuning
seeds, labelled provisional.

Speedup curve. The single end-of-run target is censored by the run length, so each
comparison is also timed on a ladder of targets: rung f (default 25/50/75/100%) is the
lowest smoothed loss the tuned baseline reached within the first f of its run, reached
first at T_baseline(f). Rung 100% is the headline target above.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from yfbench.analysis.protocol import SeedPlan, evaluation_plan, tuning_seeds
from yfbench.analysis.runs import HPARAM_PREFIX, NO_SUMMARY, format_value
from yfbench.errors import UserError
from yfbench.run_contract import RUN_CONFIG_FILE

log = logging.getLogger("yfbench.analysis")
COMPLETED = "completed"
DIVERGED = "diverged"
# How a grid of one point is labelled in the tables.
SINGLE_SETTING = "single setting"
# Statuses of runs that may still change: never compared.
IN_PROGRESS = ("interrupted", NO_SUMMARY)
# Column suffix -> display name of the two conventions, paper convention first.
CONVENTIONS = {"paper": "paper", "tt": "T/T"}
DEFAULT_LADDER = (0.25, 0.5, 0.75, 1.0)
HEADLINE = 1.0
# Fewer reaching seeds than this get no range: two values say little about spread.
MIN_SEEDS_FOR_RANGE = 3
# Slack for fraction * last_step, so that e.g. 0.29 * 100 still admits iteration 29.
CUT_SLACK = 1e-9
GROUP_KEYS = ["task", "scale", "setting"]
# A paper-convention ratio whose denominator T - W is below this share of W divides by a
# sliver of the smoothing window: it is shown, marked not meaningful.
NOT_MEANINGFUL = 0.5
# The definition of a speedup, for readers: the one text the report prints and the READMEs
# point to.
DEFINITION = f"""\
**How speedups are measured.** The training loss is smoothed with a uniform moving
average of W iterations (W is the runs' `analysis.window`, shown per table). Tuned = the
grid point with the lowest seed-mean of each seed's minimum smoothed loss over the
*tuning seeds* (the seeds every grid point has: seed 1 under the two-stage protocol),
among grid points whose runs all completed. Every reported number uses only *evaluation
seeds*, the seeds both tuned points ran minus the tuning seeds, for every optimizer,
YellowFin included, paired by seed ("2 evaluation seeds (2,3)" in the tables), so no
baseline profits from a winner's curse that untuned YellowFin cannot have. A scale with
no evaluation seed yet shows its tuning-seed numbers labelled *provisional*. Per seed,
the target L* is the baseline's lowest smoothed loss, T_baseline the first iteration it
reaches L* and T_method the first iteration the method does. Two conventions:

- **paper convention**, used for every number next to a paper number: the authors'
  plotting code, `argmin(adam_s) / argmax(method_s < min(adam_s))` on indices into the
  'valid' smoothed series, i.e. (T_baseline − W)/(T_method − W) with a strict `<`; a
  value whose T − W is below {NOT_MEANINGFUL}·W divides by a sliver of the window and is
  marked *not meaningful*;
- **T/T**: T_baseline/T_method in iterations, reached at `<=`.

A cell is the median over the seeds that reached L*, with "k/n reached"; a range (min–max
over those seeds) only when at least {MIN_SEEDS_FOR_RANGE} reached. A seed that did not
reach L* is never a zero: it has a bound (its speedup is below the ratio with T_end, its
last iteration, in place of T_method: "< 0.94x") and a number, the **reverse measure**:
the iterations the baseline needs to first reach the method's own lowest smoothed loss
over the iterations the method needed to reach it ("reverse 0.67x": the baseline gets
there in 0.67 of the method's iterations). The speedup curve repeats this for easier
targets: the baseline's best smoothed loss by 25/50/75/100% of its run. Beside each
speedup, the **fixed-budget** table gives the paired (same seed) difference of smoothed
training loss, method minus baseline, at 25/50/75/100% of the run: the mean over seeds
with a 95% Student t interval (wide with 2–3 seeds; an interval holding 0 is a tie).
"""


def smooth(steps: np.ndarray, losses: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform moving average over the last ``window`` iterations, at logged steps >= window."""
    if window < 1:
        raise UserError(f"the smoothing window must be >= 1 iteration, got {window}")
    steps = np.asarray(steps, dtype=np.int64)
    losses = np.asarray(losses, dtype=np.float64)
    if steps.size and (np.any(np.diff(steps) <= 0) or steps[0] < 1):
        raise UserError("training steps must be increasing and start at 1 or later")
    finite = np.isfinite(losses)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, losses, 0.0))])
    bad = np.concatenate([[0], np.cumsum(~finite)])
    lo = np.searchsorted(steps, steps - window + 1, side="left")
    hi = np.arange(1, steps.size + 1)
    with np.errstate(invalid="ignore"):
        mean = (sums[hi] - sums[lo]) / (hi - lo)
    mean[(bad[hi] - bad[lo]) > 0] = np.nan
    keep = steps >= window
    return steps[keep], mean[keep]


@dataclass(frozen=True)
class Curve:
    """One run's smoothed training loss and its last logged training iteration (T_end)."""

    steps: np.ndarray
    values: np.ndarray
    last_step: int

    def best(self, fraction: float = HEADLINE) -> tuple[int, float] | None:
        """(T, L): the lowest smoothed loss within the first ``fraction`` of the run and the
        first iteration it is reached (first index on ties); None if there is none."""
        keep = self.steps <= fraction * self.last_step * (1 + CUT_SLACK)
        values = self.values[keep]
        if not np.isfinite(values).any():
            return None
        index = int(np.nanargmin(values))
        return int(self.steps[keep][index]), float(values[index])

    def first_reach(self, target: float, strict: bool) -> int | None:
        """First iteration whose smoothed loss is below (``strict``) or at ``target``."""
        with np.errstate(invalid="ignore"):
            hit = self.values < target if strict else self.values <= target
        return int(self.steps[np.argmax(hit)]) if hit.any() else None


def ratio(convention: str, t_baseline: int, t_method: int, window: int) -> float:
    """The speedup for these times: paper = (T_b - W)/(T_m - W), tt = T_b/T_m.

    A non-positive denominator (the method at its first smoothed point, or no smoothed
    point at all for a bound) gives infinity: no finite ratio or bound exists.
    """
    if convention == "paper":
        t_baseline, t_method = t_baseline - window, t_method - window
    return t_baseline / t_method if t_method > 0 else math.inf


def time_seed(base: Curve, method: Curve, fraction: float, window: int) -> dict[str, float] | None:
    """T_baseline, T_method, speedup and bound of one seed pair at ladder rung ``fraction``,
    in both conventions; None when the baseline has no smoothed loss by then."""
    best = base.best(fraction)
    if best is None:
        return None
    t_base, target = best
    row: dict[str, float] = {
        "fraction": fraction,
        "target_loss": target,
        "T_baseline": t_base,
        "T_end": method.last_step,
    }
    own_best = method.best()
    for convention in CONVENTIONS:
        strict = convention == "paper"
        t_method = method.first_reach(target, strict=strict)
        reached = t_method is not None
        row[f"T_method_{convention}"] = t_method if reached else math.nan
        row[f"speedup_{convention}"] = (
            ratio(convention, t_base, t_method, window) if reached else math.nan
        )
        row[f"bound_{convention}"] = (
            math.nan if reached else ratio(convention, t_base, method.last_step, window)
        )
        reverse = math.nan
        if not reached and own_best is not None:
            t_base_reverse = base.first_reach(own_best[1], strict=strict)
            if t_base_reverse is not None:
                reverse = ratio(convention, t_base_reverse, own_best[0], window)
        row[f"reverse_{convention}"] = reverse
        denominator = (t_method if reached else own_best[0] if own_best else math.nan) - window
        row[f"not_meaningful_{convention}"] = strict and denominator < NOT_MEANINGFUL * window
    return row


def aggregate(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Median over reaching seeds, k reached, min-max range (k >= 3), largest bound."""
    out: dict[str, float] = {"seeds": len(rows)}
    out["T_baseline"] = float(np.median([r["T_baseline"] for r in rows])) if rows else math.nan
    for c in CONVENTIONS:
        hits = [r for r in rows if not math.isnan(r[f"speedup_{c}"])]
        values = [r[f"speedup_{c}"] for r in hits]
        bounds = [r[f"bound_{c}"] for r in rows if math.isnan(r[f"speedup_{c}"])]
        ranged = len(values) >= MIN_SEEDS_FOR_RANGE
        out[f"reached_{c}"] = len(values)
        out[f"T_method_{c}"] = (
            float(np.median([r[f"T_method_{c}"] for r in hits])) if hits else math.nan
        )
        out[f"speedup_{c}"] = float(np.median(values)) if values else math.nan
        out[f"low_{c}"] = min(values) if ranged else math.nan
        out[f"high_{c}"] = max(values) if ranged else math.nan
        out[f"bound_{c}"] = max(bounds) if bounds else math.nan
        reverse = [r.get(f"reverse_{c}", math.nan) for r in rows if math.isnan(r[f"speedup_{c}"])]
        reverse = [v for v in reverse if not math.isnan(v)]
        out[f"reverse_{c}"] = float(np.median(reverse)) if reverse else math.nan
        out[f"not_meaningful_{c}"] = sum(bool(r.get(f"not_meaningful_{c}")) for r in rows)
    return out


@dataclass
class GridPoint:
    """One optimizer setting of one (task, scale, setting), with a smoothed curve per seed."""

    optimizer: str
    hparams: str
    settings: dict[str, str]
    run_dirs: dict[int, str] = field(default_factory=dict)
    statuses: dict[int, str] = field(default_factory=dict)
    curves: dict[int, Curve] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """Seed-mean of each seed's lowest smoothed loss (NaN if some seed has none)."""
        return self.score_on(self.curves)

    def score_on(self, seeds: Iterable[int]) -> float:
        """Seed-mean of the lowest smoothed loss over ``seeds`` (NaN if one has none)."""
        bests = [self.curves[seed].best() for seed in seeds if seed in self.curves]
        if not bests or any(best is None for best in bests):
            return math.nan
        return float(np.mean([best[1] for best in bests]))


def grid_points(frame: pd.DataFrame, window: int) -> list[GridPoint]:
    """Group the runs of one (task, scale, setting) into grid points, sorted by
    (optimizer, hyperparameter text) so that ties resolve the same way on any machine.

    Runs still in progress (interrupted, or no summary yet) are left out: a partial curve
    is neither a tuned point nor a target (the report's run counts still list them)."""
    points: dict[tuple[str, str], GridPoint] = {}
    in_progress = []
    for run_dir, run in frame.groupby("run_dir", sort=True):
        first = run.iloc[0]
        if first["status"] in IN_PROGRESS:
            in_progress.append(str(run_dir))
            continue
        key = (first["optimizer"], first["hparams"])
        if key not in points:
            settings = {
                c[len(HPARAM_PREFIX) :]: format_value(first[c])
                for c in run
                if c.startswith(HPARAM_PREFIX) and _present(first[c])
            }
            points[key] = GridPoint(key[0], key[1], settings)
        point, seed = points[key], int(first["seed"])
        if seed in point.run_dirs:
            raise UserError(
                f"two runs of the same grid point, setting and seed: {point.run_dirs[seed]} and "
                f"{run_dir}; pass only one of them"
            )
        point.run_dirs[seed] = str(run_dir)
        point.statuses[seed] = str(first["status"])
        point.curves[seed] = _curve(run, window)
    if in_progress:
        log.info("left out %d run(s) still in progress: %s", len(in_progress), in_progress)
    return [points[key] for key in sorted(points)]


def _curve(run: pd.DataFrame, window: int) -> Curve:
    """The run's smoothed training loss; resumed runs may log a step twice (last wins)."""
    train = run[run["split"] == "train"].drop_duplicates("step", keep="last").sort_values("step")
    steps = train["step"].to_numpy()
    try:
        smoothed = smooth(steps, train["loss"].to_numpy(), window)
    except UserError as error:
        raise UserError(f"{run['run_dir'].iloc[0]}: {error}") from error
    return Curve(*smoothed, last_step=int(steps[-1]) if steps.size else 0)


def _present(value: object) -> bool:
    return isinstance(value, list | tuple) or not pd.isna(value)


def tuned(points: list[GridPoint], optimizer: str) -> tuple[GridPoint | None, str]:
    """The optimizer's grid point with the lowest score, and a note on how it was chosen.

    Scores use the tuning seeds (:func:`~yfbench.analysis.protocol.tuning_seeds`): under
    the two-stage protocol (every grid point with seed 1, then more seeds at the tuned
    points) the choice stays the one
    seed 1 made, instead of pitting a 3-seed mean against single seeds. A grid point with
    a diverged, failed or unfinished run is a candidate only when no grid point of that
    optimizer completed all its tuning seeds. Ties: the first in ``points``.
    """
    tuning = set(tuning_seeds(points))

    def chosen_on(point: GridPoint) -> set[int]:
        return tuning or set(point.curves)

    # Completion and scores on the tuning seeds only: an evaluation seed that diverges or
    # fails later cannot move the choice.
    own = [p for p in points if p.optimizer == optimizer and np.isfinite(p.score_on(chosen_on(p)))]
    completed = [p for p in own if all(p.statuses.get(seed) == COMPLETED for seed in chosen_on(p))]
    note = ""
    if not completed and own:
        note = "no grid point completed all its tuning seeds; tuned among partial runs"
    candidates = completed or own
    if not candidates:
        return None, "no run has a smoothed loss (all failed, or shorter than the window)"
    # The group's tuning seeds (every grid point of every optimizer has them), else the
    # seeds this optimizer's candidates share.
    common = tuning or set.intersection(*(set(p.curves) for p in candidates))
    if common and any(set(p.curves) != common for p in candidates):
        chosen = ", ".join(str(s) for s in sorted(common))
        note = "; ".join(
            filter(None, [note, f"tuned on the seeds every grid point has ({chosen})"])
        )
    scored = [(p.score_on(common or p.curves), index) for index, p in enumerate(candidates)]
    finite = [(score, index) for score, index in scored if np.isfinite(score)]
    if not finite:
        return None, "no grid point has a smoothed loss on the common seeds"
    best = candidates[min(finite)[1]]
    return best, "; ".join(filter(None, [note, grid_edge(points, best)]))


def lr_edge(lr: float, tried: Iterable[float]) -> str:
    """Which end of two or more lrs ``tried`` ``lr`` is ("largest", "smallest"), else ""."""
    lrs = set(tried)
    if len(lrs) < 2:
        return ""
    return "largest" if lr == max(lrs) else "smallest" if lr == min(lrs) else ""


def grid_edge(points: list[GridPoint], chosen: GridPoint) -> str:
    """A note when ``chosen`` has the largest or smallest lr its optimizer's grid tried:
    the grid does not bracket the best lr, so a wider grid might tune it better."""
    if "lr" not in chosen.settings:
        return ""
    own = [p for p in points if p.optimizer == chosen.optimizer]
    side = lr_edge(float(chosen.settings["lr"]), [float(p.settings["lr"]) for p in own])
    if not side:
        return ""
    return (
        f"tuned at the {side} lr tried (lr={chosen.settings['lr']}): the grid does not bracket it"
    )


@dataclass(frozen=True)
class Choice:
    """One optimizer's tuned grid point in one (task, scale, setting) group, with every
    grid point of the group (what the tuning seed tried)."""

    optimizer: str
    point: GridPoint | None
    points: list[GridPoint]


def tuned_choices(group: pd.DataFrame, window: int) -> list[Choice]:
    """Each optimizer's tuned point of one (task, scale, setting) ``group``; one clear
    error while a run that could change a choice has not finished."""
    points = grid_points(group, window)
    unsettled = _unsettled(group, points)
    if unsettled:
        where = "{task}/{scale} ({setting})".format(**group.iloc[0][GROUP_KEYS])
        raise UserError(
            f"{len(unsettled)} run(s) of {where} that could change the tuned choice have "
            f"not finished (e.g. {unsettled[0]}): finish them (rerun the first stage, "
            "which resumes them, or wait for the process running them), then run this again"
        )
    optimizers = sorted({p.optimizer for p in points})
    return [Choice(name, tuned(points, name)[0], points) for name in optimizers]


def tuned_grid_point_names(frame: pd.DataFrame, window: int | None = None) -> list[str]:
    """The ``grid_point=`` names of every optimizer's tuned point, e.g. ``adam_lr5e-3``:
    what a second stage reruns with more seeds, and what the demo trains."""
    names: list[str] = []
    for _, group in frame.groupby(GROUP_KEYS, sort=True):
        where = "{task}/{scale} ({setting})".format(**group.iloc[0][GROUP_KEYS])
        for choice in tuned_choices(group, resolve_window(group, window)):
            point = choice.point
            runs = group[group["run_dir"].isin(point.run_dirs.values())] if point else group[:0]
            chosen = runs["grid_point"].dropna().unique()
            if len(chosen) != 1:
                raise UserError(
                    f"the tuned {choice.optimizer} runs of {where} were not started with a "
                    "grid_point=... choice; re-run that point with more seeds by hand"
                )
            names.append(str(chosen[0]))
    return list(dict.fromkeys(names))


def _unsettled(group: pd.DataFrame, points: list[GridPoint]) -> list[str]:
    """Runs still in progress that could change a tuned choice: a tuning seed's run, or a
    run of a grid point that has no finished run. (An evaluation seed's run in progress
    cannot: the choice is made on the tuning seeds, so a second stage can resume it.)"""
    tuning = set(tuning_seeds(points))
    known = {(p.optimizer, p.hparams) for p in points}
    runs = group.drop_duplicates("run_dir")
    waiting = runs[runs["status"].isin(IN_PROGRESS)]
    return sorted(
        str(run.run_dir)
        for run in waiting.itertuples()
        if int(run.seed) in tuning or (run.optimizer, run.hparams) not in known
    )


def resolve_window(frame: pd.DataFrame, window: int | None) -> int:
    """``window`` if given, else the runs' ``analysis.window``, which must agree."""
    if window is not None:
        return int(window)
    runs = frame.drop_duplicates("run_dir")
    where = "{task}/{scale} ({setting})".format(**runs.iloc[0][GROUP_KEYS])
    if runs["window"].isna().all():
        raise UserError(
            f"{runs['run_dir'].iloc[0]}/{RUN_CONFIG_FILE} and the other runs have no "
            "analysis.window; pass --window"
        )
    by_window = runs.dropna(subset=["window"]).groupby("window")["run_dir"]
    if by_window.ngroups > 1:
        found = "; ".join(
            f"{int(w)} in {len(dirs)} runs (e.g. {dirs.iloc[0]})" for w, dirs in by_window
        )
        raise UserError(
            f"{where}: runs disagree on analysis.window: {found}; "
            "pass --window N to smooth them all alike"
        )
    return int(runs["window"].dropna().iloc[0])


def check_ladder(ladder: Iterable[float]) -> tuple[float, ...]:
    """Sorted rungs in (0, 1], always with the headline rung 1.0."""
    rungs = sorted(set(ladder) | {HEADLINE})
    if rungs[0] <= 0 or rungs[-1] > HEADLINE:
        raise UserError(f"ladder fractions must lie in (0, 1], got {rungs}")
    return tuple(rungs)


@dataclass
class Comparison:
    """A tuned method against a tuned baseline in one (task, scale, setting).

    ``info`` holds the identity and run counts; ``rows`` one timing per seed pair and rung.
    """

    info: dict[str, object]
    rows: list[dict[str, object]]
    ladder: tuple[float, ...]
    method_point: GridPoint | None = None
    base_point: GridPoint | None = None
    plan: SeedPlan | None = None


def compare_all(
    frame: pd.DataFrame,
    baseline: str,
    pairs: Sequence[tuple[str, str]] = (),
    window: int | None = None,
    ladder: Iterable[float] = DEFAULT_LADDER,
) -> list[Comparison]:
    """Every optimizer against tuned ``baseline``, plus each extra (method, baseline) pair
    present, in every (task, scale, setting) of ``frame``.

    A setting that cannot be compared (e.g. an asynchronous setting with only Adam runs)
    is skipped with a warning that says why; only when no setting can be compared is
    that an error.
    """
    rungs = check_ladder(ladder)
    comparisons, problems = [], []
    for (task, scale, setting), group in frame.groupby(GROUP_KEYS, sort=True):
        where = f"{task}/{scale} ({setting})"
        size = resolve_window(group, window)
        points = grid_points(group, size)
        try:
            optimizers = _check_group(where, group, points, baseline, size)
        except NotComparable as error:
            problems.append(error)
            continue
        wanted = [(m, baseline) for m in optimizers if m != baseline]
        wanted += [p for p in pairs if p not in wanted and set(p) <= set(optimizers)]
        identity = {"task": task, "scale": scale, "setting": setting, "window": size}
        for method, base in wanted:
            comparisons.append(_compare(identity, points, method, base, rungs))
    if problems and not comparisons:
        raise UserError("; ".join(str(problem) for problem in problems))
    for problem in problems:
        log.warning("skipped: %s", problem)
    return comparisons


class NotComparable(UserError):
    """A setting whose runs hold no speedup (no baseline, only the baseline, too short)."""


def _check_group(
    where: str, group: pd.DataFrame, points: list[GridPoint], baseline: str, window: int
) -> list[str]:
    """The group's optimizers, or a UserError that says why no speedup can be computed."""
    if not any(np.isfinite(p.score) for p in points):
        longest = int(group["step"].max()) if group["step"].notna().any() else 0
        raise NotComparable(
            f"{where}: no run reaches the smoothing window ({window} iterations; "
            f"longest run logged {longest}); pass a smaller --window"
        )
    optimizers = sorted({p.optimizer for p in points})
    if baseline not in optimizers:
        raise NotComparable(
            f"{where}: no {baseline!r} runs to compare against; found "
            f"{', '.join(optimizers)}; choose one with --baseline"
        )
    if optimizers == [baseline]:
        raise NotComparable(
            f"{where}: only {baseline!r} runs (e.g. {group['run_dir'].iloc[0]}); a speedup "
            "needs at least one other optimizer's runs in the same task, scale and setting"
        )
    return optimizers


def _compare(
    identity: dict[str, object],
    points: list[GridPoint],
    method: str,
    base: str,
    ladder: tuple[float, ...],
) -> Comparison:
    best_method, method_note = tuned(points, method)
    best_base, base_note = tuned(points, base)
    own = [p for p in points if p.optimizer == method]
    statuses = [s for p in own for s in p.statuses.values()]
    notes = [method_note, base_note and f"{base}: {base_note}"]
    info: dict[str, object] = {
        **identity,
        "optimizer": method,
        "baseline": base,
        "best_hparams": _shown(best_method, own),
        "baseline_hparams": _shown(best_base, [p for p in points if p.optimizer == base]),
        "hparams": best_method.hparams if best_method else "",
        "runs": len(statuses),
        "diverged": statuses.count(DIVERGED),
        # failed, interrupted, or no summary.json
        "failed": sum(s not in (COMPLETED, DIVERGED) for s in statuses),
    }
    rows: list[dict[str, object]] = []
    plan = None
    if best_method is not None and best_base is not None:
        plan = evaluation_plan(best_method, best_base, tuning_seeds(points))
        rows, pair_notes = _time_pairs(
            best_method, best_base, int(identity["window"]), ladder, plan
        )
        notes += pair_notes
    info["seeds_used"] = plan.label if plan else ""
    info["provisional"] = bool(plan and plan.provisional)
    info["note"] = "; ".join(n for n in notes if n)
    return Comparison(info, rows, ladder, best_method, best_base, plan)


def _time_pairs(
    method: GridPoint, base: GridPoint, window: int, ladder: tuple[float, ...], plan: SeedPlan
) -> tuple[list[dict[str, object]], list[str]]:
    """Timings of the plan's seeds at every rung, and notes on unpaired seeds."""
    notes = []
    for point, other in ((base, method), (method, base)):
        alone = sorted(set(point.curves) - set(other.curves) - set(plan.tuning))
        if alone:
            notes.append(f"{point.optimizer} seeds {_seeds(alone)} unpaired")
    rows = []
    for seed in plan.used:
        for fraction in ladder:
            timing = time_seed(base.curves[seed], method.curves[seed], fraction, window)
            if timing is None:
                notes.append(f"seed {seed}: no baseline smoothed loss by {fraction:.0%}")
                continue
            rows.append(
                {
                    "seed": seed,
                    "status": method.statuses[seed],
                    **timing,
                    "run_dir": method.run_dirs[seed],
                    "baseline_run_dir": base.run_dirs[seed],
                }
            )
    return rows, notes


def _seeds(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def seeds_frame(comparisons: Sequence[Comparison], fraction: float | None = None) -> pd.DataFrame:
    """One row per seed pair (and rung, or only rung ``fraction``) of every comparison."""
    keys = ["task", "scale", "setting", "window", "optimizer", "hparams", "baseline", "seeds_used"]
    rows = [
        {**{k: c.info[k] for k in keys}, **row}
        for c in comparisons
        for row in c.rows
        if fraction is None or row["fraction"] == fraction
    ]
    return pd.DataFrame(rows)


def summary_frame(comparisons: Sequence[Comparison], fraction: float | None = None) -> pd.DataFrame:
    """One row per comparison and rung (or only rung ``fraction``): the aggregate."""
    rows = []
    for comparison in comparisons:
        for rung in comparison.ladder if fraction is None else (fraction,):
            timings = [r for r in comparison.rows if r["fraction"] == rung]
            note = comparison.info["note"]
            rows.append({**comparison.info, "fraction": rung, **aggregate(timings), "note": note})
    return pd.DataFrame(rows)


def speedup_table(
    frame: pd.DataFrame,
    baseline: str,
    pairs: Sequence[tuple[str, str]] = (),
    window: int | None = None,
) -> pd.DataFrame:
    """The headline (rung 100%) aggregate of :func:`compare_all`: one row per comparison."""
    return summary_frame(compare_all(frame, baseline, pairs, window, (HEADLINE,)), HEADLINE)


def _shown(point: GridPoint | None, grid: list[GridPoint]) -> str:
    """The tuned point's hyperparameters that vary across its grid (the full set is in
    ``hparams``); a grid of one point shows as "single setting"."""
    if point is None:
        return ""
    varying = [k for k in point.settings if len({p.settings.get(k) for p in grid}) > 1]
    return ", ".join(f"{k}={point.settings[k]}" for k in varying) or SINGLE_SETTING
