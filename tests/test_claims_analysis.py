"""The claim experiments' analyses (asynchrony, lr robustness, momentum ablation, clipping,
fixed-budget differences) on hand-made run directories whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.run_builder import write_run
from yfbench.analysis import adaptive_clipping, asynchrony, lr_robustness, momentum_ablation
from yfbench.analysis.final_loss import mean_interval, paired_budget_difference, verdict
from yfbench.analysis.runs import load_runs
from yfbench.analysis.speedup import Curve, GridPoint
from yfbench.errors import UserError

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
    result = paired_budget_difference(method, base)
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
    result = paired_budget_difference(method, base, budget=100)
    assert (result["paired"], result["missing"]) == (1, 1)
    assert result["difference"] == pytest.approx(0.1)
    assert verdict(result) == "too few seeds"


# --------------------------------------------------------------------------- asynchrony
def _momentum(gap: float) -> dict[str, list[float]]:
    target = [0.5] * STEPS
    return {"target_momentum": target, "total_momentum": [t + gap for t in target]}


@pytest.fixture(scope="module")
def async_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("async")
    stale = {"staleness": 15}
    for seed in (1, 2, 3):
        # Same lr and seed in both settings; synchronous Adam is much faster.
        write_run(root / "sync", f"adam-{seed}", optimizer=ADAM, seed=seed, losses=_decay(0.3))
        write_run(root / "sync", f"yf-{seed}", optimizer=YF, seed=seed, losses=_decay(0.2))
        write_run(
            root / "async",
            f"adam-{seed}",
            optimizer=ADAM,
            seed=seed,
            losses=_decay(0.05),
            trainer=stale,
        )
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
                f"{name}-{seed}",
                optimizer=optimizer,
                seed=seed,
                losses=_decay(rate),
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


def test_closed_loop_tracks_its_target_and_open_loop_does_not(async_runs):
    summary = asynchrony.tracking_summary(asynchrony.momentum_tracking(load_runs([async_runs])))
    tracks = summary.set_index("optimizer")["tracks"]
    assert tracks["yellowfin_closed_loop"] and not tracks["yellowfin_open_loop"]


# --------------------------------------------------------------------------- ablation
@pytest.fixture(scope="module")
def ablation_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    noise = {1: 0.01, 2: -0.01, 3: 0.0}
    for seed in (1, 2, 3):
        write_run(root, f"yf-{seed}", optimizer=YF, seed=seed, losses=_decay(0.1))
        rescaled = {**YF, "name": "yellowfin_rescaled_sgd", "rescaled_sgd": True}
        write_run(
            root,
            f"rs-{seed}",
            optimizer=rescaled,
            seed=seed,
            losses=_decay(0.1, offset=0.1 + noise[seed]),
        )
        fixed = {**YF, "name": "yellowfin_fixed_momentum", "tune_momentum": False, "momentum": 0.9}
        write_run(
            root, f"mu09-{seed}", optimizer=fixed, seed=seed, losses=_decay(0.1, offset=noise[seed])
        )
    return root


def test_ablation_verdicts(ablation_runs, tmp_path):
    table = momentum_ablation.ablation_table(load_runs([ablation_runs])).set_index("optimizer")
    rescaled, fixed = table.loc["yellowfin_rescaled_sgd"], table.loc["yellowfin_fixed_momentum"]
    assert rescaled["difference"] == pytest.approx(0.1)
    assert rescaled["verdict"] == "YellowFin lower"
    assert fixed["difference"] == pytest.approx(0.0, abs=1e-9) and fixed["verdict"] == "tie"
    momentum_ablation.write_outputs([ablation_runs], tmp_path)
    assert "YellowFin lower" in (tmp_path / "momentum_ablation.md").read_text()


def test_ablation_refuses_two_yellowfin_points(ablation_runs, tmp_path):
    write_run(tmp_path, "yf-x3", optimizer={**YF, "lr_factor": 3.0}, seed=1, losses=_decay(0.1))
    with pytest.raises(UserError, match="exactly one YellowFin grid point"):
        momentum_ablation.ablation_table(load_runs([ablation_runs, tmp_path]))


# --------------------------------------------------------------------------- lr robustness
def test_lr_multipliers_relative_to_the_grids_tuned_lr(tmp_path):
    grid, experiment = tmp_path / "grid", tmp_path / "experiment"
    for lr, rate in ((1e-3, 0.2), (1e-2, 0.1)):
        write_run(
            grid,
            f"adam-{lr}",
            optimizer={**ADAM, "lr": lr},
            seed=1,
            losses=_decay(rate),
            valid={"loss": 1.0, "perplexity": 3.0},
            grid_point=f"adam_lr{lr:g}",
        )
    write_run(
        grid,
        "adam-1e-3-s2",
        optimizer=ADAM,
        seed=2,
        losses=_decay(0.2),
        valid={"perplexity": 2.5},
        grid_point="adam_lr0.001",
    )
    write_run(grid, "yf", optimizer=YF, seed=1, losses=_decay(0.15), grid_point="yellowfin")
    for seed in (1, 2, 3):
        write_run(
            experiment,
            f"adam-1e-4-{seed}",
            optimizer={**ADAM, "lr": 1e-4},
            seed=seed,
            losses=_decay(0.05),
            valid={"perplexity": 9.0},
        )
        diverged = seed == 3
        write_run(
            experiment,
            f"yf-x3-{seed}",
            optimizer={**YF, "lr_factor": 3.0},
            seed=seed,
            losses=_decay(0.1)[:20] if diverged else _decay(0.1),
            status="diverged" if diverged else "completed",
            max_steps=STEPS,
        )
    # A grid run passed twice (same config hash) counts once.
    write_run(experiment, "copy", optimizer=YF, seed=1, losses=_decay(0.15))
    tuned = lr_robustness.tuned_lrs(load_runs([grid]))
    assert tuned == {("toy", "adam"): 1e-3}
    table = lr_robustness.robustness_table(load_runs([grid, experiment]), tuned)
    rows = {(r.optimizer, round(r.multiplier, 6)): r for r in table.itertuples()}
    assert set(rows) == {
        ("adam", 0.1),
        ("adam", 1.0),
        ("adam", 10.0),
        ("yellowfin", 1.0),
        ("yellowfin", 3.0),
    }
    assert rows[("adam", 1.0)].seeds == 2 and rows[("adam", 1.0)].valid_median == 2.75
    x3 = rows[("yellowfin", 3.0)]
    assert (x3.seeds, x3.diverged, x3.loss_n) == (3, 1, 2)
    assert lr_robustness.missing_grid_points(grid, [2, 3]) == [
        "adam_lr0.001",
        "adam_lr0.01",
        "yellowfin",
    ]
    lr_robustness.write_outputs([experiment], grid, tmp_path / "out")
    assert (tmp_path / "out" / "toy_cpu_lr_robustness.png").is_file()


# --------------------------------------------------------------------------- clipping
def test_clip_events_and_hand_tuned_momentum_sgd(tmp_path):
    spikes = [100.0 if t % 10 == 0 else 1.0 for t in range(STEPS)]
    for seed in (1, 2):
        events = list(np.cumsum([t % 20 == 0 for t in range(STEPS)]).astype(float))
        extra = {"exploding_clips": events, "grad_norm_sq": [s * s for s in spikes]}
        write_run(
            tmp_path,
            f"yf-{seed}",
            optimizer={**YF, "adaptive_clip": True},
            seed=seed,
            losses=_decay(0.1),
            train_extra=extra,
            task_extra={"grad_clip_norm": None},
        )
        write_run(
            tmp_path,
            f"yf-off-{seed}",
            optimizer={**YF, "adaptive_clip": False},
            seed=seed,
            losses=_decay(0.05),
            task_extra={"grad_clip_norm": None},
            train_extra={"exploding_clips": [0.0] * STEPS},
        )
    for lr, clip, rate in ((0.1, 1.0, 0.08), (1.0, 10.0, 0.02)):
        write_run(
            tmp_path,
            f"sgd-{lr}",
            optimizer={"name": "momentum_sgd", "lr": lr},
            seed=1,
            losses=_decay(rate),
            task_extra={"grad_clip_norm": clip},
            train_extra={"grad_norm": spikes},
            grid_point=f"sgd{lr}",
        )
    table, _ = adaptive_clipping.summary(load_runs([tmp_path]))
    rows = table.set_index("method")
    assert rows.loc["YellowFin, adaptive clip", "clip_events"] == 3  # steps 1, 21, 41
    assert rows.loc["YellowFin, no clip", "clip_events"] == 0
    sgd = rows.loc["momentum SGD, lr=0.1, clip 1 (hand-tuned)"]
    assert sgd["clip_events"] == 6 and sgd["grad_norm_max_over_median"] == 100.0
    assert (
        adaptive_clipping.tuned_grid_point([tmp_path])
        == "grid_point=sgd0.1 task.grad_clip_norm=1.0"
    )


def test_clipping_refuses_runs_of_another_setting(tmp_path):
    write_run(tmp_path, "a", optimizer=YF, seed=1, losses=_decay(0.1))
    write_run(tmp_path, "b", optimizer=YF, seed=2, losses=_decay(0.1), trainer={"staleness": 3})
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
