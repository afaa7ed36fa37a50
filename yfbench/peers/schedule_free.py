"""Schedule-Free SGD and AdamW (Defazio et al. 2024), package ``schedulefree``.

The ``*Reference`` variants are used: they keep the training point y and the averaged
point x as state and copy one or the other into the parameters, so a train/eval round
trip (every evaluation and every checkpoint) is bitwise exact. The lerp-based fast
variants reconstruct y from x and z in floating point, and a checkpoint taken at an
unscheduled moment (a SIGTERM stop) then changes the trajectory.

Schedule-Free replaces the schedule, so the trainer's lr schedule leaves it alone
(``follows_schedule``), and it is evaluated at x with batch-norm statistics recomputed
there (``recompute_batch_norm`` training batches; the trainer does it).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import schedulefree
from torch import Tensor

from yfbench.peers.reporting import on_device


class _Quiet:
    """The reference variants print on every mode switch; a benchmark logs records instead."""

    follows_schedule = False

    def __init__(self, params: Any, *, recompute_batch_norm: int = 50, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.recompute_batch_norm = recompute_batch_norm

    def train(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            super().train()

    def eval(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            super().eval()


class ScheduleFreeSGD(_Quiet, schedulefree.SGDScheduleFreeReference):
    def stat_tensors(self) -> dict[str, Tensor]:
        """lr: the step on z (warm-up included); momentum: the interpolation y = lerp(z, x)."""
        group = self.param_groups[0]
        return on_device(self, lr=group["scheduled_lr"], momentum=group["momentum"])


class ScheduleFreeAdamW(_Quiet, schedulefree.AdamWScheduleFreeReference):
    def stat_tensors(self) -> dict[str, Tensor]:
        group = self.param_groups[0]
        return on_device(self, lr=group["scheduled_lr"], momentum=group["betas"][0])
