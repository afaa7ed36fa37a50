"""The optimizer seam: build any optimizer from its config node; the hooks the trainer probes.

Optimizers are registered lazily as ``"module:attr"`` entries in :data:`OPTIMIZERS`
(imported on use, as tasks are), so one optimizer never pays for another's imports and
another module can add its own entries. Adding an optimizer is a config file
(``conf/optimizer/<name>.yaml``: ``name`` plus the constructor's keyword arguments) and
one entry here. The trainer knows an optimizer only through ``torch.optim.Optimizer``
and these optional hooks, probed with ``getattr``:

- ``schedule_key`` (class attribute, default ``"lr"``): the param-group key a hand-set
  decay scales (YellowFin tunes its lr, so its schedule acts on ``lr_factor``);
- ``stat_tensors()``: 0-d device tensors describing the step just taken (YellowFin's
  lr, momentum and statistics), read without a host sync;
- ``train()`` / ``eval()``: the trainer calls ``train()`` before the first step of every
  session (fresh or resumed: Schedule-Free's optimizers start in eval mode and refuse to
  step), and ``eval()`` around evaluation and checkpoints, restoring ``train()`` even on
  error (:mod:`yfbench.engine.modes`; optimizers that evaluate at an averaged point swap
  parameters there; DoG's averaged model);
- ``follows_schedule`` (class attribute, default True): False for optimizers whose own
  step size replaces any schedule (Schedule-Free, DoG): the lr stays as configured;
- ``recompute_batch_norm`` (int, default 0): training batches the trainer passes through
  the model at the evaluation point, in eval mode of the optimizer, to recompute batch-norm
  statistics there before evaluating;
- a ``loss`` keyword of ``step``: the trainer then passes the step's loss;
- a ``model`` keyword of the constructor: the builder passes the model (a parameter split
  or an averaged copy needs its modules).

The config node may also hold ``schedule: {warmup_fraction, decay}``: a per-step linear
warm-up and cosine decay to the run's end (:class:`LrSchedule`), which replaces the task's
recipe decay.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor, nn
from torch.optim import Optimizer

from yfbench.errors import UserError
from yfbench.peers import PEERS

# optimizer name -> "module:attr" of its class (or factory), imported on first use.
OPTIMIZERS: dict[str, str] = {
    "yellowfin": "yfbench.optim.yellowfin:YellowFin",
    "yellowfin_closed_loop": "yfbench.optim.closed_loop:ClosedLoopYellowFin",
    # Ablations of YellowFin under their own names, so that no analysis takes one for a
    # grid point of YellowFin itself (their configs set the flags).
    "yellowfin_open_loop": "yfbench.optim.closed_loop:ClosedLoopYellowFin",
    "yellowfin_rescaled_sgd": "yfbench.optim.yellowfin:YellowFin",
    "yellowfin_fixed_momentum": "yfbench.optim.yellowfin:YellowFin",
    "adam": "torch.optim:Adam",
    "momentum_sgd": "torch.optim:SGD",
    "sgd": "torch.optim:SGD",
    # The published self-tuning optimizers and modern baselines (yfbench/peers/).
    **PEERS,
}
# Constructor arguments an entry gets unless its config sets them (the config wins).
CONSTRUCTOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "adam": {"foreach": True},
    "momentum_sgd": {"foreach": True},
    "sgd": {"momentum": 0.0, "foreach": True},
}
# Hyperparameters that are probabilities or decay rates, wherever an optimizer has them.
UNIT_INTERVAL_KEYS = ("momentum", "dampening", "beta")


def optimizer_class(name: str) -> Callable[..., Optimizer]:
    """The class (or factory) registered as ``name``, imported now."""
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    module_name, _, attr = OPTIMIZERS[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build_optimizer(
    params: Iterable[Tensor], cfg: dict[str, Any], model: nn.Module | None = None
) -> Optimizer:
    """``cfg`` is the ``optimizer`` config node: ``name`` plus constructor arguments (and an
    optional ``schedule``, which is :class:`LrSchedule`'s); ``model`` owns ``params``."""
    kwargs = dict(cfg)
    name = kwargs.pop("name")
    kwargs.pop("schedule", None)
    constructor = optimizer_class(name)
    _check_values(name, kwargs)
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    if "model" in inspect.signature(constructor).parameters:
        if model is None:
            raise UserError(f"optimizer {name!r} needs the model (build_optimizer(model=...))")
        kwargs["model"] = model
    try:
        return constructor(params, **{**CONSTRUCTOR_DEFAULTS.get(name, {}), **kwargs})
    except (TypeError, ValueError) as error:
        raise UserError(f"bad optimizer settings for {name!r}: {error}") from error


def _check_values(name: str, kwargs: dict[str, Any]) -> None:
    """Finite numbers everywhere, and [0, 1) where a value is a momentum or decay rate."""
    for key, value in kwargs.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, float) and not math.isfinite(item):
                raise UserError(f"optimizer.{key} must be finite for {name!r}, got {item}")
        if key in UNIT_INTERVAL_KEYS and value is not None and not 0.0 <= value < 1.0:
            raise UserError(f"optimizer.{key} must lie in [0, 1) for {name!r}, got {value}")


