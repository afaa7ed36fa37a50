"""The claim experiments' analyses (asynchrony, lr robustness, momentum ablation, clipping,
fixed-budget differences) on hand-made run directories whose answers are known."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from tests.run_builder import write_run
from yfbench.analysis import adaptive_clipping, asynchrony, lr_robustness, momentum_ablation
from yfbench.analysis.final_loss import (
    difference_text,
    mean_interval,
    paired_budget_difference,
    verdict,
)
from yfbench.analysis.protocol import evaluation_plan, own_plan
from yfbench.analysis.runs import load_runs
from yfbench.analysis.speedup import Curve, GridPoint
from yfbench.errors import UserError
from yfbench.run_contract import config_hash

STEPS = 60
ADAM = {"name": "adam", "lr": 0.001}
YF = {"name": "yellowfin", "lr": 1.0}


def _decay(rate: float, offset: float = 0.0) -> list[float]:
    return [offset + math.exp(-rate * t) for t in range(STEPS)]


# --------------------------------------------------------------------------- final_loss
def _point(name: str, finals: dict[int, float]) -> GridPoint:
    point = GridPoint(name, "", {})
    for seed, value in finals.items():
        steps = np.arange(10, 101, 10)
        point.curves[seed] = Curve(steps, np.full(steps.size, value), last_step=100)
        point.statuses[seed] = "completed"
    return point


def test_paired_difference_mean_and_t_interval_by_hand():
    method, base = _point("m", {1: 1.2, 2: 1.3, 3: 1.25}), _point("b", {1: 1.0, 2: 1.0, 3: 1.0})
    result = paired_budget_difference(method, base, evaluation_plan(method, base, ()))
    # differences 0.2, 0.3, 0.25: mean 0.25, sd 0.05, half-width t * 0.05 / sqrt(3), with
    # t = t_{0.975, 2 dof} = 0.95 / sqrt(2 * 0.975 * 0.025) = 4.3027 (closed form at 2 dof)
    half = 0.95 / math.sqrt(2 * 0.975 * 0.025) * 0.05 / math.sqrt(3)
    assert result["difference"] == pytest.approx(0.25)
    assert (result["low"], result["high"]) == pytest.approx((0.25 - half, 0.25 + half))
    assert result["budget"] == 100 and result["paired"] == 3
    assert verdict(result) == "higher"
    assert all(math.isnan(v) for v in mean_interval([1.0])[1:3])  # no interval from one seed


def test_a_diverged_seed_is_missing_not_a_number():
    method, base = _point("m", {1: 1.1, 2: 1.3}), _point("b", {1: 1.0, 2: 1.0})
    method.curves[2] = Curve(np.array([10]), np.array([5.0]), last_step=10)  # stopped early
    result = paired_budget_difference(method, base, evaluation_plan(method, base, ()), budget=100)
    assert (result["paired"], result["missing"]) == (1, 1)
    assert result["difference"] == pytest.approx(0.1)
    assert verdict(result) == "too few seeds"


def test_the_paired_difference_leaves_the_tuning_seed_out():
    # The baseline won its grid on seed 1, where it is lucky (0.5); on seeds 2-4 the method
    # is 0.1 lower. Every seed both have would credit the baseline with its luck.
    method = _point("m", {1: 1.0, 2: 0.9, 3: 0.9, 4: 0.9})
    base = _point("b", {1: 0.5, 2: 1.0, 3: 1.0, 4: 1.0})
    result = paired_budget_difference(method, base, evaluation_plan(method, base, (1,)))
    assert (result["seeds"], result["paired"]) == (3, 3)
    assert result["difference"] == pytest.approx(-0.1)
    assert result["seeds_used"] == "3 evaluation seeds (2,3,4)" and not result["provisional"]
    assert set(result["per_seed"]) == {2, 3, 4}


def test_a_difference_on_the_tuning_seeds_alone_says_provisional():
    method, base = _point("m", {1: 1.0}), _point("b", {1: 0.5})
    plan = evaluation_plan(method, base, (1,))
    result = paired_budget_difference(method, base, plan)
    assert result["provisional"] and result["seeds_used"].startswith("provisional: tuning seed 1")
    assert "provisional" in difference_text(result)
    assert own_plan(method, (1,)).label == plan.label


# --------------------------------------------------------------------------- asynchrony
def _momentum(gap: float) -> dict[str, list[float]]:
    target = [0.5] * STEPS
    return {"target_momentum": target, "total_momentum": [t + gap for t in target]}


@pytest.fixture(scope="module")
def async_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("async")
    sync, stale = {"staleness": 0}, {"staleness": 15}
    for seed in (1, 2, 3):
        # Same lr and seed in both settings; synchronous Adam is much faster.
        write_run(root / "sync", ADAM, seed, _decay(0.3), name=f"adam-{seed}", trainer=sync)
        write_run(root / "sync", YF, seed, _decay(0.2), name=f"yf-{seed}", trainer=sync)
        write_run(root / "async", ADAM, seed, _decay(0.05), name=f"adam-{seed}", trainer=stale)
        for name, gap, rate in (
            ("yellowfin_closed_loop", 0.004, 0.1),
            ("yellowfin_open_loop", 0.05, 0.04),
        ):
            optimizer = {
                "name": name,
                "lr": 1.0,
                "feedback_gain": 0.01 if "closed" in name else 0.0,
            }
            write_run(
                root / "async",
                optimizer,
                seed,
                _decay(rate),
                name=f"{name}-{seed}",
                trainer=stale,
                train_extra=_momentum(gap),
            )
    return root


def test_sync_and_async_runs_of_one_lr_and_seed_stay_apart(async_runs, tmp_path):
    frame = load_runs([async_runs])
    settings = frame.drop_duplicates("run_dir").groupby("setting")["run_dir"].apply(set)
    assert set(settings.index) == {"trainer.staleness=0", "trainer.staleness=15"}
    for setting, dirs in settings.items():
        assert all(("/async/" in d) == setting.endswith("=15") for d in dirs)
    table = asynchrony.speedups(frame)
    assert set(table["setting"]) == {"trainer.staleness=15"}
    assert set(table["optimizer"]) == {"yellowfin_closed_loop", "yellowfin_open_loop"}
    closed = table.set_index("optimizer").loc["yellowfin_closed_loop"]
    # Against asynchronous Adam (decay 0.05) closed loop (0.1) is faster; synchronous Adam
    # (0.3) would make it slower.
    assert closed["speedup_tt"] > 1.0 and closed["reached_tt"] == 3
    assert closed["diff_difference"] < 0 and closed["diff_paired"] == 3
    written = asynchrony.write_outputs([async_runs], tmp_path)
    text = (tmp_path / "asynchrony.md").read_text()
    assert "2.69x" in text and any(p.name.endswith("_momentum.png") for p in written)


def test_async_rows_on_tuning_seeds_alone_are_labelled_provisional(async_runs, tmp_path):
    # async_runs is a full grid: Adam's one point and the loops all ran seeds 1-3, so every
    # seed tuned and no evaluation seed exists yet.
    table = asynchrony.speedups(load_runs([async_runs]))
    assert table["provisional"].all() and table["diff_provisional"].all()
    assert all(s.startswith("provisional: tuning seeds 1,2,3") for s in table["seeds_used"])
    asynchrony.write_outputs([async_runs], tmp_path)
    text = (tmp_path / "asynchrony.md").read_text()
    assert "| provisional: tuning seeds 1,2,3 only (no evaluation seed yet) |" in text


@pytest.fixture(scope="module")
def two_stage_async_runs(tmp_path_factory):
    """Async Adam lr 1e-3 and 1e-2 on seed 1 (1e-3 wins there: it is lucky on seed 1), then
    the tuned lr, open and closed loop and sync YellowFin on seeds 2-4."""
    root = tmp_path_factory.mktemp("two_stage")
    sync, stale = {"staleness": 0}, {"staleness": 15}
    write_run(root, {**ADAM, "lr": 1e-2}, 1, _decay(0.2), name="adam-1e-2", trainer=stale)
    for seed in (1, 2, 3, 4):
        lucky = seed == 1
        write_run(
            root, ADAM, seed, _decay(0.3 if lucky else 0.05), name=f"adam-{seed}", trainer=stale
        )
        write_run(root, YF, seed, _decay(0.2), name=f"sync-yf-{seed}", trainer=sync)
        for name, rate in (("yellowfin_closed_loop", 0.1), ("yellowfin_open_loop", 0.04)):
            optimizer = {
                "name": name,
                "lr": 1.0,
                "feedback_gain": 0.01 if "closed" in name else 0.0,
            }
            write_run(
                root,
                optimizer,
                seed,
                _decay(rate),
                name=f"{name}-{seed}",
                trainer=stale,
                train_extra=_momentum(0.0),
            )
    return root


def test_async_comparisons_use_the_evaluation_seeds_only(two_stage_async_runs, tmp_path):
    frame = load_runs([two_stage_async_runs])
    closed = asynchrony.speedups(frame).set_index("optimizer").loc["yellowfin_closed_loop"]
    assert closed["baseline_hparams"] == "lr=0.001"  # chosen on seed 1
    assert closed["seeds_used"] == "3 evaluation seeds (2,3,4)" and not closed["provisional"]
    # On seed 1 the tuned Adam (decay 0.3) beats closed loop (0.1); on seeds 2-4 it loses.
    assert (closed["diff_seeds"], closed["diff_paired"]) == (3, 3)
    assert closed["diff_difference"] < 0 and closed["diff_high"] < 0
    assert closed["reached_tt"] == 3 and closed["seeds"] == 3
    # Every curve of the figure, synchronous YellowFin's too, leaves seed 1 out.
    curves = asynchrony.loss_curves(frame, window=5)
    assert len(curves) == 4
    assert all(plan.used == (2, 3, 4) and not plan.provisional for _, _, plan in curves)
    asynchrony.write_outputs([two_stage_async_runs], tmp_path)
    assert "| 3 evaluation seeds (2,3,4) |" in (tmp_path / "asynchrony.md").read_text()


def test_closed_loop_tracks_its_target_and_open_loop_does_not(async_runs):
    summary = asynchrony.tracking_summary(asynchrony.momentum_tracking(load_runs([async_runs])))
    tracks = summary.set_index("optimizer")["tracks"]
    assert tracks["yellowfin_closed_loop"] and not tracks["yellowfin_open_loop"]


def test_async_findings_say_which_loop_tracks_and_closed_loops_speedup(
    two_stage_async_runs, tmp_path
):
    frame = load_runs([two_stage_async_runs])
    frame = frame[frame["setting"] != "trainer.staleness=0"]  # the synchronous runs aside
    [line] = asynchrony.findings(frame, label=str.upper)
    assert line.startswith("Asynchronous training, TOY (cpu), staleness 15: ")
    assert "closed loop μ̂_T − μ* +0.000 (tracks its target within ±0.01; 4 seeds)" in line
    # On seeds 2-4 closed loop (decay 0.1) beats the Adam that seed 1 chose (0.05).
    assert "closed loop over tuned asynchronous Adam: " in line and ": closed loop lower" in line
    assert "(3 seeds)" in line and "[paper: 2.69x, CIFAR-100, 16 workers]" in line
    # The summary line: Adam ends lower on none of the one task here, closed loop on it.
    assert asynchrony.lead([frame], label=str.upper) == [
        "tuned asynchronous Adam ends below asynchronous closed-loop YellowFin on 0 of 1 "
        "tasks, closed loop below Adam on 1 (the paper: closed loop 2.69x faster than Adam)"
    ]
    # The same task at a second staleness is a second setting, not a second task.
    again = tmp_path / "staleness7"
    shutil.copytree(two_stage_async_runs, again)
    for record in again.glob("*/run_config.json"):
        run = json.loads(record.read_text())
        if run["config"]["trainer"]["staleness"] == 15:
            run["config"]["trainer"]["staleness"] = 7
            run["config_hash"] = config_hash(run["config"])
            record.write_text(json.dumps(run))
    both = load_runs([two_stage_async_runs, again])
    [clause] = asynchrony.lead([both[both["setting"] != "trainer.staleness=0"]], str.upper)
    assert " on 0 of 2 task settings, closed loop below Adam on 2 " in clause


def test_a_diverged_loop_seed_is_counted_in_every_asynchrony_table(two_stage_async_runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(two_stage_async_runs, root)
    summary = root / "yellowfin_open_loop-3" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "diverged"}))
    frame = load_runs([root])
    frame = frame[frame["setting"] != "trainer.staleness=0"]
    [line] = asynchrony.findings(frame, label=str.upper)
    assert "open loop μ̂_T − μ* +0.000 (tracks its target within ±0.01; 4 seeds, 1 diverged)" in line
    asynchrony.write_outputs([root], tmp_path / "out")
    text = (tmp_path / "out" / "asynchrony.md").read_text()
    assert "| yellowfin_open_loop | 4 (1,2,3,4), 1 diverged |" in text
    assert "| 1 / 0 of 4 |" in text and "| 0 / 0 of 4 |" in text  # open loop, closed loop


# --------------------------------------------------------------------------- ablation
@pytest.fixture(scope="module")
def ablation_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    noise = {1: 0.01, 2: -0.01, 3: 0.0}
    for seed in (1, 2, 3):
        write_run(root, YF, seed, _decay(0.1), name=f"yf-{seed}")
        rescaled = {**YF, "name": "yellowfin_rescaled_sgd", "rescaled_sgd": True}
        write_run(root, rescaled, seed, _decay(0.1, offset=0.1 + noise[seed]), name=f"rs-{seed}")
        fixed = {**YF, "name": "yellowfin_fixed_momentum", "tune_momentum": False, "momentum": 0.9}
        write_run(root, fixed, seed, _decay(0.1, offset=noise[seed]), name=f"mu09-{seed}")
    return root


def test_ablation_verdicts(ablation_runs, tmp_path):
    table = momentum_ablation.ablation_table(load_runs([ablation_runs])).set_index("optimizer")
    rescaled, fixed = table.loc["yellowfin_rescaled_sgd"], table.loc["yellowfin_fixed_momentum"]
    assert rescaled["difference"] == pytest.approx(0.1)
    assert rescaled["verdict"] == "YellowFin lower"
    assert fixed["difference"] == pytest.approx(0.0, abs=1e-9) and fixed["verdict"] == "tie"
    # Nothing here is tuned, so no seed is left out, and the table says which seeds it used.
    assert (table["seeds_used"] == "3 evaluation seeds (1,2,3)").all()
    momentum_ablation.write_outputs([ablation_runs], tmp_path)
    assert "YellowFin lower" in (tmp_path / "momentum_ablation.md").read_text()
    [sentence] = momentum_ablation.findings(table.reset_index(), str.upper)
    assert sentence.startswith("Does the tuned momentum matter? ")
    assert "rescaled SGD (μ=0, lr=α/(1−μ)) +0.1000 [" in sentence
    assert sentence.count("(3 seeds): YellowFin lower") == 1
    assert sentence.count("(3 seeds): tie") == 1
    assert momentum_ablation.lead(table.reset_index()) == [
        "YellowFin ends lower than rescaled SGD (μ = 0 at YellowFin's own effective step) on "
        "1 of 1 tasks; elsewhere the two tie or rescaled SGD ends lower"
    ]
    fixed_only = table.reset_index().query("optimizer == 'yellowfin_fixed_momentum'")
    assert momentum_ablation.lead(fixed_only) == []  # no rescaled SGD run, no clause


def test_rescaled_sgd_summary_across_tasks():
    import pandas as pd

    def table(verdicts: list[str], scales: list[str] | None = None) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "task": [f"t{i}" for i in range(len(verdicts))],
                "scale": scales or "cpu",
                "optimizer": "yellowfin_rescaled_sgd",
                "verdict": verdicts,
            }
        )

    [line] = momentum_ablation.rescaled_summary(table(["tie", "variant lower", "tie"]), str.upper)
    assert line.startswith("**YellowFin's tuned momentum buys nothing over its own effective")
    assert "on 3 of 3 tasks:** " in line
    assert line.endswith("tie on T0 (cpu), T2 (cpu); rescaled SGD lower on T1 (cpu).")
    [line] = momentum_ablation.rescaled_summary(table(["tie", "YellowFin lower"]))
    assert line.startswith("YellowFin's tuned momentum matters on 1 of 2 tasks: ")
    assert momentum_ablation.rescaled_summary(table(["tie"])) == []  # one task: no summary
    # A task run at two scales counts once at each, and the sentence says which.
    verdicts, scales = ["YellowFin lower", "tie", "tie"], ["cpu", "cpu", "paper"]
    [line] = momentum_ablation.rescaled_summary(table(verdicts, scales))
    assert line.startswith(
        "YellowFin's tuned momentum matters on 1 of 2 tasks at the cpu scale, 0 of 1 at the "
        "paper scale: "
    )


def test_ablation_refuses_two_yellowfin_points(ablation_runs, tmp_path):
    write_run(tmp_path, {**YF, "lr_factor": 3.0}, 1, _decay(0.1), name="yf-x3")
    with pytest.raises(UserError, match="exactly one YellowFin grid point"):
        momentum_ablation.ablation_table(load_runs([ablation_runs, tmp_path]))


# --------------------------------------------------------------------------- lr robustness
def test_lr_multipliers_relative_to_the_grids_tuned_lr(tmp_path):
    grid, experiment = tmp_path / "grid", tmp_path / "experiment"
    for lr, rate in ((1e-3, 0.2), (1e-2, 0.1)):
        write_run(
            grid,
            {**ADAM, "lr": lr},
            1,
            _decay(rate),
            name=f"adam-{lr}",
            valid={"loss": 1.0, "perplexity": 3.0},
            grid_point=f"adam_lr{lr:g}",
        )
    write_run(
        grid,
        ADAM,
        2,
        _decay(0.2),
        name="adam-1e-3-s2",
        valid={"perplexity": 2.5},
        grid_point="adam_lr0.001",
    )
    write_run(grid, YF, 1, _decay(0.15), name="yf", grid_point="yellowfin")
    for seed in (1, 2, 3):
        write_run(
            experiment,
            {**ADAM, "lr": 1e-4},
            seed,
            _decay(0.05),
            name=f"adam-1e-4-{seed}",
            valid={"perplexity": 9.0},
        )
        diverged = seed == 3
        write_run(
            experiment,
            {**YF, "lr_factor": 3.0},
            seed,
            _decay(0.1)[:20] if diverged else _decay(0.1),
            name=f"yf-x3-{seed}",
            valid={"perplexity": 1e6 if diverged else 8.0},
            status="diverged" if diverged else "completed",
            max_steps=STEPS,
        )
    # A grid run passed twice (same config hash) counts once.
    write_run(experiment, YF, 1, _decay(0.15), name="copy")
    tuned = lr_robustness.tuned_lrs(load_runs([grid]))
    assert tuned.lrs == {("toy", "adam"): 1e-3} and tuned.seeds == {"toy": (1,)}
    table = lr_robustness.robustness_table(load_runs([grid, experiment]), tuned)
    rows = {(r.optimizer, round(r.multiplier, 6)): r for r in table.itertuples()}
    assert set(rows) == {
        ("adam", 0.1),
        ("adam", 1.0),
        ("adam", 10.0),
        ("yellowfin", 1.0),
        ("yellowfin", 3.0),
    }
    # Seed 1 chose the 1x lr: every point leaves it out (1x: seed 2's 2.5, not 2.75 with
    # seed 1's 3.0), at every multiplier and for YellowFin too.
    one = rows[("adam", 1.0)]
    assert (one.seeds, one.valid_median, one.seeds_used) == (1, 2.5, "1 evaluation seed (2)")
    assert rows[("adam", 0.1)].seeds_used == "2 evaluation seeds (2,3)"
    x3 = rows[("yellowfin", 3.0)]
    # The diverged seed has no value in either column (its last evaluation is not final).
    assert (x3.seeds, x3.diverged, x3.loss_n, x3.valid_n, x3.valid_median) == (2, 1, 1, 1, 8.0)
    # Points with only the tuning seed are labelled, not silently reported.
    for key in (("adam", 10.0), ("yellowfin", 1.0)):
        assert rows[key].provisional and rows[key].seeds_used.startswith("provisional: tuning")
    assert not one.provisional and not x3.provisional
    # One sweep per set of lacking seeds (adam 1e-3 has seed 2, the other points seed 1 only).
    assert lr_robustness.missing_sweeps(grid, [2, 3]) == [
        ([2, 3], ["adam_lr0.01", "yellowfin"]),
        ([3], ["adam_lr0.001"]),
    ]
    lr_robustness.write_outputs([experiment], grid, tmp_path / "out")
    assert (tmp_path / "out" / "toy_cpu_lr_robustness.png").is_file()
    text = (tmp_path / "out" / "lr_robustness.md").read_text()
    assert "chosen on tuning seeds toy 1." in text and "| 1 evaluation seed (2) |" in text


def test_lr_robust_span_and_findings():
    import pandas as pd

    nan = math.nan
    rows = pd.DataFrame(
        {
            "task": "toy",
            "scale": "cpu",
            "optimizer": "yellowfin",
            "multiplier": [0.01, 0.1, 0.3, 1.0, 3.0, 10.0],
            # within 5% of the best (1.0): 0.3x (1.04), 1x, 3x (1.03); 10x is 20% worse
            "loss_median": [nan, 2.0, 1.04, 1.0, 1.03, 1.2],
            "diverged": [3, 0, 0, 0, 0, 0],
            "seeds": 3,
            "provisional": False,
        }
    )
    assert lr_robustness.robust_span(rows) == (0.3, 3.0)
    # The span stops at the first point outside it, even where a later one is back inside.
    gap = rows.assign(loss_median=[nan, 1.01, 1.5, 1.0, 1.02, 1.0])
    assert lr_robustness.robust_span(gap) == (1.0, 10.0)  # 0.1x is cut off by 0.3x
    assert lr_robustness.robust_span(rows.assign(loss_median=nan)) is None
    [line] = lr_robustness.findings(rows, label=str.upper)
    assert line.startswith("Learning-rate robustness, TOY (cpu): ")
    assert "YellowFin 0.3x–3x (1.0 decades of the 0.01x–10x tried)" in line
    assert line.endswith("; diverged: YellowFin 0.01x (3/3).")
    # A single best point says how far its neighbours miss, not "0.0 decades".
    single = rows.assign(loss_median=[nan, 2.0, 1.5, 1.1, 1.0, nan])
    [line] = lr_robustness.findings(single)
    assert "YellowFin only 3x (its neighbours' loss above it: 1x +10%, 10x no loss;" in line
    [line] = lr_robustness.findings(single.assign(diverged=[3, 0, 0, 0, 0, 2]))
    assert "1x +10%, 10x diverged; 0.01x–10x tried)" in line


# --------------------------------------------------------------------------- clipping
def test_clip_events_and_hand_tuned_momentum_sgd(tmp_path):
    spikes = [100.0 if t % 10 == 0 else 1.0 for t in range(STEPS)]
    for seed in (1, 2):
        events = list(np.cumsum([t % 20 == 0 for t in range(STEPS)]).astype(float))
        extra = {"exploding_clips": events, "grad_norm_sq": [s * s for s in spikes]}
        write_run(
            tmp_path,
            {**YF, "adaptive_clip": True},
            seed,
            _decay(0.1),
            name=f"yf-{seed}",
            train_extra=extra,
            task_extra={"grad_clip_norm": None},
        )
        write_run(
            tmp_path,
            {**YF, "adaptive_clip": False},
            seed,
            _decay(0.05),
            name=f"yf-off-{seed}",
            task_extra={"grad_clip_norm": None},
            train_extra={"exploding_clips": [0.0] * STEPS},
        )
    for lr, clip, rate in ((0.1, 1.0, 0.08), (1.0, 10.0, 0.02)):
        write_run(
            tmp_path,
            {"name": "momentum_sgd", "lr": lr},
            1,
            _decay(rate),
            name=f"sgd-{lr}",
            task_extra={"grad_clip_norm": clip},
            train_extra={"grad_norm": spikes},
            grid_point=f"sgd{lr}",
        )
    table, _, tuning = adaptive_clipping.summary(load_runs([tmp_path]))
    rows = table.set_index("method")
    assert tuning == (1,)
    assert rows.loc["YellowFin, adaptive clip", "clip_events"] == 3  # steps 1, 21, 41
    assert rows.loc["YellowFin, adaptive clip", "seeds_used"] == "1 evaluation seed (2)"
    assert rows.loc["YellowFin, no clip", "clip_events"] == 0
    sgd = rows.loc[TUNED_SGD]
    assert sgd["clip_events"] == 6 and sgd["grad_norm_max_over_median"] == 100.0
    assert sgd["provisional"] and sgd["seeds_used"].startswith("provisional: tuning seed 1")
    assert (
        adaptive_clipping.tuned_grid_point([tmp_path])
        == "grid_point=sgd0.1 task.grad_clip_norm=1.0"
    )


# Both clipping grids below try lr 0.1 and 1 and tune to 0.1: the label says it is an edge.
TUNED_SGD = (
    "momentum SGD, lr=0.1, clip 1 (hand-tuned; tuned at the smallest lr tried (lr=0.1): "
    "the grid does not bracket it)"
)


def _clipping_grid(root, seeds_of_tuned: tuple[int, ...], grid_seed: int = 1) -> None:
    """Momentum SGD (lr 0.1, clip 1) and (lr 1, clip 10) on ``grid_seed``; (0.1, 1) wins
    there, lucky (decay 0.3), and runs ``seeds_of_tuned`` at decay 0.02; YellowFin with and
    without its adaptive clip on the grid seed and ``seeds_of_tuned``."""
    for lr, clip, rate in ((0.1, 1.0, 0.3), (1.0, 10.0, 0.1)):
        sgd = {"name": "momentum_sgd", "lr": lr}
        extra = {"grad_clip_norm": clip}
        name = f"sgd{lr}"
        write_run(
            root,
            sgd,
            grid_seed,
            _decay(rate),
            name=f"{name}-{grid_seed}",
            task_extra=extra,
            grid_point=name,
        )
    for seed in seeds_of_tuned:
        write_run(
            root,
            {"name": "momentum_sgd", "lr": 0.1},
            seed,
            _decay(0.02),
            name=f"sgd0.1-{seed}",
            task_extra={"grad_clip_norm": 1.0},
            grid_point="sgd0.1",
        )
    for seed in (grid_seed, *seeds_of_tuned):
        for on, rate in ((True, 0.1), (False, 0.05)):
            write_run(
                root,
                {**YF, "adaptive_clip": on},
                seed,
                _decay(rate),
                name=f"yf-{on}-{seed}",
                task_extra={"grad_clip_norm": None},
            )


def test_clipping_reports_evaluation_seeds_only(tmp_path):
    _clipping_grid(tmp_path, seeds_of_tuned=(2, 3, 4))
    table, found, tuning = adaptive_clipping.summary(load_runs([tmp_path]))
    assert tuning == (1,)
    sgd = table.set_index("method").loc[TUNED_SGD]
    # Seed 1 (lucky, decay 0.3) chose the point and is left out: seeds 2-4 only.
    assert sgd["seeds"] == 3 and sgd["seeds_used"] == "3 evaluation seeds (2,3,4)"
    assert sgd["final_low"] == sgd["final_high"]
    assert (table["seeds_used"] == "3 evaluation seeds (2,3,4)").all()
    differences = dict(adaptive_clipping.differences(found, tuning))
    diff = differences[TUNED_SGD]
    assert (diff["paired"], diff["seeds_used"]) == (3, "3 evaluation seeds (2,3,4)")


def test_clipping_tunes_on_the_grids_tuning_seed_whatever_its_number(tmp_path):
    # The (lr, clip) grid ran seed 7 only: that is its tuning seed, not a hard-coded 1.
    _clipping_grid(tmp_path, seeds_of_tuned=(), grid_seed=7)
    assert (
        adaptive_clipping.tuned_grid_point([tmp_path])
        == "grid_point=sgd0.1 task.grad_clip_norm=1.0"
    )
    table, _, tuning = adaptive_clipping.summary(load_runs([tmp_path]))
    assert tuning == (7,) and table["provisional"].all()


def test_an_evaluation_seed_cannot_change_the_tuned_clip(tmp_path):
    # The tuned point diverges on evaluation seed 5: that must not hand the choice to
    # the other point, which never ran an evaluation seed.
    _clipping_grid(tmp_path, seeds_of_tuned=(2, 3, 4))
    write_run(
        tmp_path,
        {"name": "momentum_sgd", "lr": 0.1},
        5,
        _decay(0.02)[:20],
        name="sgd0.1-5",
        status="diverged",
        max_steps=STEPS,
        task_extra={"grad_clip_norm": 1.0},
        grid_point="sgd0.1",
    )
    assert (
        adaptive_clipping.tuned_grid_point([tmp_path])
        == "grid_point=sgd0.1 task.grad_clip_norm=1.0"
    )


def test_clipping_refuses_runs_of_another_setting(tmp_path):
    write_run(tmp_path, YF, 1, _decay(0.1), name="a", trainer={"staleness": 0})
    write_run(tmp_path, YF, 2, _decay(0.1), name="b", trainer={"staleness": 3})
    with pytest.raises(UserError, match="not only in task.grad_clip_norm"):
        adaptive_clipping.summary(load_runs([tmp_path]))


# --------------------------------------------------------------------------- report link
def test_report_links_the_claim_experiments_outputs(tmp_path):
    from yfbench.analysis.report import _claims_section

    assert _claims_section(tmp_path) == []
    folder = tmp_path / "asynchrony" / "noisy_quadratic" / "cpu"
    folder.mkdir(parents=True)
    (folder / "asynchrony.md").write_text("# table\n")
    (folder / "noisy_quadratic_cpu_momentum.png").write_bytes(b"")
    text = "\n".join(_claims_section(tmp_path))
    assert "(asynchrony/noisy_quadratic/cpu/asynchrony.md)" in text
    assert "[noisy_quadratic_cpu_momentum](asynchrony/noisy_quadratic/cpu/" in text


def test_clipping_findings_give_each_method_and_the_paired_differences(tmp_path):
    _clipping_grid(tmp_path, seeds_of_tuned=(2, 3, 4))
    [line] = adaptive_clipping.findings(load_runs([tmp_path]), label=str.upper)
    # YellowFin's loss decays faster with its clip (0.1 a step) than without (0.05), and
    # faster than tuned momentum SGD on its evaluation seeds (0.02): both verdicts "lower".
    assert line.startswith(
        "Adaptive clipping, TOY (cpu): YellowFin's adaptive clip lowers its final smoothed "
        "training loss (-0.0546 "
    )
    assert "3 evaluation seeds (2,3,4), with minus without" in line
    assert "clip 1 (hand-tuned; tuned at the smallest lr tried" in line
    assert "logged no gradient norms to count clips by" in line
    assert "YellowFin with its adaptive clip ends lower (-0.3166 " in line
    assert line.endswith(
        "Final smoothed training loss, median: YellowFin, no clip 0.0580; YellowFin, "
        "adaptive clip 0.0034; momentum SGD, lr=0.1, clip 1 0.3199."
    )
    momentum_sgd_only = load_runs([tmp_path])
    momentum_sgd_only = momentum_sgd_only[momentum_sgd_only["optimizer"] == "momentum_sgd"]
    assert adaptive_clipping.findings(momentum_sgd_only) == []


def test_clipping_findings_say_provisional_once_on_the_tuning_seed_alone(tmp_path):
    # The tuned momentum SGD point has run only its tuning seed: its difference is
    # provisional, and the sentence says so once, naming the seed.
    _clipping_grid(tmp_path, seeds_of_tuned=())
    [line] = adaptive_clipping.findings(load_runs([tmp_path]))
    assert line.count("provisional") == 2  # YellowFin's pair and momentum SGD's pair
    assert "(1 seed), provisional: tuning seed 1 only (no evaluation seed yet)" in line
