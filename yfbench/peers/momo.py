"""MoMo and MoMo-Adam (Schaipp et al. 2024), package ``momo-opt``.

The package keeps its step count, loss average and loss lower bound as attributes, not
in ``state_dict``, so a resumed run would restart them (and diverge from the first step
after the checkpoint); the adapters carry them in the state dict. The adaptive step tau
is a local of the package's ``step``: the adapters measure it from the update of the
smallest parameter tensor, tau = <x_old - x_new, u> / <u, u> with u the update direction,
so the record shows the step taken (to rounding).
"""

from __future__ import annotations

from typing import Any

import momo
import torch
from torch import Tensor

from yfbench.peers.reporting import on_device

_KEYS = ("_number_steps", "loss_avg", "lb")


class _Resumable:
    """``state_dict`` and ``load_state_dict`` that include the package's attributes."""

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["momo"] = {key: getattr(self, key) for key in _KEYS if hasattr(self, key)}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("momo")
        super().load_state_dict(state_dict)
        for key, value in extra.items():
            setattr(self, key, value)

    def step(self, closure: Any = None, loss: Tensor | None = None) -> Any:
        group = self.param_groups[0]
        probe = min((p for p in group["params"] if p.grad is not None), key=Tensor.numel)
        before = probe.detach().clone()
        result = super().step(closure, loss)
        self._tau = self._measured_step(group, probe, before)
        return result

    def _measured_step(self, group: dict[str, Any], probe: Tensor, before: Tensor) -> Tensor:
        decay = group["lr"] * group["weight_decay"]
        after = probe.detach()
        if decay and getattr(self, "divide", True):
            after = after * (1 + decay)  # undo the proximal decay x <- x / (1 + lr * wd)
        elif decay:
            after = after + decay * before  # undo AdamW-style decay x <- x (1 - lr * wd)
        direction = self._direction(probe)
        norm = direction.square().sum()
        tau = ((before - after) * direction).sum() / norm.clamp_min(torch.finfo(norm.dtype).tiny)
        return torch.where(norm > 0, tau, torch.zeros_like(tau))


class Momo(_Resumable, momo.Momo):
    def _direction(self, probe: Tensor) -> Tensor:
        return self.state[probe]["grad_avg"]

    def stat_tensors(self) -> dict[str, Tensor]:
        return on_device(self, lr=self._tau, momentum=self.beta)


class MomoAdam(_Resumable, momo.MomoAdam):
    def _direction(self, probe: Tensor) -> Tensor:
        group, state = self.param_groups[0], self.state[probe]
        beta2 = group["betas"][1]
        denominator = (state["grad_avg_sq"] / (1 - beta2 ** state["step"])).sqrt() + group["eps"]
        return state["grad_avg"] / denominator

    def stat_tensors(self) -> dict[str, Tensor]:
        return on_device(self, lr=self._tau, momentum=self.param_groups[0]["betas"][0])