SCHEDULE_DECAYS = ("cosine", "none")


class LrSchedule:
    """Scales each param group's schedulable value from the value it started with.

    The multiplier of step ``t`` is the task's recipe decay, or, where the optimizer's
    config sets ``schedule``, a linear warm-up over ``warmup_fraction`` of the run followed
    by a cosine decay to zero at ``max_steps`` (per step; it replaces the recipe). An
    optimizer with ``follows_schedule = False`` keeps its configured value throughout.
    The starting value is recorded once per group as ``initial_<key>`` (as torch's LR
    schedulers record ``initial_lr``) and travels with the optimizer's state_dict.
    """

    def __init__(
        self, optimizer: Optimizer, shape: dict[str, Any] | None = None, max_steps: int = 1
    ) -> None:
        self.optimizer = optimizer
        self.key = getattr(optimizer, "schedule_key", "lr")
        self.follows = getattr(optimizer, "follows_schedule", True)
        self.shape = shape
        self.max_steps = max_steps
        if shape is not None:
            fraction, decay = shape.get("warmup_fraction"), shape.get("decay")
            if isinstance(fraction, bool) or not isinstance(fraction, int | float):
                raise UserError(
                    f"optimizer.schedule.warmup_fraction must be a number, got {fraction!r}"
                )
            if not 0 <= fraction < 1 or decay not in SCHEDULE_DECAYS:
                raise UserError(
                    "optimizer.schedule needs warmup_fraction in [0, 1) and decay one of "
                    f"{', '.join(SCHEDULE_DECAYS)}; got {fraction!r}, {decay!r}"
                )
            self.warmup_steps = round(fraction * max_steps)
        for group in optimizer.param_groups:
            group.setdefault(f"initial_{self.key}", group[self.key])

    def multiplier(self, step: int, recipe: float) -> float:
        """The multiplier of the update of iteration ``step`` (0-based)."""
        if not self.follows:
            return 1.0
        if self.shape is None:
            return recipe
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.shape["decay"] == "none":
            return 1.0
        progress = (step - self.warmup_steps) / max(self.max_steps - self.warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def apply(self, step: int, recipe: float = 1.0) -> None:
        multiplier = self.multiplier(step, recipe)
        for group in self.optimizer.param_groups:
            group[self.key] = group[f"initial_{self.key}"] * multiplier


def step_statistics(optimizer: Optimizer) -> dict[str, Tensor] | None:
    """The optimizer's own 0-d tensors for the step just taken, if it reports any."""
    report = getattr(optimizer, "stat_tensors", None)
    return report() if callable(report) else None


def applied_hyperparameters(optimizer: Optimizer) -> dict[str, float]:
    """lr and momentum of the first param group as host numbers (no device access)."""
    group = optimizer.param_groups[0]
    momentum = group["betas"][0] if "betas" in group else group.get("momentum", 0.0)
    return {"lr": float(group["lr"]), "momentum": float(momentum)}


def takes_loss(optimizer: Optimizer) -> bool:
    """Whether ``step`` accepts the step's loss (loss-aware optimizers)."""
    return "loss" in inspect.signature(optimizer.step).parameters
