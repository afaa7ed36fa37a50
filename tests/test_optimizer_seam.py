"""The optimizer seam holds for any torch optimizer: every hook the trainer probes is honoured.

:class:`HookedOptimizer` implements all of them the way published optimizers do
(Schedule-Free starts in eval mode, refuses to step there and evaluates at another point
than it trains at), and runs through :func:`yfbench.engine.trainer.run`, fresh and resumed.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf, open_dict
from torch.optim import Optimizer

from tests.helpers import records
from yfbench.engine.modes import eval_mode
from yfbench.engine.optimizers import OPTIMIZERS
from yfbench.engine.trainer import run
from yfbench.tasks import TASKS
from yfbench.tasks.noisy_quadratic import NoisyQuadratic

STEPS, EVAL_EVERY, CHECKPOINT_EVERY, CRASH_AT = 12, 4, 5, 8
DIM, SEED = 50, 1


class HookedOptimizer(Optimizer):
    """SGD whose step is ``lr * scale * grad``, with every optional hook of the seam.

    - ``schedule_key = "scale"``: the hand-set decay must scale ``scale``, not ``lr``;
    - ``step(loss=...)``: the loss it was given is reported by ``stat_tensors()``;
    - ``eval()`` moves the parameters to an evaluation point (zero) and ``train()`` back;
      it starts in eval mode and refuses to step there.
    """

    schedule_key = "scale"

    def __init__(self, params, lr: float = 0.1, scale: float = 1.0) -> None:
        super().__init__(params, {"lr": lr, "scale": scale, "train_mode": False})
        self._seen_loss = torch.full((), float("nan"))

    @torch.no_grad()
    def step(self, closure=None, loss: torch.Tensor | None = None) -> None:
        if not all(group["train_mode"] for group in self.param_groups):
            raise RuntimeError("HookedOptimizer.step called in eval mode; call train() first")
        if loss is None:
            raise RuntimeError("HookedOptimizer.step needs the step's loss")
        self._seen_loss = loss.detach().clone()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.add_(param.grad, alpha=-group["lr"] * group["scale"])

    def stat_tensors(self) -> dict[str, torch.Tensor]:
        scale = torch.tensor(self.param_groups[0]["scale"])
        return {"seen_loss": self._seen_loss, "applied_scale": scale}

    @torch.no_grad()
    def eval(self) -> None:
        for group in self.param_groups:
            if group["train_mode"]:
                for param in group["params"]:
                    self.state[param]["train_point"] = param.clone()
                    param.zero_()
                group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        for group in self.param_groups:
            if not group["train_mode"]:
                for param in group["params"]:
                    if "train_point" in self.state[param]:
                        param.copy_(self.state[param]["train_point"])
                group["train_mode"] = True


class DecayingQuadratic(NoisyQuadratic):
    """The noisy quadratic (one step per epoch) whose recipe halves the lr every 4 epochs;
    ``crash_at`` makes a step raise, as a crash between two checkpoints would."""

    crash_at: int | None = None

    def lr_multiplier(self, epoch: int) -> float:
        return 0.5 ** (epoch // 4)

    def train_loss(self, module: torch.nn.Module, step: int) -> torch.Tensor:
        if step == self.crash_at:
            raise _Crash(f"simulated crash at step {step}")
        return super().train_loss(module, step)


class _Crash(Exception):
    pass


def build_decaying_quadratic(cfg, ctx) -> DecayingQuadratic:
    return DecayingQuadratic(cfg.dim, cfg.condition_number, cfg.noise_std, ctx)


@pytest.fixture
def hooked_config(monkeypatch, quadratic_config):
    monkeypatch.setitem(OPTIMIZERS, "hooked", f"{__name__}:HookedOptimizer")
    monkeypatch.setitem(TASKS, "decaying_quadratic", f"{__name__}:build_decaying_quadratic")
    cfg = quadratic_config
    with open_dict(cfg):
        cfg.task.name = "decaying_quadratic"
        cfg.optimizer = OmegaConf.create({"name": "hooked", "lr": 0.1})
        cfg.trainer.checkpoint_every = CHECKPOINT_EVERY
    assert (cfg.seed, cfg.task.dim, cfg.trainer.max_steps) == (SEED, DIM, STEPS)
    assert cfg.trainer.eval_every == EVAL_EVERY
    return cfg


def test_every_hook_is_honoured_by_a_fresh_run(tmp_path, hooked_config):
    # The optimizer starts in eval mode and refuses to step there: the run trains only
    # because the trainer puts it in train mode first.
    assert run(hooked_config, tmp_path)["status"] == "completed"
    logged = records(tmp_path)
    train = [r for r in logged if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(1, STEPS + 1))
    for record in train:
        # step(loss=): the optimizer saw the very loss the trainer logged for its step
        assert record["seen_loss"] == pytest.approx(record["loss"], rel=1e-6)
        # schedule_key: the decay of iteration step-1 (epoch = step-1) scaled "scale", not lr
        assert record["applied_scale"] == 0.5 ** ((record["step"] - 1) // 4)
        assert record["lr"] == 0.1
    assert train[-1]["loss"] < train[0]["loss"]  # it trained, from its train point

    # eval(): every evaluation saw the evaluation point (zero), not the training iterate
    optimum = torch.randn(DIM, generator=torch.Generator().manual_seed(SEED))
    valid = [r for r in logged if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [4, 8, 12]
    for record in valid:
        assert record["dist_to_opt"] == pytest.approx(float(optimum.norm()), rel=1e-6)

    # The checkpoint was written in eval mode: its model holds the evaluation point.
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert torch.equal(saved["model"]["x"], torch.zeros(DIM))


def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path, hooked_config, monkeypatch):
    assert run(hooked_config, tmp_path / "reference")["status"] == "completed"
    monkeypatch.setattr(DecayingQuadratic, "crash_at", CRASH_AT)
    with pytest.raises(_Crash):
        run(hooked_config, tmp_path / "crashed")
    monkeypatch.setattr(DecayingQuadratic, "crash_at", None)
    # The checkpoint of step 5 holds the optimizer in eval mode; resuming must return it to
    # train mode (and its train point) or the first step raises.
    assert run(hooked_config, tmp_path / "crashed")["status"] == "completed"
    assert records(tmp_path / "crashed") == records(tmp_path / "reference")


def test_eval_mode_restores_train_mode_on_error():
    model = torch.nn.Linear(3, 1)
    optimizer = HookedOptimizer([torch.nn.Parameter(torch.ones(3))])
    optimizer.train()
    with pytest.raises(_Crash), eval_mode(model, optimizer):
        assert not optimizer.param_groups[0]["train_mode"] and not model.training
        raise _Crash("evaluation failed")
    assert optimizer.param_groups[0]["train_mode"] and model.training
    assert torch.equal(optimizer.param_groups[0]["params"][0], torch.ones(3))
