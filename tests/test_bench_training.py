"""The training-speed benchmark (scripts/bench_training.py) times a step's cost, which does
not depend on whether the loss falls: an untuned peer that diverges within the benchmark's
steps is still timed, and a run that stopped early is refused."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench_training.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _fake_run(status: str, steps: int):
    """A stand-in for the trainer: train records at 0.5 s a step up to ``steps``."""

    def run(cfg, run_dir: Path) -> dict:
        records = [{"split": "train", "step": s, "time_s": 0.5 * s} for s in range(1, steps + 1)]
        (run_dir / "metrics.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n")
        return {"status": status, "steps": steps, "error": "the loss blew up"}

    return run


ARGS = argparse.Namespace(scale="cpu", steps=10, device="cpu", threads=1)


def test_a_run_that_diverged_but_ran_every_step_is_timed(monkeypatch, tmp_path):
    bench = _bench_module()
    monkeypatch.setattr(bench, "run", _fake_run("diverged", 10))
    rate, peak, diverged = bench.measure("ptb_lstm", ["optimizer=adam"], ARGS, tmp_path)
    assert (rate, peak, diverged) == (2.0, None, True)


def test_a_run_that_stopped_early_has_no_rate(monkeypatch, tmp_path):
    bench = _bench_module()
    monkeypatch.setattr(bench, "run", _fake_run("diverged", 4))
    with pytest.raises(RuntimeError, match="diverged after 4 of 10 steps: the loss blew up"):
        bench.measure("ptb_lstm", ["optimizer=adam"], ARGS, tmp_path)
