"""D-Adaptation Adam and SGD (Defazio & Mishchenko 2023), package ``dadaptation``.

The step taken is d * lr for Adam and d * lr / ||g_0|| for SGD, with d the estimate
before the step updates it; the param group's ``lr`` stays 1, so the adapters report
the step taken. DAdaptAdam's ``decouple=False`` default is coupled L2 decay, not AdamW's:
the config says which one it runs.
"""

from __future__ import annotations

from typing import Any

import dadaptation
from torch import Tensor

from yfbench.peers.reporting import ReportsDTimesLr, on_device


class DAdaptAdam(ReportsDTimesLr, dadaptation.DAdaptAdam):
    """The package's optimizer, reporting the step it takes (d * lr)."""


class DAdaptSGD(dadaptation.DAdaptSGD):
    def step(self, closure: Any = None) -> Any:
        group = self.param_groups[0]
        d, lr = group["d"], group["lr"]
        result = super().step(closure)
        self._applied_lr = d * lr / group["g0_norm"]  # ||g_0|| is known after the first step
        return result

    def stat_tensors(self) -> dict[str, Tensor]:
        group = self.param_groups[0]
        return on_device(self, lr=self._applied_lr, momentum=group["momentum"], d=group["d"])
