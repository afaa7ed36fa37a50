"""Prodigy (Mishchenko & Defazio 2024), package ``prodigyopt``.

The step it takes is d * lr (times Adam's bias correction when that is on), where d is
the estimate *before* the step updates it; the param group's ``lr`` stays 1, so the
adapter reports d * lr as the lr.
"""

from __future__ import annotations

from typing import Any

import prodigyopt
from torch import Tensor

from yfbench.peers.reporting import on_device


class Prodigy(prodigyopt.Prodigy):
    def step(self, closure: Any = None) -> Any:
        group = self.param_groups[0]
        self._applied_lr = group["d"] * group["lr"]
        return super().step(closure)

    def stat_tensors(self) -> dict[str, Tensor]:
        group = self.param_groups[0]
        return on_device(self, lr=self._applied_lr, momentum=group["betas"][0], d=group["d"])
