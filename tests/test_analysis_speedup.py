"""Speedup rules on hand-made loss curves whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from yfbench.analysis.speedup import (
    Curve,
    aggregate,
    compare_all,
    seeds_frame,
    smooth,
    speedup_table,
    summary_frame,
)
from yfbench.analysis.tables import speedup_cell
from yfbench.errors import UserError

NAN = math.nan


def authors_running_mean(x: list[float], n: int) -> np.ndarray:
    """The authors' plotting code, verbatim in spirit: a 'valid' running mean."""
    cumsum = np.cumsum(np.insert(np.asarray(x, dtype=float), 0, 0))
    return (cumsum[n:] - cumsum[:-n]) / n


def records(
    optimizer: str,
    lr: float,
    seed: int,
    losses: list[float],
    status: str = "completed",
    every: int = 1,
    window: int = 2,
) -> pd.DataFrame:
    """A loaded-frame slice for one run: train losses logged every ``every`` steps."""
    n = len(losses)
    return pd.DataFrame(
        {
            "run_dir": f"{optimizer}-{lr}-{seed}",
            "task": "toy",
            "scale": "mini",
            "setting": "default",
            "optimizer": optimizer,
            "hparams": f"lr={lr}",
            "opt.lr": lr,
            "seed": seed,
            "status": status,
            "window": window,
            "split": "train",
            "step": np.arange(1, n + 1) * every,
            "loss": losses,
        }
    )


def table(*runs: pd.DataFrame, **kwargs) -> pd.DataFrame:
    frame = pd.concat(runs, ignore_index=True)
    return speedup_table(frame, "adam", **kwargs).set_index("optimizer")


# --- smoothing ---------------------------------------------------------------------------


def test_smooth_is_the_authors_valid_mean_indexed_by_window_end():
    losses = [6.0, 4.0, 2.0, 4.0, 0.0, 2.0]
    t, s = smooth(np.arange(1, 7), np.array(losses), window=3)
    # Windows (1..3), (2..4), (3..5), (4..6): means 4, 10/3, 2, 2.
    assert t.tolist() == [3, 4, 5, 6]
    np.testing.assert_allclose(s, [4.0, 10 / 3, 2.0, 2.0])
    # Element i of the authors' series covers iterations i+1..i+3: ours at t = i + 3.
    np.testing.assert_allclose(authors_running_mean(losses, 3), s)


def test_smooth_uneven_logging_uses_iteration_numbers():
    t, s = smooth(np.array([2, 4, 5, 9, 10]), np.array([8.0, 6.0, 4.0, 2.0, 0.0]), window=4)
    # t=4: iterations 1..4 -> logged 2, 4 -> 7; t=5: 8, 6, 4 -> 6; t=9: 2; t=10: 1.
    assert t.tolist() == [4, 5, 9, 10]
    np.testing.assert_allclose(s, [7.0, 6.0, 2.0, 1.0])


def test_smooth_nan_poisons_only_windows_containing_it():
    _, s = smooth(np.arange(1, 7), np.array([1.0, 1.0, NAN, 1.0, 1.0, 1.0]), window=2)
    assert np.isnan(s).tolist() == [False, True, True, False, False]


def test_smooth_rejects_unordered_steps():
    with pytest.raises(UserError, match="increasing"):
        smooth(np.array([2, 1]), np.array([1.0, 1.0]), window=1)


# --- the two conventions -----------------------------------------------------------------


def test_paper_and_tt_conventions_on_a_hand_made_series():
    # W = 3. Baseline smoothed at t = 3..8: 6, 4, 3, 2, 3, 4 -> L* = 2 at t = 6 (index 3).
    base = [9, 6, 3, 3, 3, 0, 6, 6]
    # Method smoothed at t = 3..8: 2, 2, 2, 2, 1, 0: equal to L* from t = 3 (index 0),
    # strictly below it from t = 7 (index 4).
    method = [3, 3, 0, 3, 3, 0, 0, 0]
    base_s, method_s = authors_running_mean(base, 3), authors_running_mean(method, 3)
    assert np.argmin(base_s) == 3
    assert np.argmax(method_s < base_s.min()) == 4
    row = table(
        records("adam", 1.0, 1, base, window=3), records("m", 1.0, 1, method, window=3)
    ).loc["m"]
    assert row["T_baseline"] == 6
    # paper: index ratio 3 / 4 = (T_b - W) / (T_m - W) = (6 - 3) / (7 - 3).
    assert row["T_method_paper"] == 7 and row["speedup_paper"] == pytest.approx(3 / 4)
    # T/T: first iteration at or below L* is t = 3, so 6 / 3.
    assert row["T_method_tt"] == 3 and row["speedup_tt"] == pytest.approx(2.0)


