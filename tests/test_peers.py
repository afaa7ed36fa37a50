"""Published self-tuning optimizers (yfbench/peers): they train on every task, resume
exactly after a crash and after a SIGTERM stop, and evaluate where they say they do."""

from __future__ import annotations

import importlib
import math
import os
import signal

import pytest
import torch
from torch import nn

from tests.helpers import TINY_TASK_OVERRIDES, compose_config, records, summary
from yfbench.engine import trainer as trainer_module
from yfbench.engine.modes import set_mode
from yfbench.engine.optimizers import LrSchedule, build_optimizer
from yfbench.engine.trainer import run
from yfbench.peers import PEERS
from yfbench.peers.muon import MuonWithAdamW, split_parameters
from yfbench.tasks import TASKS

# The tests' small task sizes (tests/helpers.py); the ResNet in channels_last memory format,
# so that a peer which views conv kernels as matrices (Muon) meets non-contiguous ones.
PEER_TASK_OVERRIDES = {
    **TINY_TASK_OVERRIDES,
    "cifar10_resnet": [*TINY_TASK_OVERRIDES["cifar10_resnet"], "trainer.channels_last=true"],
}
OFFLINE_TASKS = [task for task in TASKS if task != "cifar100_resnet"]
# Peers whose adapters carry state the package loses, or swap parameters: fast by default.
ADAPTED = ("schedulefree_adamw", "dog", "momo", "mechanic", "muon")


def _slow_unless(names: tuple[str, ...], chosen: str) -> list:
    return [] if chosen in names else [pytest.mark.slow]


