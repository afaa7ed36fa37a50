"""Atomic outputs: every file the analysis and compress_runs.py write appears whole or not
at all; on a full disk the old file stays, no temporary file is left, and the one
message names the file."""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from tests.run_builder import TOY_TASK, write_run
from yfbench import atomic
from yfbench.analysis.__main__ import main
from yfbench.analysis.plots import save_figure
from yfbench.engine.run_dir import RunDirectory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import compress_runs

LOSSES = [4.0, 3.0, 2.5, 2.0, 1.5, 1.2, 1.0, 0.9]
OLD = "the previous, complete file\n"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for name in ("adam", "yellowfin"):
        write_run(root, {"name": name, "lr": 0.1}, 1, LOSSES, window=2, **TOY_TASK)
    return root


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch):
    """Writes of yfbench.atomic fail with ENOSPC after 64 bytes, as on a full disk."""
    real = os.fdopen

    class Full:
        def __init__(self, handle) -> None:
            self.handle, self.written = handle, 0

        def write(self, data: bytes) -> int:
            self.written += len(data)
            if self.written > 64:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(data)

        def __getattr__(self, name: str):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Full(real(fd, mode)))


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_a_report_on_a_full_disk_keeps_the_old_readme(runs, tmp_path, full_disk, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(OLD)
    assert main(["report", "--runs", str(runs), "--out", str(readme)]) == 2
    assert f"cannot write {readme} (No space left on device)" in _error_line(capsys)
    assert readme.read_text() == OLD
    assert not _temporaries(tmp_path)


def test_speedup_tables_on_a_full_disk_keep_the_old_files(runs, tmp_path, full_disk, capsys):
    out = tmp_path / "table" / "speedup.csv"
    out.parent.mkdir()
    out.write_text(OLD)
    assert main(["speedup", str(runs), "--window", "2", "--out", str(out)]) == 2
    assert f"cannot write {out}" in _error_line(capsys)
    assert out.read_text() == OLD
    assert not _temporaries(tmp_path)


def test_a_figure_on_a_full_disk_keeps_the_old_one(tmp_path, full_disk):
    old = tmp_path / "fig.png"
    old.write_bytes(b"old png")
    figure = plt.figure()
    plt.plot([1, 2, 3])
    with pytest.raises(OSError, match=str(old)):
        save_figure(figure, tmp_path / "fig")
    assert old.read_bytes() == b"old png" and not _temporaries(tmp_path)


def test_an_output_is_replaced_whole_and_keeps_readable_permissions(tmp_path):
    path = tmp_path / "table.md"
    atomic.write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) & 0o044  # not mkstemp's private 0600
    with pytest.raises(RuntimeError), atomic.replaced(path) as handle:
        handle.write(b"half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "new\n" and not _temporaries(tmp_path)


# ---------------------------------------------------------------- compress_runs.py
def test_compress_on_a_full_disk_keeps_the_plain_metrics(runs, full_disk, capsys):
    run_dir = runs / "toy_task" / "mini" / "adam" / "lr0.1-seed1"
    plain = (run_dir / "metrics.jsonl").read_bytes()
    assert compress_runs.main([str(runs)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {run_dir / 'metrics.jsonl.gz'} (No space left on device)" in err
    assert "Traceback" not in err
    assert (run_dir / "metrics.jsonl").read_bytes() == plain
    assert not (run_dir / "metrics.jsonl.gz").exists() and not _temporaries(runs)


def test_one_truncated_summary_does_not_stop_the_others(runs, capsys):
    bad = runs / "toy_task" / "mini" / "adam" / "lr0.1-seed1"
    (bad / "summary.json").write_text('{"status": "compl')
    assert compress_runs.main([str(runs)]) == 1
    err = capsys.readouterr().err
    assert f"{bad / 'summary.json'} cannot be read" in err and "Traceback" not in err
    assert (bad / "metrics.jsonl").is_file()
    good = runs / "toy_task" / "mini" / "yellowfin" / "lr0.1-seed1"
    assert (good / "metrics.jsonl.gz").is_file() and not (good / "metrics.jsonl").exists()


def test_compress_skips_a_run_another_process_holds(runs, capsys):
    held = runs / "toy_task" / "mini" / "adam" / "lr0.1-seed1"
    with RunDirectory(held).claimed():  # a training run, or a second compress_runs.py
        assert compress_runs.main([str(runs)]) == 1
    assert "in use by another yfbench process" in capsys.readouterr().err
    assert (held / "metrics.jsonl").is_file()
    assert compress_runs.main([str(runs)]) == 0  # once free, it is compressed
    assert (held / "metrics.jsonl.gz").is_file()


def test_compress_follows_a_symlinked_folder_of_runs(runs, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(runs, target_is_directory=True)
    assert compress_runs.main([str(link)]) == 0
    assert len(list(runs.rglob("metrics.jsonl.gz"))) == 2