def test_ties_take_the_first_index_in_both_series():
    # W = 2. Baseline smoothed at t = 2..6: 5, 3, 3, 3, 3 -> first minimum at t = 3
    # (index 1). Method smoothed: 6, 5, 3, 2, 2 -> <= 3 first at t = 4, < 3 at t = 5 (index 3).
    base, method = [6, 4, 2, 4, 2, 4], [6, 6, 4, 2, 2, 2]
    assert np.argmin(authors_running_mean(base, 2)) == 1
    assert np.argmax(authors_running_mean(method, 2) < 3) == 3
    row = table(records("adam", 1.0, 1, base), records("m", 1.0, 1, method)).loc["m"]
    assert row["T_baseline"] == 3
    assert row["speedup_paper"] == pytest.approx(1 / 3)  # (3 - 2) / (5 - 2)
    assert row["speedup_tt"] == pytest.approx(3 / 4)


def test_tied_grid_points_tune_to_the_first_hyperparameter_text():
    same = [10, 8, 6, 4, 4, 5]
    adam = [records("adam", 0.1, 1, same), records("adam", 0.01, 1, same)]
    row = table(*adam, records("m", 1.0, 1, same)).loc["m"]
    assert row["baseline_hparams"] == "lr=0.01"  # "lr=0.01" sorts before "lr=0.1"


def test_identical_curves_are_1x_in_tt_and_unreached_in_the_paper_convention():
    # The strict < never fires on a copy of the baseline: a bound (T_end = 6), not a 0.
    same = [10, 8, 6, 4, 4, 5]  # smoothed 9, 7, 5, 4, 4.5 -> L* = 4 at t = 5
    row = table(records("adam", 1.0, 1, same), records("m", 1.0, 1, same)).loc["m"]
    assert row["speedup_tt"] == 1.0 and row["reached_tt"] == 1
    assert row["reached_paper"] == 0 and math.isnan(row["speedup_paper"])
    assert row["bound_paper"] == pytest.approx((5 - 2) / (6 - 2))


# --- aggregation over seeds -----------------------------------------------------------------

# W = 1 (no smoothing). Baseline: loss 10 - t for t <= 9, then 1.5: L* = 1 at T_b = 9.
BASE = [10 - t for t in range(1, 10)] + [1.5]
# Method seeds: below 1 at t = 3, at t = 5, and never (T_end = 10).
FAST = [5, 3, 0.5] + [0.5] * 7
SLOW = [5, 4, 3, 2, 0.5] + [0.5] * 5
NEVER = [2.0] * 10


def three_seeds() -> pd.Series:
    adam = [records("adam", 1.0, s, BASE, window=1) for s in (1, 2, 3)]
    method = [records("m", 1.0, s, c, window=1) for s, c in ((1, FAST), (2, SLOW), (3, NEVER))]
    return table(*adam, *method).loc["m"]


def test_unreached_seed_is_a_bound_and_left_out_of_the_median():
    row = three_seeds()
    assert row["seeds"] == 3 and row["reached_tt"] == 2 and row["reached_paper"] == 2
    # T/T: seeds 9/3 = 3 and 9/5 = 1.8; median 2.4 (a zero for seed 3 would give 1.8).
    assert row["speedup_tt"] == pytest.approx(2.4)
    # paper: (9-1)/(3-1) = 4 and (9-1)/(5-1) = 2; median 3.
    assert row["speedup_paper"] == pytest.approx(3.0)
    # Seed 3 is a bound: T/T < 9/10, paper < (9-1)/(10-1).
    assert row["bound_tt"] == pytest.approx(0.9)
    assert row["bound_paper"] == pytest.approx(8 / 9)
    # Two reaching seeds: no range.
    assert math.isnan(row["low_tt"]) and math.isnan(row["high_paper"])
    # Seed 3's own best (2.0) is reached at t = 1; Adam first reaches 2.0 at t = 8.
    assert speedup_cell(row, "tt") == "2.40x (2/3 reached; the other < 0.90x, reverse 8.00x)"