def _train(task: str, name: str, run_dir, steps: int = 20, extra: tuple[str, ...] = ()) -> dict:
    overrides = [
        f"task={task}",
        f"optimizer={name}",
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={steps // 2}",
        *PEER_TASK_OVERRIDES[task],
        *extra,
    ]
    return run(compose_config(overrides), run_dir)


# ------------------------------------------------------------------ 20 steps everywhere
@pytest.mark.parametrize(
    ("task", "name"),
    [
        pytest.param(task, name, marks=[] if task == "tinyshakespeare_lstm" else [pytest.mark.slow])
        for task in OFFLINE_TASKS
        for name in PEERS
    ],
)
def test_every_peer_trains_20_steps(tmp_path, shared_data, task, name):
    outcome = _train(task, name, tmp_path)
    assert outcome["status"] == "completed", outcome["error"]
    logged = records(tmp_path)
    train = [r for r in logged if r["split"] == "train"]
    valid = [r for r in logged if r["split"] == "valid"]
    assert [r["step"] for r in train] == list(range(1, 21))
    assert all(math.isfinite(r["loss"]) and r["lr"] > 0 for r in train)
    assert [r["step"] for r in valid] == [10, 20]
    assert valid[0]["loss"] != valid[1]["loss"]  # the evaluated model moved


# ------------------------------------------------------------------ exact resumption
class _Crash(Exception):
    """Stands in for a crash (kill -9) between two checkpoints."""


def _interrupting_builder(monkeypatch, task: str, at_step: int, action):
    """Replace ``task``'s builder by one whose train_loss calls ``action`` at ``at_step``."""
    module_name, builder_name = TASKS[task].split(":")
    module = importlib.import_module(module_name)
    real = getattr(module, builder_name)

    def builder(task_cfg, ctx):
        built = real(task_cfg, ctx)
        train_loss = built.train_loss

        def train_loss_or_interrupt(module: nn.Module, step: int) -> torch.Tensor:
            if step == at_step and torch.is_grad_enabled():
                action(step)
            return train_loss(module, step)

        built.train_loss = train_loss_or_interrupt
        return built

    monkeypatch.setattr(module, builder_name, builder)
    return lambda: monkeypatch.setattr(module, builder_name, real)


def _crash(step: int) -> None:
    raise _Crash(f"simulated crash at step {step}")


def _sigterm(step: int) -> None:
    del step
    os.kill(os.getpid(), signal.SIGTERM)  # the trainer stops after this step, with a checkpoint


@pytest.mark.parametrize("name", [pytest.param(n, marks=_slow_unless(ADAPTED, n)) for n in PEERS])
def test_every_peer_resumes_exactly_after_a_crash_and_a_sigterm_stop(
    tmp_path, monkeypatch, shared_data, name
):
    """CIFAR (batch norm): a crash between checkpoints, and a SIGTERM stop at a step no
    schedule chose, both resume to the records of an uninterrupted run."""
    task = "cifar10_resnet"
    extra = ("trainer.checkpoint_every=5",)
    reference = _train(task, name, tmp_path / "reference", steps=12)
    assert reference["status"] == "completed", reference["error"]

    restore = _interrupting_builder(monkeypatch, task, 8, _crash)
    with pytest.raises(_Crash):
        _train(task, name, tmp_path / "crashed", steps=12, extra=extra)
    restore()
    assert _train(task, name, tmp_path / "crashed", steps=12, extra=extra)["status"] == "completed"
    assert records(tmp_path / "crashed") == records(tmp_path / "reference")

    restore = _interrupting_builder(monkeypatch, task, 2, _sigterm)
    stopped = _train(task, name, tmp_path / "stopped", steps=12)
    restore()
    assert stopped["status"] == "interrupted" and "SIGTERM" in stopped["error"]
    assert _train(task, name, tmp_path / "stopped", steps=12)["status"] == "completed"
    assert records(tmp_path / "stopped") == records(tmp_path / "reference")
    assert summary(tmp_path / "stopped")["status"] == "completed"


# ------------------------------------------------------------------ evaluation points
def test_schedule_free_evaluates_at_x_with_batch_norm_statistics_recomputed_there(
    tmp_path, monkeypatch, shared_data
):
    built = {}
    real_build = trainer_module.build_optimizer

    def keep(*args, **kwargs):
        built["optimizer"] = real_build(*args, **kwargs)
        built["model"] = kwargs["model"]
        return built["optimizer"]

    monkeypatch.setattr(trainer_module, "build_optimizer", keep)
    seen = []
    module_name, builder_name = TASKS["cifar10_resnet"].split(":")
    module = importlib.import_module(module_name)
    real_builder = getattr(module, builder_name)

    def builder(task_cfg, ctx):
        task = real_builder(task_cfg, ctx)
        evaluate = task.evaluate

        def observed() -> dict:
            optimizer, model = built["optimizer"], built["model"]
            norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
            seen.append(
                {
                    "at_x": all(
                        torch.equal(p, optimizer.state[p]["x"]) for p in model.parameters()
                    ),
                    "mean": norm.running_mean.clone(),
                    "batches": int(norm.num_batches_tracked),
                }
            )
            return evaluate()

        task.evaluate = observed
        return task

    monkeypatch.setattr(module, builder_name, builder)
    outcome = _train(
        "cifar10_resnet",
        "schedulefree_adamw",
        tmp_path,
        steps=8,
        extra=("optimizer.recompute_batch_norm=3",),
    )
    assert outcome["status"] == "completed", outcome["error"]
    model = built["model"]
    norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    # Evaluated at x, on statistics of the 3 batches before the evaluation...
    assert [s["at_x"] for s in seen] == [True, True]
    assert [s["batches"] for s in seen] == [3, 3]
    # ...and the training point's statistics are back afterwards (8 training batches).
    assert int(norm.num_batches_tracked) == 8
    assert not torch.equal(seen[-1]["mean"], norm.running_mean)


class _BatchNormTask:
    """A fake task: a small BN CNN whose training batch of step s is fixed by s."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.carried = torch.zeros(2)  # stands in for an LSTM's state

    def batch(self, step: int) -> torch.Tensor:
        return torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(step)) * (step + 1)

    def train_loss(self, module: nn.Module, step: int) -> torch.Tensor:
        self.carried += 1
        torch.rand(1)  # a draw from the global RNG (dropout would make one)
        return module(self.batch(step)).mean()

    def state_dict(self) -> dict:
        return {"carried": self.carried.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.carried = state["carried"]


def test_recomputed_statistics_average_the_batches_before_the_step_and_leave_no_trace():
    from yfbench.engine.batch_norm import recomputed_statistics

    task = _BatchNormTask()
    norm = task.model[1]
    task.train_loss(task.model, 0)  # the training point's statistics
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    rng = torch.get_rng_state()
    with torch.no_grad():
        conv = [task.model[0](task.batch(s)) for s in (4, 5, 6)]
    means = torch.stack([c.mean(dim=(0, 2, 3)) for c in conv]).mean(0)
    variances = torch.stack([c.var(dim=(0, 2, 3), unbiased=True) for c in conv]).mean(0)
    with recomputed_statistics(task, 3, 7):
        assert not task.model.training  # evaluated in eval mode, with the new statistics
        torch.testing.assert_close(norm.running_mean, means)
        torch.testing.assert_close(norm.running_var, variances)
        assert int(norm.num_batches_tracked) == 3
    for key, value in norm.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert norm.momentum == 0.1
    assert torch.equal(task.carried, torch.ones(2))
    assert torch.equal(torch.get_rng_state(), rng)


def test_dog_evaluates_the_averaged_model_and_trains_on_its_own(shared_data):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    optimizer = build_optimizer(model.parameters(), {"name": "dog"}, model=model)
    for step in range(3):
        optimizer.zero_grad()
        model(
            torch.randn(8, 4, generator=torch.Generator().manual_seed(step))
        ).square().mean().backward()
        optimizer.step()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer.eval()
    averaged = optimizer.averager.averaged_model.state_dict()
    assert all(torch.equal(model.state_dict()[k], averaged[k]) for k in averaged)
    assert not torch.equal(model[0].weight, trained["0.weight"])
    saved = optimizer.state_dict()  # a checkpoint in eval mode keeps the training point
    optimizer.train()
    assert all(torch.equal(model.state_dict()[k], trained[k]) for k in trained)
    optimizer.load_state_dict(saved)
    optimizer.train()
    assert all(torch.equal(model.state_dict()[k], trained[k]) for k in trained)


# ------------------------------------------------------------------ schedule and split
def test_warmup_cosine_schedule_is_per_step_and_off_for_schedule_free():
    weight = nn.Parameter(torch.zeros(2))
    sgd = torch.optim.SGD([weight], lr=0.5)
    schedule = LrSchedule(sgd, {"warmup_fraction": 0.1, "decay": "cosine"}, max_steps=100)
    multipliers = [schedule.multiplier(step, recipe=0.3) for step in range(100)]
    assert multipliers[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert multipliers[10] == 1.0 and multipliers[55] == pytest.approx(0.5)
    assert multipliers[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert LrSchedule(sgd).multiplier(7, recipe=0.3) == 0.3  # no schedule: the recipe's decay
    schedule.apply(55)
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.25)
    free = build_optimizer([nn.Parameter(torch.zeros(2))], {"name": "schedulefree_sgd"})
    assert (
        LrSchedule(free, {"warmup_fraction": 0.1, "decay": "cosine"}, 100).multiplier(0, 0.3) == 1
    )


def test_muon_takes_hidden_matrices_and_conv_kernels_as_views():
    model = nn.Sequential(
        nn.Embedding(10, 4),
        nn.Conv2d(4, 6, 3),
        nn.BatchNorm2d(6),
        nn.Linear(6, 5),
        nn.Linear(5, 10),
    ).to(memory_format=torch.channels_last)
    hidden, rest = split_parameters(model)
    assert [tuple(p.shape) for p in hidden] == [(6, 4, 3, 3), (5, 6)]
    assert len(rest) == 1 + 1 + 2 + 1 + 2  # embedding, conv bias, BN, hidden bias, output layer
    optimizer = MuonWithAdamW(model.parameters(), model=model, lr=0.01)
    kernel = model[1].weight
    kernel.grad = torch.randn_like(kernel)
    model[3].weight.grad = torch.randn_like(model[3].weight)
    before = kernel.detach().clone()
    optimizer.step()
    assert not torch.equal(kernel, before)  # the view's update reached the kernel
    optimizer.zero_grad()
    assert kernel.grad is None


# ------------------------------------------------------------------ measured overhead
def _one_step(name: str):
    from yfbench.peers.overhead import HostReads, host_scalars, state_bytes

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))
    optimizer = build_optimizer(model.parameters(), {"name": name}, model=model)
    set_mode(optimizer, "train")
    for step in range(3):
        optimizer.zero_grad()
        model(torch.ones(2, 4) * (step + 1)).square().mean().backward()
        if step < 2:
            optimizer.step()
    reads = HostReads(host_scalars(optimizer))
    with reads:
        optimizer.step()
    return sum(reads.counts.values()), state_bytes(optimizer) / 19


def test_host_reads_count_device_values_read_on_the_host_and_not_torchs_host_scalars():
    # Adam: exp_avg and exp_avg_sq (8 B/param) and a float32 step per tensor (4 x 4 B).
    assert _one_step("adam") == (0, pytest.approx(8.0 + 4 * 4 / 19))
    reads, state = _one_step("dadapt_sgd")
    assert reads == 2 * 4  # two .item() per parameter tensor (issue 22)
    assert state >= 12.0  # z, s, x0
