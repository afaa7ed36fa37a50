"""Build any optimizer of the suite from its config node, and drive its lr schedule."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from yfbench.errors import UserError
from yfbench.optim.closed_loop import ClosedLoopYellowFin
from yfbench.optim.yellowfin import YellowFin


def _adam(params: Iterable[torch.Tensor], cfg: dict[str, Any]) -> Optimizer:
    return torch.optim.Adam(params, foreach=True, **cfg)


def _momentum_sgd(params: Iterable[torch.Tensor], cfg: dict[str, Any]) -> Optimizer:
    return torch.optim.SGD(params, foreach=True, **cfg)


def _sgd(params: Iterable[torch.Tensor], cfg: dict[str, Any]) -> Optimizer:
    return torch.optim.SGD(params, momentum=0.0, foreach=True, **cfg)


def _yellowfin(params: Iterable[torch.Tensor], cfg: dict[str, Any]) -> Optimizer:
    return YellowFin(params, **cfg)


def _yellowfin_closed_loop(params: Iterable[torch.Tensor], cfg: dict[str, Any]) -> Optimizer:
    return ClosedLoopYellowFin(params, **cfg)


OPTIMIZERS: dict[str, Callable[[Iterable[torch.Tensor], dict[str, Any]], Optimizer]] = {
    "yellowfin": _yellowfin,
    "yellowfin_closed_loop": _yellowfin_closed_loop,
    "adam": _adam,
    "momentum_sgd": _momentum_sgd,
    "sgd": _sgd,
}


def build_optimizer(params: Iterable[torch.Tensor], cfg: dict[str, Any]) -> Optimizer:
    """``cfg`` is the ``optimizer`` config node: ``name`` plus constructor arguments."""
    cfg = dict(cfg)
    name = cfg.pop("name")
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    try:
        optimizer = OPTIMIZERS[name](params, cfg)
    except (TypeError, ValueError) as error:
        raise UserError(f"bad optimizer settings for {name!r}: {error}") from error
    if not isinstance(optimizer, YellowFin):  # YellowFin's schedule acts on lr_factor
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
    return optimizer


def set_lr_multiplier(optimizer: Optimizer, multiplier: float) -> None:
    """Apply a hand-set decay: YellowFin scales its tuned lr (lr_factor), others their lr."""
    for group in optimizer.param_groups:
        if isinstance(optimizer, YellowFin):
            group["lr_factor"] = group.setdefault("base_lr_factor", group["lr_factor"]) * multiplier
        else:
            group["lr"] = group["base_lr"] * multiplier


def hyperparameters(optimizer: Optimizer) -> dict[str, float]:
    """lr and momentum as applied by the last step, plus YellowFin's statistics."""
    if isinstance(optimizer, YellowFin):
        stats = optimizer.stats()
        stats.pop("step")
        return stats
    group = optimizer.param_groups[0]
    momentum = group["betas"][0] if "betas" in group else group.get("momentum", 0.0)
    return {"lr": float(group["lr"]), "momentum": float(momentum)}
