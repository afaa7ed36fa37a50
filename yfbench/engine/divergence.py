"""When a run has diverged: non-finite losses, finite blow-ups, endless skipped steps.

The per-step part runs on the device (a few 0-d tensor ops, no host sync); the trainer
reads its verdict once per flush, together with the buffered records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

NON_FINITE, BLOW_UP = 1, 2
# A run whose loss moving average ends above this many times its first loss made no
# progress: it is diverged, not completed (momentum SGD at lr 5 on WSJ ends at 2.7x; every
# completed run of the committed CPU grids ends below 0.7x).
END_FACTOR = 1.5


class Diverged(Exception):
    """The run diverged at ``step``; the message says how."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"{reason} (step {step})")
        self.step = step


@dataclass
class DivergenceSettings:
    loss_factor: float = 10.0
    smoothing_steps: int = 50
    max_skipped_steps: int = 50


class DivergenceWatch:
    """Device-side watch of the training loss, plus the host-side checks at sync points.

    A blow-up is the loss's moving average (time constant ``smoothing_steps``) above
    ``loss_factor`` times the first step's loss: a gradient clip can keep an exploded
    loss finite for ever, and such a run must not count as completed.
    """

    def __init__(self, settings: DivergenceSettings, device: torch.device) -> None:
        self.settings = settings
        self.average = torch.zeros((), device=device)
        self.reference = torch.zeros((), device=device)
        self.first_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.reason = torch.zeros((), dtype=torch.int64, device=device)
        # Host side: the current stretch of steps the optimizer skipped.
        self.skips = {"last_step": 0, "last_skipped": None, "stretch": 0}

    def update(self, step: int, loss: Tensor) -> None:
        """Per step (``step`` counts from 1), without a host sync."""
        if step == 1:
            self.reference.copy_(loss)
            self.average.copy_(loss)
        else:
            self.average.lerp_(loss, 1.0 / self.settings.smoothing_steps)
        limit = self.settings.loss_factor * self.reference.abs()
        code = torch.where(
            ~torch.isfinite(loss),
            NON_FINITE,
            torch.where(self.average > limit, BLOW_UP, 0),
        )
        first = (code > 0) & (self.first_step < 0)
        self.first_step.copy_(torch.where(first, step, self.first_step))
        self.reason.copy_(torch.where(first, code, self.reason))

    def flags(self) -> Tensor:
        """(first diverged step or -1, reason code), for the flush's single transfer."""
        return torch.stack([self.first_step, self.reason])

    def check(self, first_step: int, reason: int) -> None:
        """Raise :class:`Diverged` from the values :meth:`flags` held at the flush."""
        if first_step < 0:
            return
        if reason == NON_FINITE:
            raise Diverged(first_step, "the training loss became non-finite")
        raise Diverged(
            first_step,
            f"the training loss's moving average exceeded {self.settings.loss_factor:g} times "
            "its first value",
        )

    def check_end(self, step: int) -> None:
        """At the last step (a host sync): diverged when the loss ended far above its start."""
        average, reference = float(self.average), float(self.reference)
        if average > END_FACTOR * abs(reference):
            raise Diverged(
                step,
                f"the training loss's moving average ended at {average:.4g}, above "
                f"{END_FACTOR:g} times its first value ({reference:.4g})",
            )

    def check_skips(self, step: int, skipped: int) -> None:
        """Diverged when the optimizer skipped every update for ``max_skipped_steps`` steps."""
        skips = self.skips
        span = step - skips["last_step"]
        every = skips["last_skipped"] is not None and skipped - skips["last_skipped"] == span
        skips["stretch"] = skips["stretch"] + span if every else 0
        skips["last_step"], skips["last_skipped"] = step, skipped
        if skips["stretch"] >= self.settings.max_skipped_steps:
            raise Diverged(
                step,
                f"the optimizer skipped every step from {step - skips['stretch'] + 1} to {step} "
                "(non-finite gradients or statistics)",
            )

    @staticmethod
    def check_validation(step: int, metrics: dict[str, float]) -> None:
        """A non-finite validation metric (perplexity overflowing, say) is a divergence."""
        bad = [key for key, value in metrics.items() if not math.isfinite(value)]
        if bad:
            raise Diverged(step, f"validation {', '.join(bad)} became non-finite")

    def state_dict(self) -> dict[str, Any]:
        return {
            "average": self.average,
            "reference": self.reference,
            "first_step": self.first_step,
            "reason": self.reason,
            "skips": dict(self.skips),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("average", "reference", "first_step", "reason"):
            getattr(self, key).copy_(state[key])
        self.skips = dict(state["skips"])


def finite_parameters(model: torch.nn.Module) -> bool:
    """One pass over the parameters (a host sync): run at checkpoints and at the end only."""
    norms = torch._foreach_norm([p.detach() for p in model.parameters()])
    return bool(torch.isfinite(torch.stack(norms)).all())
