"""Verification on read: the analysis refuses run files that disagree with each other.

Real runs (the trainer's own summary with its metrics fingerprint) are damaged the ways a
careless or hostile user would; runs made before the fingerprint existed (the committed
ones) are verified as far as their files allow.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import compose_config
from tests.run_builder import TOY_TASK, write_run
from yfbench.analysis.__main__ import main
from yfbench.analysis.runs import find_run_dirs, format_value, load_runs, runs_table
from yfbench.analysis.speedup import compare_all
from yfbench.engine.trainer import run
from yfbench.errors import DataError
from yfbench.fingerprint import file_fingerprint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from compress_runs import compress

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = 30


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """Two real runs of one setting: Adam and YellowFin on the noisy quadratic."""
    root = tmp_path_factory.mktemp("runs")
    for optimizer in ("adam", "yellowfin"):
        cfg = compose_config(
            ["task=noisy_quadratic", f"trainer.max_steps={STEPS}", f"optimizer={optimizer}"]
        )
        assert run(cfg, root / optimizer)["status"] == "completed"
    return root


@pytest.fixture
def runs(made: Path, tmp_path: Path) -> Path:
    shutil.copytree(made, tmp_path / "runs")
    return tmp_path / "runs"


def _refused(path: Path, *fragments: str) -> str:
    with pytest.raises(DataError) as refused:
        load_runs([path])
    for fragment in fragments:
        assert fragment in str(refused.value), str(refused.value)
    return str(refused.value)


def _lines(run_dir: Path) -> list[str]:
    return (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)


def _old_summary(run_dir: Path) -> None:
    """As runs made before the fingerprint existed (the committed ones) have it."""
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    del summary["metrics_file"]
    path.write_text(json.dumps(summary))


def test_the_summary_fingerprints_its_metrics_and_untouched_runs_load(runs):
    summary = json.loads((runs / "adam" / "summary.json").read_text())
    assert summary["metrics_file"] == file_fingerprint(runs / "adam" / "metrics.jsonl")
    assert summary["metrics_file"]["last_step"] == STEPS
    compress(runs / "adam")  # the committed form: every gzip member is what is verified
    assert runs_table(load_runs([runs]))["status"].tolist() == ["completed", "completed"]


@pytest.mark.parametrize("old", [False, True], ids=["fingerprinted", "older_summary"])
def test_a_metrics_file_cut_at_a_line_boundary_is_refused(runs, old):
    run_dir = runs / "adam"
    if old:
        _old_summary(run_dir)
    train = [line for line in _lines(run_dir) if '"train"' in line]
    (run_dir / "metrics.jsonl").write_text("".join(train[: STEPS // 2]))
    _refused(runs, str(run_dir / "metrics.jsonl"), "cut")


@pytest.mark.parametrize("old", [False, True], ids=["fingerprinted", "older_summary"])
def test_a_gzip_member_appended_to_a_finished_run_is_refused(runs, old):
    run_dir = runs / "adam"
    if old:
        _old_summary(run_dir)
    extra = "".join(
        json.dumps({"step": step, "split": "train", "loss": 0.01, "lr": 0.1, "momentum": 0.9})
        + "\n"
        for step in range(STEPS + 1, 2001)
    )
    compress(run_dir)
    with open(run_dir / "metrics.jsonl.gz", "ab") as handle:
        handle.write(gzip.compress(extra.encode()))
    _refused(runs, str(run_dir / "metrics.jsonl.gz"), "appended")


def test_an_edited_record_of_a_finished_run_is_refused(runs):
    lines = _lines(runs / "adam")
    record = json.loads(lines[3])
    record["loss"] = record["loss"] * 0.5  # a plausible number, but not the one logged
    lines[3] = json.dumps(record) + "\n"
    (runs / "adam" / "metrics.jsonl").write_text("".join(lines))
    _refused(runs, "does not match the run's summary.json", "sha256")


def test_a_copy_with_another_seed_in_its_run_config_is_refused(runs):
    copy = runs / "adam_seed2"
    shutil.copytree(runs / "adam", copy)
    path = copy / "run_config.json"
    record = json.loads(path.read_text())
    record["config"]["seed"] = 2
    path.write_text(json.dumps(record))
    _refused(runs, str(path), "config_hash does not match its config")


@pytest.mark.parametrize("steps", [10**9, -1, "30", True])
def test_an_implausible_step_count_is_refused(runs, steps):
    path = runs / "adam" / "summary.json"
    summary = json.loads(path.read_text())
    summary["steps"] = steps
    path.write_text(json.dumps(summary))
    _refused(runs, str(path), f"steps={steps!r}")


@pytest.mark.parametrize(
    ("loss", "fragment"),
    [
        ("NaN", "non-finite"),
        ("Infinity", "non-finite"),
        ('"nan"', "non-finite"),
        ("null", "None, not a number"),
        ("true", "True, not a number"),
        ('"abc"', "'abc', not a number"),
        ("-1e300", "beyond what the divergence rule allows"),
        ("1e300", "beyond what the divergence rule allows"),
    ],
)
def test_a_completed_runs_absurd_or_non_numeric_loss_is_refused(runs, loss, fragment):
    run_dir = runs / "adam"
    _old_summary(run_dir)  # no fingerprint: the values themselves must be checked
    lines = _lines(run_dir)
    record = json.loads(lines[10])
    text = json.dumps({**record, "loss": "LOSS"}).replace('"LOSS"', loss)
    lines[10] = text + "\n"
    (run_dir / "metrics.jsonl").write_text("".join(lines))
    _refused(runs, str(run_dir / "metrics.jsonl"), fragment)


def test_a_non_numeric_loss_is_one_message_on_the_command_line(runs, capsys):
    lines = _lines(runs / "adam")
    lines[5] = lines[5].replace('"loss": ', '"loss": "abc", "was": ', 1)
    (runs / "adam" / "metrics.jsonl").write_text("".join(lines))
    assert main(["speedup", str(runs), "--window", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "'abc', not a number" in err


def test_a_diverged_run_keeps_its_non_finite_loss(tmp_path):
    write_run(
        tmp_path, {"name": "adam", "lr": 1.0}, 1, [3.0, float("nan")], status="diverged", **TOY_TASK
    )
    assert runs_table(load_runs([tmp_path]))["status"].tolist() == ["diverged"]


def test_settings_differing_in_the_seventh_digit_stay_apart(tmp_path):
    assert format_value(0.001) == "0.001" and format_value(1.0) == "1"  # short where exact
    assert format_value(0.0010000001) != format_value(0.001)
    # numpy floats (what a pandas column holds) read back as numbers, not "np.float64(...)"
    assert float(format_value(np.float64(1 / 3))) == 1 / 3
    losses = [4.0, 3.0, 2.0, 1.0]
    for momentum in (0.9, 0.90000001):
        write_run(tmp_path / f"m{momentum}", {"name": "adam", "lr": 0.1}, 1, losses,
                  trainer={"momentum_hint": momentum}, **TOY_TASK)  # fmt: skip
    table = runs_table(load_runs([tmp_path]))
    assert table["setting"].nunique() == 2


def test_a_directory_of_runs_reached_through_a_symlink_is_followed_once(runs, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "linked").symlink_to(runs, target_is_directory=True)
    (runs / "loop").symlink_to(runs, target_is_directory=True)  # a link loop ends
    found = find_run_dirs([outside])
    assert [p.name for p in found] == ["adam", "yellowfin"]
    assert len(find_run_dirs([outside, runs])) == 2  # the same run by two paths: once
    assert len(runs_table(load_runs([outside]))) == 2


def test_a_setting_that_cannot_be_compared_is_skipped_not_fatal(tmp_path, caplog):
    losses = [4.0, 3.0, 2.0, 1.5, 1.2, 1.0]
    for name in ("adam", "yellowfin"):
        write_run(tmp_path, {"name": name, "lr": 0.1}, 1, losses, **TOY_TASK)
    write_run(
        tmp_path, {"name": "adam", "lr": 0.1}, 1, losses, trainer={"staleness": 15}, **TOY_TASK
    )
    with caplog.at_level(logging.WARNING):
        comparisons = compare_all(load_runs([tmp_path]), "adam", window=2)
    assert [c.info["setting"] for c in comparisons] == ["trainer.staleness=unset"]
    assert "skipped" in caplog.text and "only 'adam' runs" in caplog.text


def test_committed_runs_still_load_and_verify():
    # The finished CPU-scale grid (the paper-scale grid may hold runs still in progress).
    root = REPO_ROOT / "results" / "runs" / "tinyshakespeare_lstm" / "cpu"
    if not root.is_dir():
        pytest.skip("no committed runs in this checkout")
    table = runs_table(load_runs([root]))
    assert len(table) >= 3 and set(table["status"]) <= {"completed", "diverged"}
