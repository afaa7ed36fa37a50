"""Seed independence: correlation of detrended training losses between seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.run_builder import TOY_TASK, write_run
from yfbench.analysis.__main__ import main
from yfbench.analysis.runs import load_runs
from yfbench.analysis.seeds import detrend, seed_correlations
from yfbench.errors import UserError

STEPS = 14
# Alternating 1, 4, 1, 4, ...: at a 4 the centred 3-point mean is (1 + 4 + 1) / 3 = 2,
# residual +2; at a 1 it is 3, residual -2.
ZIGZAG = [1.0 if t % 2 else 4.0 for t in range(1, STEPS + 1)]


def test_detrend_removes_the_centred_mean_and_drops_the_ends():
    residual = detrend(pd.Series([1.0, 4.0, 1.0, 4.0, 1.0], index=[1, 2, 3, 4, 5]), window=3)
    # Centred means at steps 2, 3, 4: 2, 3, 2 -> residuals 2, -2, 2.
    assert residual.index.tolist() == [2, 3, 4]
    assert residual.tolist() == [2.0, -2.0, 2.0]


def test_detrend_window_must_be_odd():
    with pytest.raises(UserError, match="odd"):
        detrend(pd.Series([1.0, 2.0]), window=4)


def test_correlations_median_over_seed_pairs(tmp_path: Path):
    trend = [0.5 * t for t in range(STEPS)]
    # Seed 1: zigzag; seed 2: the opposite zigzag (r = -1 with seed 1); seed 3: seed 1's
    # zigzag on a linear trend, which a centred mean removes exactly (r = +1 with seed 1).
    curves = {
        1: ZIGZAG,
        2: [5.0 - v for v in ZIGZAG],
        3: [v + d for v, d in zip(ZIGZAG, trend, strict=True)],
    }
    for seed, losses in curves.items():
        write_run(tmp_path, {"name": "adam", "lr": 0.1}, seed, losses, **TOY_TASK)
    write_run(tmp_path, {"name": "sgd", "lr": 0.1}, 1, ZIGZAG, **TOY_TASK)  # one seed: no row
    table = seed_correlations(load_runs([tmp_path]), window=3)
    assert len(table) == 1
    row = table.iloc[0]
    # Pairs (1,2) = -1, (1,3) = +1, (2,3) = -1: median -1.
    assert row["pairs"] == 3 and row["steps"] == STEPS - 2
    assert row["r_median"] == pytest.approx(-1.0)
    assert (row["r_min"], row["r_max"]) == pytest.approx((-1.0, 1.0))
    assert row["band"] == pytest.approx(2 / np.sqrt(STEPS - 2))


def test_seeds_cli_prints_a_table_and_says_when_there_is_nothing_to_correlate(
    tmp_path: Path, capsys
):
    for seed in (1, 2):
        write_run(tmp_path / "two", {"name": "adam", "lr": 0.1}, seed, ZIGZAG, **TOY_TASK)
    assert main(["seeds", str(tmp_path / "two"), "--detrend", "3"]) == 0
    assert "| +1.00 |" in capsys.readouterr().out
    write_run(tmp_path / "one", {"name": "adam", "lr": 0.1}, 1, ZIGZAG, **TOY_TASK)
    assert main(["seeds", str(tmp_path / "one")]) == 2
    assert "no grid point has two or more seeds" in capsys.readouterr().err


def test_the_early_fall_shared_by_every_seed_is_not_counted_as_shared_noise(tmp_path: Path):
    # Every seed falls along the same steep exponential (a shape a moving average lags
    # behind), then only its own noise is left: r near 0 once the first 10% is left out.
    steps = pd.RangeIndex(1, 201)
    fall = 10.0 * np.exp(-steps.to_numpy() / 3.0)
    curves = {s: fall + np.random.default_rng(s).normal(0.0, 0.02, len(steps)) for s in (1, 2)}
    whole = [detrend(pd.Series(curves[s], index=steps), window=3) for s in (1, 2)]
    assert np.corrcoef(whole[0], whole[1])[0, 1] > 0.3  # what the shared fall alone does
    for seed, losses in curves.items():
        write_run(tmp_path, {"name": "adam", "lr": 0.1}, seed, list(losses), **TOY_TASK)
    row = seed_correlations(load_runs([tmp_path]), window=3).iloc[0]
    assert row["steps"] == 180  # steps 20..199 (step 200 has no centred window)
    assert abs(row["r_median"]) < row["band"]


def noise_frame(curves: dict[int, np.ndarray], epoch: int) -> pd.DataFrame:
    """A loaded-frame slice: one grid point, train losses per seed, and valid records that
    say the epoch length (step / epoch)."""
    rows = []
    for seed, losses in curves.items():
        run = f"run-{seed}"
        base = {"run_dir": run, "task": "toy", "scale": "mini", "setting": "default"}
        base |= {"optimizer": "adam", "hparams": "lr=0.1", "seed": seed}
        rows += [{**base, "split": "train", "step": t, "loss": v} for t, v in enumerate(losses, 1)]
        rows.append({**base, "split": "valid", "step": epoch, "epoch": 1.0, "loss": 0.0})
    return pd.DataFrame(rows)


def ar1(seed: int, steps: int, phi: float = 0.8) -> np.ndarray:
    """Autocorrelated noise: the residuals of a detrended loss are like this."""
    shocks = np.random.default_rng(seed).normal(0.0, 1.0, steps)
    out = np.zeros(steps)
    for t in range(1, steps):
        out[t] = phi * out[t - 1] + shocks[t]
    return out


STEPS_NULL, EPOCH = 3000, 300


def test_independent_autocorrelated_seeds_fall_inside_the_circular_shift_null():
    curves = {s: 5.0 + ar1(s, STEPS_NULL) for s in (1, 2, 3)}
    row = seed_correlations(noise_frame(curves, EPOCH), window=11).iloc[0]
    assert row["null_low"] < 0 < row["null_high"]
    assert not row["beyond_null"]
    # The shift null is wider than the i.i.d. rule's +-2/sqrt(n) would be for the median.
    assert row["steps_per_epoch"] == EPOCH


def test_shared_noise_is_beyond_the_null():
    shared = ar1(99, STEPS_NULL)
    curves = {s: 5.0 + shared + 0.3 * ar1(s, STEPS_NULL) for s in (1, 2, 3)}
    row = seed_correlations(noise_frame(curves, EPOCH), window=11).iloc[0]
    assert row["r_median"] > 0.8 and row["beyond_null"]
    assert row["r_no_epoch_starts"] > 0.8  # not an epoch-start effect
    assert row["r_no_epoch_starts"] > row["null_no_epoch_high"]


def test_shared_epoch_start_jumps_raise_r_and_leaving_them_out_removes_it():
    # Every seed's loss jumps by 3 for the first 5 steps of each epoch (the LSTM state
    # reset), at the same steps in every seed; otherwise independent noise.
    steps = np.arange(1, STEPS_NULL + 1)
    jump = np.where((steps - 1) % EPOCH < 5, 3.0, 0.0)
    curves = {s: 5.0 + jump + ar1(s, STEPS_NULL) for s in (1, 2, 3)}
    row = seed_correlations(noise_frame(curves, EPOCH), window=11).iloc[0]
    assert row["beyond_null"] and row["r_median"] > row["null_high"]
    assert row["null_no_epoch_low"] <= row["r_no_epoch_starts"] <= row["null_no_epoch_high"]
