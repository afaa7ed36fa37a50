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
  parameters there);
- a ``loss`` keyword of ``step``: the trainer then passes the step's loss.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Iterable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

from yfbench.errors import UserError

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
}
# Constructor arguments an entry gets unless its config sets them (the config wins).
CONSTRUCTOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "adam": {"foreach": True},
    "momentum_sgd": {"foreach": True},
    "sgd": {"momentum": 0.0, "foreach": True},
}
# Hyperparameters that are probabilities or decay rates, wherever an optimizer has them.
UNIT_INTERVAL_KEYS = ("momentum", "dampening", "beta")


def optimizer_class(name: str) -> type[Optimizer]:
    """The class (or factory) registered as ``name``, imported now."""
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    module_name, _, attr = OPTIMIZERS[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build_optimizer(params: Iterable[Tensor], cfg: dict[str, Any]) -> Optimizer:
    """``cfg`` is the ``optimizer`` config node: ``name`` plus constructor arguments."""
    kwargs = dict(cfg)
    name = kwargs.pop("name")
    constructor = optimizer_class(name)
    _check_values(name, kwargs)
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
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


class LrSchedule:
    """Scales each param group's schedulable value from the value it started with.

    The starting value is recorded once per group as ``initial_<key>`` (as torch's LR
    schedulers record ``initial_lr``) and travels with the optimizer's state_dict.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.key = getattr(optimizer, "schedule_key", "lr")
        for group in optimizer.param_groups:
            group.setdefault(f"initial_{self.key}", group[self.key])

    def apply(self, multiplier: float) -> None:
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
