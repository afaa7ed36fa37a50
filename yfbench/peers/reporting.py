"""The step an adapter reports: host numbers as 0-d tensors on the parameters' device."""

from __future__ import annotations

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
