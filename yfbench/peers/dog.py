"""DoG and L-DoG (Ivgi et al. 2023) with polynomial-decay iterate averaging, package
``dog-optimizer``.

DoG is meant to be evaluated on its averaged model: ``eval()`` loads the averager's
model into the trained one (the training point is kept aside) and ``train()`` puts the
training point back, so evaluation and checkpoints (taken in eval mode) leave the
trajectory bitwise unchanged. The averager's state, and the training point while in
eval mode, travel in the optimizer's ``state_dict``: the package keeps neither there.
DoG's step size replaces the schedule (``follows_schedule``). ``reps_rel=None`` applies
the package README's rule (1e-4 for batch-norm models, else 1e-6). The package fails on a
parameter without a gradient; every parameter of this suite's models gets one.
"""

from __future__ import annotations

from typing import Any

import dog
import torch
from torch import Tensor, nn

from yfbench.peers.reporting import on_device


class _Averaged:
    follows_schedule = False

    def __init__(
        self,
        params: Any,
        *,
        model: nn.Module,
        reps_rel: float | None = None,
        gamma: float = 8.0,
        **kwargs: Any,
    ) -> None:
        if reps_rel is None:  # the package README's rule
            batch_norm = any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
            )
            reps_rel = 1e-4 if batch_norm else 1e-6
        super().__init__(params, reps_rel=reps_rel, **kwargs)
        self.model = model
        self.averager = dog.PolynomialDecayAverager(model, gamma=gamma)
        self._training_point: dict[str, Tensor] | None = None  # set while in eval mode

    def step(self, closure: Any = None) -> Any:
        loss = super().step(closure)
        self.averager.step()
        return loss

    @torch.no_grad()
    def eval(self) -> None:
        if self._training_point is None:
            self._training_point = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.averager.averaged_model.state_dict())

    @torch.no_grad()
    def train(self) -> None:
        if self._training_point is not None:
            self.model.load_state_dict(self._training_point)
            self._training_point = None

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["averager"] = self.averager.state_dict()
        state["training_point"] = self._training_point
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.averager.load_state_dict(state_dict.pop("averager"))
        self._training_point = state_dict.pop("training_point")
        super().load_state_dict(state_dict)


class AveragedDoG(_Averaged, dog.DoG):
    def stat_tensors(self) -> dict[str, Tensor]:
        return on_device(self, lr=self.param_groups[0]["eta"][0], momentum=0.0)


class AveragedLDoG(_Averaged, dog.LDoG):
    def stat_tensors(self) -> dict[str, Tensor]:
        """lr: the mean of the per-tensor step sizes (L-DoG has one per parameter tensor)."""
        etas = torch.stack(self.param_groups[0]["eta"])
        return on_device(self, lr=etas.mean(), lr_min=etas.min(), lr_max=etas.max(), momentum=0.0)
