"""The paper's speedup on hand-made loss curves whose answers are worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from yfbench.analysis.speedup import (
    bootstrap_interval,
    first_reach,
    smooth,
    speedup_table,
)
from yfbench.errors import UserError


def test_smooth_every_step_full_windows_only():
    steps = np.arange(1, 7)
    losses = np.array([6.0, 4.0, 2.0, 4.0, 0.0, 2.0])
    t, s = smooth(steps, losses, window=3)
    # Windows (1..3), (2..4), (3..5), (4..6): means 4, 10/3, 2, 2.
    assert t.tolist() == [3, 4, 5, 6]
    np.testing.assert_allclose(s, [4.0, 10 / 3, 2.0, 2.0])


def test_smooth_uneven_logging_uses_iteration_numbers():
    steps = np.array([2, 4, 5, 9, 10])
    losses = np.array([8.0, 6.0, 4.0, 2.0, 0.0])
    t, s = smooth(steps, losses, window=4)
    # t=4: iterations 1..4 -> logged 2, 4 -> (8+6)/2 = 7; t=5: 2..5 -> 8, 6, 4 -> 6;
    # t=9: 6..9 -> 2; t=10: 7..10 -> (2+0)/2 = 1.
    assert t.tolist() == [4, 5, 9, 10]
    np.testing.assert_allclose(s, [7.0, 6.0, 2.0, 1.0])


def test_smooth_nan_poisons_only_windows_containing_it():
    steps = np.arange(1, 7)
    losses = np.array([1.0, 1.0, math.nan, 1.0, 1.0, 1.0])
    _, s = smooth(steps, losses, window=2)
    # Windows ending at 2..6: (1,1) (1,nan) (nan,1) (1,1) (1,1).
    assert np.isnan(s).tolist() == [False, True, True, False, False]


def test_smooth_rejects_unordered_steps():
    with pytest.raises(UserError):
        smooth(np.array([2, 1]), np.array([1.0, 1.0]), window=1)


def test_first_reach_counts_ties_and_never():
    steps = np.array([1, 2, 3])
    smoothed = np.array([3.0, 2.0, math.nan])
    assert first_reach(steps, smoothed, 2.0) == 2
    assert first_reach(steps, smoothed, 1.0) is None


def test_bootstrap_interval_brackets_the_mean_and_needs_two_values():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    low, high = bootstrap_interval(values)
    assert 1.0 <= low < 2.5 < high <= 4.0
    assert all(math.isnan(v) for v in bootstrap_interval(np.array([2.0])))
    # Identical values: every resample has the same mean.
    assert bootstrap_interval(np.array([1.5, 1.5, 1.5])) == (1.5, 1.5)


def records(
    optimizer: str,
    lr: float,
    seed: int,
    losses: list[float],
    status: str = "completed",
    every: int = 1,
) -> pd.DataFrame:
    """A loaded-frame slice for one run: train losses logged every ``every`` steps."""
    n = len(losses)
    return pd.DataFrame(
        {
            "run_dir": f"{optimizer}-{lr}-{seed}",
            "task": "toy",
            "scale": "mini",
            "optimizer": optimizer,
            "hparams": f"lr={lr}",
            "opt.lr": lr,
            "seed": seed,
            "status": status,
            "window": 2,
            "split": "train",
            "step": np.arange(1, n + 1) * every,
            "loss": losses,
        }
    )


def table(*runs: pd.DataFrame, **kwargs) -> pd.DataFrame:
    return speedup_table(pd.concat(runs, ignore_index=True), "adam", **kwargs).set_index(
        "optimizer"
    )


def test_speedup_single_seed_known_answer():
    # Window 2.  Adam lr=1: smoothed at t=2..6 = 9, 7, 5, 4, 4.5 -> T_adam = 5, L* = 4.
    adam = records("adam", 1.0, 1, [10, 8, 6, 4, 4, 5])
    # Adam lr=0.1 is worse (lowest smoothed 8.5), so lr=1 is tuned.
    adam_bad = records("adam", 0.1, 1, [10, 9, 9, 8, 9, 9])
    # Method: smoothed 8, 4, 3, ... -> first <= 4 at t = 3 (a tie counts as reached).
    fast = records("fast", 1.0, 1, [9, 7, 1, 5, 1, 1])
    row = table(adam, adam_bad, fast).loc["fast"]
    assert row["T_baseline"] == 5
    assert row["T_method"] == 3
    assert row["speedup"] == pytest.approx(5 / 3)
    assert row["baseline_hparams"] == "lr=1"
    assert row["seeds"] == 1 and math.isnan(row["ci_low"])


def test_speedup_never_reached_and_nan_tail():
    adam = records("adam", 1.0, 1, [10, 8, 6, 4, 4, 5])  # L* = 4 at t = 5
    # Diverges: smoothed 9, 7, then NaN; never <= 4.
    diverged = records("boom", 1.0, 1, [10, 8, 6, math.nan, math.nan, math.nan], status="diverged")
    row = table(adam, diverged).loc["boom"]
    assert row["reached"] == 0 and row["speedup"] == 0.0
    assert math.isnan(row["T_method"])
    assert row["diverged"] == 1
    assert "partial" in row["note"]  # its only grid point diverged


def test_diverged_grid_point_is_not_tuned_when_another_completed():
    adam = records("adam", 1.0, 1, [10, 8, 6, 4, 4, 5])  # L* = 4 at t = 5
    # lr=1 reaches smoothed 1.5 at t=3 and then diverges; lr=0.1 completes,
    # smoothed 9.5, 8.5, 4 at t=4.
    early_best = records("m", 1.0, 1, [2, 1, 2, math.nan], status="diverged")
    completed = records("m", 0.1, 1, [10, 9, 8, 0])
    row = table(adam, early_best, completed).loc["m"]
    assert row["best_hparams"] == "lr=0.1"
    assert row["T_method"] == 4 and row["speedup"] == pytest.approx(5 / 4)


def test_speedup_ties_pick_first_minimum_of_baseline():
    # Smoothed 6, 4, 4, 4: the minimum 4 is first reached at t = 3.
    adam = records("adam", 1.0, 1, [8, 4, 4, 4, 4])
    same = records("same", 1.0, 1, [8, 4, 4, 4, 4])
    row = table(adam, same).loc["same"]
    assert row["T_baseline"] == 3 and row["speedup"] == 1.0


def test_speedup_uneven_logging_uses_iteration_numbers():
    # Logged every 2 steps at 2, 4, ..., 12 with window 4: smoothed at t >= 4.
    # Adam losses 10, 8, 6, 4, 4, 6: smoothed at 4,6,8,10,12 = 9, 7, 5, 4, 5 -> T=10, L*=4.
    adam = records("adam", 1.0, 1, [10, 8, 6, 4, 4, 6], every=2)
    # Method 9, 5, 3, ...: smoothed at t=4: 7, t=6: 4 -> T_m = 6.
    method = records("m", 1.0, 1, [9, 5, 3, 3, 3, 3], every=2)
    row = table(adam, method, window=4).loc["m"]
    assert (row["T_baseline"], row["T_method"]) == (10, 6)
    assert row["speedup"] == pytest.approx(10 / 6)


def test_speedup_multiple_seeds_mean_and_interval():
    # Seed 1: L* = 4 at t = 5 (as above); seed 2: smoothed 9, 7, 5, 4 -> L* = 4 at t = 5.
    adam = [
        records("adam", 1.0, 1, [10, 8, 6, 4, 4, 5]),
        records("adam", 1.0, 2, [10, 8, 6, 4, 4, 4]),
    ]
    # Seed 1 reaches 4 at t=3 (speedup 5/3); seed 2 never does (counts as 0).
    method = [
        records("m", 1.0, 1, [9, 7, 1, 5, 1, 1]),
        records("m", 1.0, 2, [9, 9, 9, 9, 9, 9]),
    ]
    row = table(*adam, *method).loc["m"]
    assert row["seeds"] == 2 and row["reached"] == 1
    assert row["speedup"] == pytest.approx((5 / 3 + 0) / 2)
    assert row["T_method"] == 3
    # Bootstrap means of {5/3, 0} lie in [0, 5/3]; both extremes are likely in 10k draws.
    assert row["ci_low"] == pytest.approx(0.0) and row["ci_high"] == pytest.approx(5 / 3)


def test_extra_pair_and_missing_baseline():
    adam = records("adam", 1.0, 1, [10, 8, 6, 4, 4, 5])
    sgd = records("momentum_sgd", 1.0, 1, [10, 8, 6, 4, 3, 5])  # smoothed min 3.5 at t=5
    yf = records("yellowfin", 1.0, 1, [4, 3, 5, 5, 5, 5])  # smoothed 3.5 at t=2
    out = speedup_table(pd.concat([adam, sgd, yf]), "adam", pairs=[("yellowfin", "momentum_sgd")])
    pair = out[(out["optimizer"] == "yellowfin") & (out["baseline"] == "momentum_sgd")]
    assert pair["speedup"].item() == pytest.approx(5 / 2)
    with pytest.raises(UserError, match="no 'sgd' runs"):
        speedup_table(pd.concat([adam, yf]), "sgd")


def test_window_longer_than_runs_is_a_user_error():
    adam = records("adam", 1.0, 1, [1, 2, 3])
    with pytest.raises(UserError, match="smaller --window"):
        speedup_table(adam, "adam", window=10)
