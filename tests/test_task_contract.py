"""The contract every registered task keeps with the trainer (a new task is checked here
without editing any list): see :class:`yfbench.tasks.Task`."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from tests.conftest import REPO_ROOT
from yfbench.config import compose
from yfbench.engine.modes import eval_mode
from yfbench.errors import DataError
from yfbench.tasks import TASKS, Task

SCALES = sorted(path.stem for path in (REPO_ROOT / "conf" / "scale").glob("*.yaml"))
STEPS = 6  # a resume at step STEPS // 2 must continue exactly


class _Forwards(nn.Module):
    """The trainer's stand-in for DistributedDataParallel: counts the forwards through it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.model(*args, **kwargs)


def _losses(task: Task, steps: range, module: nn.Module | None = None) -> list[torch.Tensor]:
    """Training losses of ``steps``, in eval mode (no dropout) with the weights unchanged."""
    with eval_mode(task.model):
        return [task.train_loss(module or task.model, step) for step in steps]


# One build per task for the module (building reads and tokenises the data); each test
# takes a fresh deep copy, as a task is right after it was built.
_BUILT: dict[str, Task] = {}


def _fresh(build_tiny_task, name: str) -> Task:
    if name not in _BUILT:
        try:
            _BUILT[name] = build_tiny_task(name)
        except DataError as error:  # e.g. CIFAR-100, which the offline copy does not hold
            pytest.skip(f"{name}: its data is not available here ({error})")
    return copy.deepcopy(_BUILT[name])


def test_every_task_has_a_config_file_and_every_config_file_a_task():
    files = {path.stem for path in (REPO_ROOT / "conf" / "task").glob("*.yaml")}
    assert files == set(TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_composes_at_every_scale(name):
    for scale in SCALES:
        cfg = compose([f"task={name}", f"scale={scale}"])
        assert (cfg.task.name, cfg.scale.name) == (name, scale)
        assert cfg.trainer.max_steps >= 1 and cfg.task.paper_max_steps >= 1


@pytest.mark.parametrize("name", sorted(TASKS))
def test_declares_its_metrics_and_evaluate_returns_them(name, build_tiny_task):
    task = _fresh(build_tiny_task, name)
    assert task.metrics and set(task.metrics.values()) <= {"min", "max"}
    assert task.target_metric in task.metrics and "loss" in task.metrics
    assert task.data_source
    with eval_mode(task.model):
        metrics = task.evaluate()
    assert set(metrics) == set(task.metrics)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert task.model.training  # the trainer's context, not the task, switches modes


@pytest.mark.parametrize("name", sorted(TASKS))
def test_batches_follow_seed_and_step_and_a_resume_is_exact(name, build_tiny_task):
    steps = range(STEPS)
    middle = STEPS // 2
    reference = _fresh(build_tiny_task, name)
    expected = _losses(reference, steps)

    # The forward goes through the module the trainer passes (DDP's wrapper under
    # torchrun), so gradients are averaged over the processes.
    first_half = _fresh(build_tiny_task, name)
    wrapper = _Forwards(first_half.model)
    assert torch.equal(
        torch.stack(_losses(first_half, range(middle), wrapper)), torch.stack(expected[:middle])
    )
    assert wrapper.calls >= middle

    # A fresh task that was asked for other batches first (a later epoch), then given the
    # carried state, continues exactly: the batch of a step is a function of (seed, step).
    resumed = _fresh(build_tiny_task, name)
    _losses(resumed, range(2 * resumed.steps_per_epoch + 1, 2 * resumed.steps_per_epoch + 3))
    resumed.load_state_dict(first_half.state_dict())
    assert torch.equal(
        torch.stack(_losses(resumed, range(middle, STEPS))), torch.stack(expected[middle:])
    )