def test_seed_rows_hold_both_ratios_and_the_bound():
    adam = [records("adam", 1.0, s, BASE, window=1) for s in (1, 2, 3)]
    method = [records("m", 1.0, s, c, window=1) for s, c in ((1, FAST), (2, SLOW), (3, NEVER))]
    seeds = seeds_frame(compare_all(pd.concat(adam + method), "adam", ladder=(1.0,)))
    seeds = seeds.set_index("seed")
    assert seeds["T_baseline"].tolist() == [9, 9, 9]
    assert seeds["T_method_tt"].tolist()[:2] == [3, 5] and math.isnan(seeds.loc[3, "T_method_tt"])
    assert seeds["speedup_paper"].tolist()[:2] == [4.0, 2.0]
    assert seeds.loc[3, "T_end"] == 10 and seeds.loc[3, "bound_tt"] == pytest.approx(0.9)
    assert seeds["bound_tt"].isna().tolist() == [True, True, False]


def test_no_seed_reached_reports_the_largest_bound():
    adam = [records("adam", 1.0, s, BASE, window=1) for s in (1, 2, 3)]
    method = [records("m", 1.0, s, NEVER, window=1) for s in (1, 2, 3)]
    row = table(*adam, *method).loc["m"]
    assert row["reached_tt"] == 0 and math.isnan(row["speedup_tt"])
    assert speedup_cell(row, "tt") == "reverse 8.00x (0/3 reached; < 0.90x)"


def timing(speedup: float, bound: float = NAN) -> dict[str, float]:
    """A per-seed row as time_seed makes it (T values are irrelevant to the aggregate)."""
    row = {"T_baseline": 10.0}
    for c in ("paper", "tt"):
        row |= {f"speedup_{c}": speedup, f"bound_{c}": bound, f"T_method_{c}": 5.0}
    return row


def test_aggregate_range_needs_three_reaching_seeds():
    one = aggregate([timing(2.0)])
    assert one["speedup_tt"] == 2.0 and math.isnan(one["low_tt"])
    three = aggregate([timing(1.0), timing(3.0), timing(2.5), timing(NAN, bound=0.5)])
    assert three["speedup_tt"] == 2.5 and three["reached_tt"] == 3 and three["seeds"] == 4
    assert (three["low_tt"], three["high_tt"]) == (1.0, 3.0)
    assert three["bound_tt"] == 0.5
    cell = speedup_cell(pd.Series(three), "tt")
    assert cell == "2.50x (3/4 reached, range 1.00x–3.00x; the other < 0.50x)"


def test_aggregate_bound_is_the_largest_of_the_unreached_seeds():
    rows = [timing(NAN, bound=0.9), timing(NAN, bound=1.5), timing(NAN, bound=0.7)]
    out = aggregate(rows)
    assert out["reached_paper"] == 0 and out["bound_paper"] == 1.5
    assert speedup_cell(pd.Series(out), "paper") == "< 1.50x (0/3 reached)"


def test_unpaired_seeds_are_left_out_and_named():
    adam = [records("adam", 1.0, s, BASE, window=1) for s in (1, 2)]
    row = table(*adam, records("m", 1.0, 1, FAST, window=1)).loc["m"]
    assert row["seeds"] == 1 and row["speedup_tt"] == pytest.approx(3.0)
    assert "adam seeds 2 unpaired" in row["note"]


def test_diverged_grid_point_is_not_tuned_when_another_completed():
    adam = records("adam", 1.0, 1, [10, 8, 6, 4, 4, 5])  # L* = 4 at t = 5
    # lr=1 reaches smoothed 1.5 at t=2 and then diverges; lr=0.1 completes with
    # smoothed 9.5, 8.5, 4 -> <= 4 at t = 4.
    early_best = records("m", 1.0, 1, [2, 1, 2, NAN], status="diverged")
    completed = records("m", 0.1, 1, [10, 9, 8, 0])
    row = table(adam, early_best, completed).loc["m"]
    assert row["best_hparams"] == "lr=0.1" and row["diverged"] == 1
    assert row["T_method_tt"] == 4 and row["speedup_tt"] == pytest.approx(5 / 4)


