"""File types and symlinks: nothing planted in a run directory makes a run write through
it, and another tool's files in a run directory are never overwritten."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.helpers import compose_config, summary
from yfbench.engine.trainer import run
from yfbench.errors import UserError

QUADRATIC = ["task=noisy_quadratic", "trainer.max_steps=12"]
VICTIM = b"a file the run must never touch\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_bytes(VICTIM)
    return path


def _plant(run_dir: Path, names: list[str], target: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        (run_dir / name).symlink_to(target)


def test_planted_tmp_symlinks_are_never_followed(tmp_path, victim):
    run_dir = tmp_path / "run"
    names = ["summary.json.tmp", "checkpoint.pt.tmp", "run_config.json.tmp"]
    _plant(run_dir, [*names, f".write_test-{os.getpid()}"], victim)
    cfg = compose_config([*QUADRATIC, "trainer.checkpoint_every=5"])
    assert run(cfg, run_dir)["status"] == "completed"
    assert victim.read_bytes() == VICTIM
    assert summary(run_dir)["status"] == "completed"
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "checkpoint.pt").is_symlink()


def test_a_planted_lock_symlink_is_refused_and_its_target_kept(tmp_path, victim):
    _plant(tmp_path / "run", [".lock"], victim)
    with pytest.raises(UserError, match="lock file .* must be a plain file"):
        run(compose_config(QUADRATIC), tmp_path / "run")
    assert victim.read_bytes() == VICTIM


def _reusable(run_dir: Path) -> None:
    """A run directory of ours that holds nothing worth keeping (its summary removed)."""
    run(compose_config(QUADRATIC), run_dir)
    (run_dir / "summary.json").unlink()


def test_a_metrics_symlink_is_never_written_through(tmp_path, victim):
    run_dir = tmp_path / "run"
    _reusable(run_dir)
    (run_dir / "metrics.jsonl").unlink()
    (run_dir / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(UserError, match="cannot open .*metrics.jsonl for writing"):
        run(compose_config(QUADRATIC), run_dir)
    assert victim.read_bytes() == VICTIM


def test_a_fifo_in_place_of_metrics_is_refused_without_hanging(tmp_path):
    run_dir = tmp_path / "run"
    _reusable(run_dir)
    (run_dir / "metrics.jsonl").unlink()
    os.mkfifo(run_dir / "metrics.jsonl")
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            run(compose_config(QUADRATIC), run_dir)
            outcome.append(None)
        except UserError as error:
            outcome.append(error)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the run blocked on the FIFO"
    assert isinstance(outcome[0], UserError) and "metrics.jsonl" in str(outcome[0])


@pytest.mark.parametrize(
    "foreign",
    [
        {"metrics.jsonl": '{"step": 1, "loss": 0.5}\n', "summary.json": '{"status": "ok"}'},
        {"summary.json": '{"status": "completed", "steps": 9}'},
        {"metrics.jsonl.gz": "not ours"},
        {"checkpoint.pt": "not ours"},
    ],
)
def test_another_tools_files_in_the_run_directory_are_never_overwritten(tmp_path, foreign):
    for name, text in foreign.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match="but no run_config.json: they are not this run's"):
        run(compose_config(QUADRATIC), tmp_path)
    left = {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file() and p.name != ".lock"}
    assert left == foreign


def test_hydra_run_dir_over_foreign_files_is_one_message(tmp_path, run_main):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (tmp_path / "summary.json").write_text('{"status": "mine"}')
    result = run_main([*QUADRATIC, f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "they are not this run's" in result.stderr
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 0.5}\n'
    assert (tmp_path / "summary.json").read_text() == '{"status": "mine"}'
    assert not (tmp_path / "run_config.json").exists()
