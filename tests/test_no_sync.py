"""The training loop waits for the device only at its sync points, never per step.

On CPU every tensor is already on the host, so a test double counts what would be a
device-to-host transfer on a GPU: each call of ``item``, ``tolist``, ``__float__``,
``__int__``, ``__bool__``, ``cpu`` or ``numpy`` made from yfbench's own code (the
trainer, the optimizer, the task). Twice the steps between the same sync points must
cost exactly the same number of transfers. On CUDA, ``torch.cuda.set_sync_debug_mode``
checks the real thing between flushes.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.helpers import compose_config, records
from yfbench.engine import trainer as trainer_module
from yfbench.engine.trainer import run

TRANSFERS = ("item", "tolist", "__float__", "__int__", "__bool__", "cpu", "numpy")
YFBENCH = str(Path(trainer_module.__file__).resolve().parents[1])


@pytest.fixture
def transfers(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts host transfers called from yfbench code, by the yfbench function that made them."""
    counts: Counter = Counter()
    for name in TRANSFERS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code
            if caller.co_filename.startswith(YFBENCH):
                counts[f"{caller.co_name}.{_name}"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def _transfers_for(steps: int, optimizer: str, tmp_path: Path, counts: Counter) -> Counter:
    cfg = compose_config(
        [
            "task=noisy_quadratic",
            f"optimizer={optimizer}",
            f"trainer.max_steps={steps}",
            "trainer.flush_every=1000",  # one flush, at the end
            "trainer.eval_every=0",
        ]
    )
    counts.clear()
    assert run(cfg, tmp_path / f"{optimizer}-{steps}")["status"] == "completed"
    return Counter(counts)


@pytest.mark.parametrize("optimizer", ["yellowfin", "adam", "momentum_sgd"])
def test_no_host_transfer_per_step(tmp_path, transfers, optimizer):
    short = _transfers_for(40, optimizer, tmp_path, transfers)
    long = _transfers_for(80, optimizer, tmp_path, transfers)
    assert long == short, f"transfers grow with the step count: {long - short}"
    # The double sees the sync points themselves: one flush, one evaluation, one check of
    # the parameters (so a test that cannot count would fail here).
    assert short["flush.tolist"] == 1 and sum(short.values()) <= 10, short
    # Every step was still logged, with the optimizer's statistics where it has some.
    train = [r for r in records(tmp_path / f"{optimizer}-80") if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 81))
    assert ("h_min" in train[-1]) == (optimizer == "yellowfin")


@pytest.mark.cuda
def test_no_cuda_sync_between_flushes(tmp_path, monkeypatch):
    """A real task on CUDA with sync debugging set to error everywhere but the sync points."""

    def quiet(method):
        def wrapped(*args, **kwargs):
            torch.cuda.set_sync_debug_mode("default")
            try:
                return method(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("error")

        return wrapped

    for name in ("_flush", "_evaluate", "_save", "_finish"):
        monkeypatch.setattr(
            trainer_module.Trainer, name, quiet(getattr(trainer_module.Trainer, name))
        )
    monkeypatch.setattr(
        trainer_module, "finite_parameters", quiet(trainer_module.finite_parameters)
    )
    loop = trainer_module.Trainer._loop

    def strict_loop(self, parts):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return loop(self, parts)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(trainer_module.Trainer, "_loop", strict_loop)
    cfg = compose_config(
        [
            "task=tinyshakespeare_lstm",
            "optimizer=yellowfin",
            "trainer.device=cuda",
            "trainer.max_steps=60",
            "trainer.flush_every=20",
            "trainer.eval_every=0",
        ]
    )
    assert run(cfg, tmp_path)["status"] == "completed"