def test_only_diverged_runs_are_tuned_among_partial_runs_with_a_note():
    adam = records("adam", 1.0, 1, [10, 8, 6, 4, 4, 5])
    boom = records("boom", 1.0, 1, [10, 8, 6, NAN, NAN, NAN], status="diverged")
    row = table(adam, boom).loc["boom"]
    assert row["reached_tt"] == 0 and row["bound_tt"] == pytest.approx(5 / 6)
    assert "partial" in row["note"]


def test_extra_pair_and_missing_baseline():
    adam = records("adam", 1.0, 1, [10, 8, 6, 4, 4, 5])
    sgd = records("momentum_sgd", 1.0, 1, [10, 8, 6, 4, 3, 5])  # smoothed min 3.5 at t=5
    yf = records("yellowfin", 1.0, 1, [4, 3, 5, 5, 5, 5])  # smoothed 3.5 at t=2
    out = speedup_table(pd.concat([adam, sgd, yf]), "adam", pairs=[("yellowfin", "momentum_sgd")])
    pair = out[(out["optimizer"] == "yellowfin") & (out["baseline"] == "momentum_sgd")]
    assert pair["speedup_tt"].item() == pytest.approx(5 / 2)
    with pytest.raises(UserError, match="no 'sgd' runs"):
        speedup_table(pd.concat([adam, yf]), "sgd")


def test_window_longer_than_runs_is_a_user_error():
    with pytest.raises(UserError, match="smaller --window"):
        speedup_table(records("adam", 1.0, 1, [1, 2, 3]), "adam", window=10)


# --- the speedup curve -------------------------------------------------------------------


def test_curve_ladder_targets_are_the_baselines_best_by_each_share_of_its_run():
    # W = 1, 8 iterations. Baseline losses 8, 6, 7, 4, 5, 2, 3, 1.
    # 25%: t <= 2 -> best 6 at t=2; 62.5%: t <= 5 -> best 4 at t=4 (not 5, the value at
    # t=5); 75%: t <= 6 -> 2 at t=6; 100%: 1 at t=8.
    base = [8, 6, 7, 4, 5, 2, 3, 1]
    # Method 7, 5, 3, 3, 1.5, 1.5, 1.5, 1.5.
    method = [7, 5, 3, 3, 1.5, 1.5, 1.5, 1.5]
    frame = pd.concat(
        [records("adam", 1.0, 1, base, window=1), records("m", 1.0, 1, method, window=1)]
    )
    comparisons = compare_all(frame, "adam", ladder=(0.25, 0.625, 0.75))
    seeds = seeds_frame(comparisons).set_index("fraction")
    assert seeds.index.tolist() == [0.25, 0.625, 0.75, 1.0]  # 100% is always a rung
    assert seeds["target_loss"].tolist() == [6, 4, 2, 1]
    assert seeds["T_baseline"].tolist() == [2, 4, 6, 8]
    # <= target: 6 at t=2, 4 at t=3, 2 at t=5, 1 never; < target: t=2, t=3, t=5, never.
    np.testing.assert_array_equal(seeds["T_method_tt"], [2, 3, 5, NAN])
    np.testing.assert_array_equal(seeds["T_method_paper"], [2, 3, 5, NAN])
    np.testing.assert_allclose(seeds["speedup_tt"], [1.0, 4 / 3, 6 / 5, NAN])
    # paper: (2-1)/(2-1), (4-1)/(3-1), (6-1)/(5-1).
    np.testing.assert_allclose(seeds["speedup_paper"], [1.0, 3 / 2, 5 / 4, NAN])
    assert seeds.loc[1.0, "bound_tt"] == 1.0  # 8 / T_end 8
    summary = summary_frame(comparisons).set_index("fraction")
    assert summary["reached_tt"].tolist() == [1, 1, 1, 0]


def test_curve_ladder_must_lie_in_zero_one():
    frame = pd.concat(
        [records("adam", 1.0, 1, BASE, window=1), records("m", 1.0, 1, FAST, window=1)]
    )
    with pytest.raises(UserError, match="ladder"):
        compare_all(frame, "adam", ladder=(0.0, 0.5))


def test_curve_best_uses_the_first_index_within_the_prefix():
    curve = Curve(np.array([1, 2, 3, 4]), np.array([3.0, 1.0, 1.0, 0.5]), last_step=4)
    assert curve.best(0.75) == (2, 1.0)
    assert curve.best() == (4, 0.5)
    assert curve.first_reach(1.0, strict=False) == 2 and curve.first_reach(1.0, strict=True) == 4
