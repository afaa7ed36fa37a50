"""Mechanic (Cutkosky et al. 2023) on AdamW, package ``mechanic-pytorch``.

The package keys its per-parameter reference points by the Parameter objects
themselves, so a loaded state dict holds keys no live parameter matches (``KeyError`` on
the first step after a resume); the adapter stores them by position. An exception inside
the package's step leaves autograd disabled process-wide; the adapter restores it. The
step taken is Mechanic's scale s (summed over its betas) times AdamW's update, so the lr
reported is s * lr.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mechanic_pytorch
import torch
from torch import Tensor
from torch.optim import Optimizer

from yfbench.peers.reporting import on_device

_STATE = "_mechanic"


def MechanicAdamW(
    params: Any,
    *,
    s_decay: float = 0.01,
    s_betas: Sequence[float] = (0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999),
    s_init: float = 1e-8,
    **adamw: Any,
) -> Optimizer:
    """AdamW (``adamw``: its keywords) tuned by Mechanic with the given tuner settings."""
    base = mechanic_pytorch.mechanize(
        torch.optim.AdamW, s_decay=s_decay, betas=tuple(s_betas), s_init=s_init
    )
    return type("MechanicAdamW", (_Resumable, base), {})(params, **adamw)


class _Resumable:
    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def step(self, closure: Any = None) -> Any:
        grad_enabled = torch.is_grad_enabled()
        try:
            return super().step(closure)
        finally:
            torch.set_grad_enabled(grad_enabled)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        tuner = self.state.get(_STATE)
        if tuner is not None:
            index = {id(p): i for i, p in enumerate(self._params())}
            state["state"] = {
                **state["state"],
                _STATE: {
                    f"param{index[id(k)]}" if isinstance(k, Tensor) else k: v
                    for k, v in tuner.items()
                },
            }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        tuner = self.state.get(_STATE)
        if tuner is not None:
            for i, p in enumerate(self._params()):
                if f"param{i}" in tuner:
                    tuner[p] = tuner.pop(f"param{i}")

    def stat_tensors(self) -> dict[str, Tensor]:
        group = self.param_groups[0]
        scale = self.state[_STATE]["s"].sum()
        return on_device(self, lr=group["lr"] * scale, momentum=group["betas"][0], s=scale)
