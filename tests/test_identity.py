"""Run identity beyond the config: a resume never mixes threads, devices, data or code.

The config hash stays what it was (committed runs keep matching); what changes the
numbers without being config is the provenance record in checkpoint.pt and summary.json
(yfbench/engine/provenance.py), checked on resume.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import compose_config, summary
from yfbench.engine import provenance
from yfbench.engine.threads import available_cores, set_threads
from yfbench.engine.trainer import run
from yfbench.errors import UserError

PACKAGE = Path(provenance.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """A run sets torch's process-wide thread count; give the next test its one thread back."""
    yield
    torch.set_num_threads(1)


def _interrupted(run_dir: Path, *extra: str):
    """A run checkpointed at step 10, killed after step 15 (its summary removed)."""
    cfg = compose_config(
        ["task=noisy_quadratic", "trainer.max_steps=15", "trainer.checkpoint_every=10", *extra]
    )
    assert run(cfg, run_dir)["status"] == "completed"
    (run_dir / "summary.json").unlink()
    return cfg


def _edit_checkpoint(run_dir: Path, edit) -> None:
    path = run_dir / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


def _files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


def test_a_run_records_its_threads_device_data_and_code(tmp_path):
    run(compose_config(["task=noisy_quadratic", "trainer.max_steps=12"]), tmp_path)
    record = summary(tmp_path)["provenance"]
    assert record["threads"] == 1 and record["device"] == "cpu"
    assert record["data_source"] == "synthetic"  # the quadratic reads no data
    (segment,) = record["code"]
    assert segment["from_step"] == 1 and segment["to_step"] == 12
    assert segment["code_hash"] == provenance.code_hash()


def test_a_resume_with_another_thread_count_is_refused_and_says_how(tmp_path):
    cfg = _interrupted(tmp_path, "trainer.threads=1")
    before = _files(tmp_path)
    cfg.trainer.threads = 2  # as `make JOBS=1` would derive after a JOBS=2 grid
    with pytest.raises(UserError, match="threads=1 and this session has threads=2") as refused:
        run(cfg, tmp_path)
    assert "rerun with trainer.threads=1" in str(refused.value)
    assert _files(tmp_path) == before  # nothing written


@pytest.mark.parametrize(
    ("key", "saved", "fix"),
    [
        ("device", "cuda", "trainer.device=cuda"),  # a device=auto run started on a GPU
        ("data_source", "canonical", "task.source=canonical"),  # CIFAR's source=auto
    ],
)
def test_a_resume_on_another_device_or_data_is_refused(tmp_path, key, saved, fix):
    cfg = _interrupted(tmp_path)
    _edit_checkpoint(tmp_path, lambda p: p["provenance"].__setitem__(key, saved))
    with pytest.raises(UserError, match=f"saved with {key}={saved}") as refused:
        run(cfg, tmp_path)
    assert fix in str(refused.value)
    assert not (tmp_path / "summary.json").exists()


def test_a_resume_across_a_code_change_is_refused_unless_asked_then_recorded(tmp_path, monkeypatch):
    cfg = _interrupted(tmp_path)
    old = provenance.code_hash()
    monkeypatch.setattr(provenance, "code_hash", lambda: "f" * 64)  # the code was edited
    with pytest.raises(UserError, match="other training code") as refused:
        run(cfg, tmp_path)
    assert provenance.ALLOW_CODE_CHANGE in str(refused.value)
    assert not (tmp_path / "summary.json").exists()

    monkeypatch.setenv(provenance.ALLOW_CODE_CHANGE, "1")
    assert run(cfg, tmp_path)["status"] == "completed"
    code = summary(tmp_path)["provenance"]["code"]
    assert [(s["from_step"], s["to_step"], s["code_hash"]) for s in code] == [
        (1, 10, old),
        (11, 15, "f" * 64),
    ]


def test_a_checkpoint_without_provenance_is_refused_or_recorded_as_unknown(tmp_path, monkeypatch):
    cfg = _interrupted(tmp_path)
    _edit_checkpoint(tmp_path, lambda p: p.pop("provenance"))
    with pytest.raises(UserError, match="predates yfbench's provenance record"):
        run(cfg, tmp_path)
    monkeypatch.setenv(provenance.ALLOW_CODE_CHANGE, "1")
    assert run(cfg, tmp_path)["status"] == "completed"
    first, second = summary(tmp_path)["provenance"]["code"]
    assert (first["from_step"], first["to_step"], first["code_hash"]) == (1, 10, None)
    assert (second["from_step"], second["to_step"]) == (11, 15)


def test_a_resume_with_the_same_code_keeps_one_segment(tmp_path):
    cfg = _interrupted(tmp_path)
    assert run(cfg, tmp_path)["status"] == "completed"
    (segment,) = summary(tmp_path)["provenance"]["code"]
    assert (segment["from_step"], segment["to_step"]) == (1, 15)


def test_the_code_hash_covers_the_training_code_only(tmp_path):
    copy = tmp_path / "yfbench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = provenance.hash_code(copy)
    assert original == provenance.code_hash()
    (copy / "analysis" / "speedup.py").write_text("# the analysis changed\n")
    (copy / "README.txt").write_text("not code")
    assert provenance.hash_code(copy) == original
    for part in ("optim/yellowfin.py", "config.py", "tasks/base.py", "data/text.py"):
        edited = copy / part
        kept = edited.read_bytes()
        edited.write_bytes(kept + b"\n")
        assert provenance.hash_code(copy) != original, part
        edited.write_bytes(kept)
    (copy / "engine" / "new_module.py").write_text("x = 1\n")  # an added file counts too
    assert provenance.hash_code(copy) != original


def test_more_threads_than_cores_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="yfbench"):
        set_threads(available_cores() + 1)
    assert f"more than the {available_cores()} cores" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yfbench"):
        set_threads(1)
    assert not caplog.text
