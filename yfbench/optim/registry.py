"""Build any optimizer of the suite from its config node; the hooks the trainer probes.

Adding an optimizer is a config file (``conf/optimizer/<name>.yaml``: ``name`` plus the
constructor's keyword arguments) and one entry in :data:`OPTIMIZERS`. The trainer knows
optimizers only through these optional hooks, probed with ``getattr``:

- ``schedule_key`` (class attribute, default ``"lr"``): the param-group key a hand-set
  decay scales (YellowFin tunes its lr, so its schedule acts on ``lr_factor``);
- ``stat_tensors()``: 0-d device tensors describing the step just taken (YellowFin's
  lr, momentum and statistics), read without a host sync;
- ``train()`` / ``eval()``: called around evaluation and checkpoints (optimizers that
  evaluate at an averaged point, like Schedule-Free, swap parameters there);
- a ``loss`` keyword of ``step``: the trainer then passes the step's loss.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from yfbench.errors import UserError
from yfbench.optim.closed_loop import ClosedLoopYellowFin
from yfbench.optim.yellowfin import YellowFin

OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "yellowfin": YellowFin,
    "yellowfin_closed_loop": ClosedLoopYellowFin,
    # Ablations of YellowFin under their own names, so that no analysis takes one for a
    # grid point of YellowFin itself (their configs set the flags).
    "yellowfin_open_loop": ClosedLoopYellowFin,
    "yellowfin_rescaled_sgd": YellowFin,
    "yellowfin_fixed_momentum": YellowFin,
    "adam": partial(torch.optim.Adam, foreach=True),
    "momentum_sgd": partial(torch.optim.SGD, foreach=True),
    "sgd": partial(torch.optim.SGD, momentum=0.0, foreach=True),
}
# Hyperparameters that are probabilities or decay rates, wherever an optimizer has them.
UNIT_INTERVAL_KEYS = ("momentum", "dampening", "beta")


def build_optimizer(params: Iterable[Tensor], cfg: dict[str, Any]) -> Optimizer:
    """``cfg`` is the ``optimizer`` config node: ``name`` plus constructor arguments."""
    kwargs = dict(cfg)
    name = kwargs.pop("name")
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    _check_values(name, kwargs)
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    try:
        return OPTIMIZERS[name](params, **kwargs)
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


def set_mode(optimizer: Optimizer, mode: str) -> None:
    """Call the optimizer's ``train()`` or ``eval()`` when it has one."""
    switch = getattr(optimizer, mode, None)
    if callable(switch):
        switch()
