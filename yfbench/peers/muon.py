"""Muon (``torch.optim.Muon``) on the hidden weight matrices, AdamW on everything else.

As Muon's authors prescribe: embeddings, biases, normalisation weights and the output
layer (the model's last ``nn.Linear``) take AdamW; every other weight of two or more
dimensions takes Muon. A convolution kernel enters Muon as its (out, in * kh * kw) matrix:
a 2-D view sharing the kernel's storage (its columns in memory order, which leaves the
orthogonalised update unchanged up to the same column order). Both optimizers share
one lr (``adjust_lr_fn="match_rms_adamw"`` scales Muon's update to AdamW's RMS) and the
trainer sees one optimizer: Muon's group first, so the logged lr and momentum are Muon's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer


def split_parameters(model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """(Muon's hidden weights, AdamW's rest) of ``model``, each parameter once."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    output = {id(p) for p in linears[-1].parameters()} if linears else set()
    embeddings = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    hidden, rest = [], []
    for p in model.parameters():
        if p.ndim >= 2 and id(p) not in output | embeddings:
            hidden.append(p)
        else:
            rest.append(p)
    return hidden, rest


def _memory_order(tensor: Tensor) -> list[int]:
    """Dimensions of ``tensor`` from the outermost in memory, output channels first."""
    order = sorted(range(tensor.ndim), key=lambda d: -tensor.stride(d))
    return [0, *(d for d in order if d)]


def _matrix(tensor: Tensor, order: list[int]) -> Tensor:
    """``tensor`` as an (out, rest) matrix: a view where its layout allows, else a copy."""
    return tensor.permute(order).reshape(tensor.shape[0], -1)


class MuonWithAdamW(Optimizer):
    """torch's Muon and AdamW over a split of one model's parameters, as one optimizer."""

    def __init__(
        self,
        params: Any,
        *,
        model: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        betas: Sequence[float] = (0.9, 0.95),
        eps: float = 1e-8,
    ) -> None:
        del params  # the split needs the model's modules; every parameter is in it
        hidden, rest = split_parameters(model)
        # (2-D view, kernel, the kernel's dims in memory order)
        self._kernels: list[tuple[nn.Parameter, Tensor, list[int]]] = []
        matrices = [p if p.ndim == 2 else self._view(p) for p in hidden]
        self.muon = torch.optim.Muon(
            matrices,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            adjust_lr_fn="match_rms_adamw",
        )
        self.adamw = torch.optim.AdamW(
            rest, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=True
        )
        super().__init__([*self.muon.param_groups, *self.adamw.param_groups], {})
        self._share()

    def _view(self, kernel: Tensor) -> nn.Parameter:
        order = _memory_order(kernel)
        matrix = _matrix(kernel.data, order)
        if matrix.data_ptr() != kernel.data_ptr():
            raise ValueError(f"a {tuple(kernel.shape)} kernel has no 2-D view in its layout")
        view = nn.Parameter(matrix)
        self._kernels.append((view, kernel, order))
        return view

    def _share(self) -> None:
        """The inner optimizers use this one's groups and state (after a load too)."""
        count = len(self.muon.param_groups)
        self.muon.param_groups = self.param_groups[:count]
        self.adamw.param_groups = self.param_groups[count:]
        self.muon.state = self.adamw.state = self.state

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        del closure
        for view, kernel, order in self._kernels:
            view.grad = None if kernel.grad is None else _matrix(kernel.grad, order)
        self.muon.step()
        self.adamw.step()
        for view, _, _ in self._kernels:
            view.grad = None
        return None

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for _, kernel, _ in self._kernels:
            if set_to_none:
                kernel.grad = None
            elif kernel.grad is not None:
                kernel.grad.zero_()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._share()
