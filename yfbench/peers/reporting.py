"""The step an adapter reports: host numbers as 0-d tensors on the parameters' device."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


def on_device(optimizer: Optimizer, **values: float | Tensor) -> dict[str, Tensor]:
    """``values`` as 0-d float tensors where the parameters live.

    A host float becomes a fill kernel, not a copy, so reporting it never waits for the
    device; a device tensor is passed through.
    """
    device = optimizer.param_groups[0]["params"][0].device
    return {
        name: value.detach().reshape(()).float()
        if isinstance(value, Tensor)
        else torch.full((), float(value), device=device)
        for name, value in values.items()
    }


class ReportsDTimesLr:
    """Reporting for the Adam-style D-adaptation optimizers (DAdaptAdam, Prodigy): the
    step taken is d * lr with d the estimate *before* the step updates it, while the param
    group's ``lr`` stays 1; momentum is beta1. Mixed in before the package's optimizer."""

    param_groups: list[dict[str, Any]]

    def step(self, closure: Any = None) -> Any:
        group = self.param_groups[0]
        self._applied_lr = group["d"] * group["lr"]
        return super().step(closure)  # type: ignore[misc]

    def stat_tensors(self) -> dict[str, Tensor]:
        group = self.param_groups[0]
        optimizer: Optimizer = self  # type: ignore[assignment]
        return on_device(optimizer, lr=self._applied_lr, momentum=group["betas"][0], d=group["d"])
