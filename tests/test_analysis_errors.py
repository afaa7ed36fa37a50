"""Bad input: every analysis error names the file and what to do, in one line, exit 2."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run_builder import TOY_TASK, write_run
from yfbench.analysis.__main__ import main

LOSSES = [4.0, 3.0, 2.0, 1.0]


def one_error_line(capsys, argv: list[str]) -> str:
    """Run the CLI; it must exit 2 with one ``error:`` line and no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def two_optimizers(root: Path, **kwargs) -> Path:
    write_run(root, {"name": "adam", "lr": 0.1}, 1, LOSSES, window=1, **kwargs, **TOY_TASK)
    return write_run(root, {"name": "sgd", "lr": 0.1}, 1, LOSSES, window=1, **kwargs, **TOY_TASK)


def test_truncated_summary_names_the_file_and_what_to_do(tmp_path: Path, capsys):
    run = two_optimizers(tmp_path)
    (run / "summary.json").write_text('{"status": "compl')
    err = one_error_line(capsys, ["speedup", str(tmp_path)])
    assert str(run / "summary.json") in err
    assert "truncated" in err and "delete the file to count the run as incomplete" in err


def test_truncated_run_config_names_the_file(tmp_path: Path, capsys):
    run = two_optimizers(tmp_path)
    (run / "run_config.json").write_text('{"config_hash": "00')
    err = one_error_line(capsys, ["speedup", str(tmp_path)])
    assert str(run / "run_config.json") in err and "re-run the run" in err


def test_run_config_of_an_older_format_says_so(tmp_path: Path, capsys):
    run = two_optimizers(tmp_path)
    (run / "run_config.json").write_text(json.dumps({"seed": 1, "task": {"name": "t"}}))
    err = one_error_line(capsys, ["speedup", str(tmp_path)])
    assert str(run / "run_config.json") in err and "predates the run record contract" in err


def test_corrupt_metrics_line_names_file_and_line(tmp_path: Path, capsys):
    run = two_optimizers(tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    err = one_error_line(capsys, ["speedup", str(tmp_path)])
    assert f"{run / 'metrics.jsonl'}:2 is not valid JSON" in err


def test_metrics_record_without_integer_step_names_file_and_line(tmp_path: Path, capsys):
    run = two_optimizers(tmp_path)
    (run / "metrics.jsonl").write_text('{"step": "one", "split": "train", "loss": 1}\n{}\n')
    err = one_error_line(capsys, ["plot", str(tmp_path), "--out", str(tmp_path / "p")])
    assert f"{run / 'metrics.jsonl'}:1 is not a metrics record" in err


def test_damaged_gzip_names_the_file(tmp_path: Path, capsys):
    run = two_optimizers(tmp_path, packed=True)
    packed = gzip.compress(b'{"step": 1, "split": "train", "loss": 1.0}\n' * 50)
    (run / "metrics.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    err = one_error_line(capsys, ["speedup", str(tmp_path)])
    assert f"cannot read {run / 'metrics.jsonl.gz'}" in err and "restore it" in err


def test_both_metrics_files_names_both(tmp_path: Path, capsys):
    run = two_optimizers(tmp_path, packed=True)
    (run / "metrics.jsonl").write_text("")
    err = one_error_line(capsys, ["speedup", str(tmp_path)])
    assert f"both {run / 'metrics.jsonl'} and {run / 'metrics.jsonl.gz'}" in err


def test_runs_of_one_optimizer_only_say_so(tmp_path: Path, capsys):
    write_run(tmp_path, {"name": "adam", "lr": 0.1}, 1, LOSSES, window=1, **TOY_TASK)
    write_run(tmp_path, {"name": "adam", "lr": 0.2}, 1, LOSSES, window=1, **TOY_TASK)
    err = one_error_line(capsys, ["speedup", str(tmp_path)])
    assert "only 'adam' runs" in err and "at least one other optimizer" in err


def test_missing_baseline_says_which_optimizers_exist(tmp_path: Path, capsys):
    two_optimizers(tmp_path)
    err = one_error_line(capsys, ["speedup", str(tmp_path), "--baseline", "yellowfin"])
    assert "no 'yellowfin' runs" in err and "found adam, sgd" in err


def test_no_run_directories(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    err = one_error_line(capsys, ["speedup", str(tmp_path / "empty")])
    assert "no run directories (folders with run_config.json)" in err
    err = one_error_line(capsys, ["seeds", str(tmp_path / "missing")])
    assert "does not exist" in err


def test_mixed_windows_name_the_windows_and_the_fix(tmp_path: Path, capsys):
    write_run(tmp_path, {"name": "adam", "lr": 0.1}, 1, LOSSES, window=1, **TOY_TASK)
    write_run(tmp_path, {"name": "sgd", "lr": 0.1}, 1, LOSSES, window=2, **TOY_TASK)
    err = one_error_line(capsys, ["speedup", str(tmp_path)])
    assert "toy_task/mini (default): runs disagree on analysis.window: 1 in 1 runs (e.g." in err
    assert "2 in 1 runs" in err
    assert "--window N" in err
    assert main(["speedup", str(tmp_path), "--window", "1"]) == 0


def test_two_runs_of_one_grid_point_and_seed_name_both(tmp_path: Path, capsys):
    two_optimizers(tmp_path / "a")
    two_optimizers(tmp_path / "b")
    err = one_error_line(capsys, ["speedup", str(tmp_path)])
    assert "two runs of the same grid point, setting and seed" in err
    assert str(tmp_path / "a") in err and str(tmp_path / "b") in err


def test_bad_ladder_is_an_argument_error(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["speedup", str(tmp_path), "--ladder", "half"])
    assert exit_info.value.code == 2
    assert "expected fractions" in capsys.readouterr().err
    two_optimizers(tmp_path)
    err = one_error_line(capsys, ["speedup", str(tmp_path), "--ladder", "0.5,2"])
    assert "ladder fractions must lie in (0, 1]" in err


def test_module_entry_point_prints_no_traceback(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "yfbench.analysis", "speedup", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: run directory")
