"""Loading run directories written to the run record contract (run_config.json,
summary.json, metrics.jsonl or metrics.jsonl.gz)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.run_builder import TOY_TASK, write_run
from yfbench.analysis.runs import load_runs, runs_table, setting_labels
from yfbench.analysis.speedup import speedup_table
from yfbench.errors import DataError

WINDOW = 5  # write_run's default smoothing window


def test_loader_reads_identity_status_and_provenance(tmp_path: Path):
    write_run(tmp_path, {"name": "adam", "lr": 0.1}, 1, [3.0, 2.0, 1.0], **TOY_TASK)
    write_run(
        tmp_path, {"name": "adam", "lr": 1.0}, 1, [3.0, float("nan")], status="diverged", **TOY_TASK
    )
    write_run(tmp_path, {"name": "adam", "lr": 5.0}, 1, [], status="failed", **TOY_TASK)
    frame = load_runs([tmp_path])
    table = runs_table(frame).set_index("hparams")
    assert table.loc["lr=1", "status"] == "diverged" and table.loc["lr=1", "diverged_step"] == 2
    assert table.loc["lr=5", "error"] == "boom"
    assert table.loc["lr=0.1", "git_commit"] == "abcdef0123456789"
    assert table.loc["lr=0.1", "torch"] == "2.9.0"
    assert set(table["window"]) == {WINDOW} and set(table["setting"]) == {"default"}
    # The failed run logged nothing but keeps one row; "nan" strings load as floats.
    assert len(frame[frame["status"] == "failed"]) == 1
    assert frame.loc[frame["hparams"] == "lr=1", "loss"].isna().sum() == 1


def test_gzipped_metrics_load_like_plain_ones(tmp_path: Path):
    losses = [3.0, 2.0, 1.5, 1.0]
    write_run(tmp_path / "plain", {"name": "adam", "lr": 0.1}, 1, losses, **TOY_TASK)
    write_run(tmp_path / "packed", {"name": "adam", "lr": 0.1}, 1, losses, packed=True, **TOY_TASK)
    plain, packed = load_runs([tmp_path / "plain"]), load_runs([tmp_path / "packed"])
    columns = ["split", "step", "loss", "lr", "momentum"]
    pd.testing.assert_frame_equal(plain[columns], packed[columns])


def test_both_metrics_files_is_an_error_naming_both(tmp_path: Path):
    run = write_run(tmp_path, {"name": "adam", "lr": 0.1}, 1, [1.0], packed=True, **TOY_TASK)
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 1.0}\n')
    with pytest.raises(DataError, match="both .*metrics.jsonl and .*metrics.jsonl.gz"):
        load_runs([tmp_path])


def test_truncated_last_line_is_skipped_and_missing_summary_is_incomplete(tmp_path: Path):
    run = write_run(tmp_path, {"name": "adam", "lr": 0.1}, 1, [3.0, 2.0], status=None, **TOY_TASK)
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 3, "split": "tr')
    frame = load_runs([tmp_path])
    assert frame["status"].unique().tolist() == ["incomplete"]
    assert frame["step"].tolist() == [1, 2]


def test_setting_labels_name_only_the_keys_that_differ():
    assert setting_labels([{"a": "1"}, {"a": "1"}]) == ["default", "default"]
    labels = setting_labels([{"t.s": "0", "x": "1"}, {"t.s": "15", "x": "1"}, {"x": "1"}])
    assert labels == ["t.s=0", "t.s=15", "t.s=unset"]


def test_staleness_runs_are_a_separate_setting_not_a_collision(tmp_path: Path):
    # Same grid points and seeds, synchronous and with staleness 15: two settings.
    for staleness, rate in ((0, 1.0), (15, 0.5)):
        trainer = {"staleness": staleness}
        losses = [4.0 - rate * t for t in range(4)] + [1.0]
        write_run(
            tmp_path, {"name": "adam", "lr": 0.1}, 1, losses, window=1, trainer=trainer, **TOY_TASK
        )
        write_run(
            tmp_path, {"name": "sgd", "lr": 0.1}, 1, losses, window=1, trainer=trainer, **TOY_TASK
        )
    frame = load_runs([tmp_path])
    assert sorted(runs_table(frame)["setting"].unique()) == [
        "trainer.staleness=0",
        "trainer.staleness=15",
    ]
    table = speedup_table(frame, "adam").set_index("setting")
    assert len(table) == 2
    # Each setting compares its own runs: identical curves, so exactly 1x in both.
    assert table["speedup_tt"].tolist() == [1.0, 1.0]
    assert table["seeds"].tolist() == [1, 1]
