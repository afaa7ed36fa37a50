"""Closed-loop YellowFin: measure the total momentum of asynchronous training, feed it back.

Asynchrony adds momentum of its own, so the momentum the model actually moves with (the
"total momentum" mu_T) exceeds the momentum the optimizer applies. The paper measures it
as the median over coordinates of (x_t - x_{t-1} + alpha g) / (x_{t-1} - x_{t-2}).

What the code does (per step, after YellowFin's own step):

- feed-forward: the applied momentum is YellowFin's target mu* (this step's tuned value)
  plus a correction c, so it follows mu* at once when mu* moves;
- integral: c <- c + gamma (mu* - mu_T), so c accumulates the measured error and drives
  mu_T to mu*; a step whose measurement is NaN (no usable coordinate) leaves c alone;
- clamp (anti-windup): c is bounded so that mu* + c stays in [-0.999, 0.999], where
  heavy ball is stable; a saturated loop stops integrating further.

The paper's Algorithm 5 is a pure integrator instead: the applied momentum itself starts
at 0 and moves only by mu <- mu + gamma (mu* - mu_T), with no feed-forward term and no
clamp. Both have the same fixed point (mu_T = mu*); with the feed-forward term the loop
only has to learn the asynchrony-induced offset, not mu* itself, so it settles sooner and
tracks a drifting target. ``feedback_gain=0`` gives open-loop YellowFin (mu = mu*) that
still measures mu_T.

Which step the gradient is paired with matters. A step's own applied gradient gives back
exactly the applied momentum, whatever the staleness: the heavy-ball update is an identity
in it. The measurement sees asynchrony only when the gradient is paired with the step
taken *from the point where it was computed*, as the authors' prototype sensor did. With
staleness tau, the gradient received at update t was computed at x_{t-tau-1}, so it is
paired with the step x_{t-tau} - x_{t-tau-1}: the paper's formula with x read tau updates
back. The price is a history of tau + 2 parameter snapshots (float32, model-sized each;
2 when tau = 0).

Zhang & Mitliagkas, "YellowFin and the Art of Momentum Tuning", arXiv:1706.03471.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from yfbench.optim.yellowfin import YellowFin

# Coordinates whose previous step is below ~100 float32 ulps of the parameter carry only
# rounding noise in the ratio: they are left out of the median.
_DEN_REL_TOL = 1e-5
# Anti-windup: the applied momentum (target + correction) stays where heavy ball is stable.
_MAX_ABS_MOMENTUM = 0.999


def measure_total_momentum(
    x_new: Tensor, x_mid: Tensor, x_old: Tensor, grad: Tensor, lr: Tensor | float
) -> Tensor:
    """median over coordinates of (x_new - x_mid + lr grad) / (x_mid - x_old).

    ``grad`` is the gradient at ``x_mid`` and ``lr`` the lr of the step x_mid -> x_new.
    Tiny denominators become NaN and are skipped; the result is NaN when none is left.
    Stays on the device (no host sync).
    """
    den = x_mid - x_old
    ratio = (x_new - x_mid + lr * grad) / den
    negligible = den.abs() <= _DEN_REL_TOL * x_mid.abs()
    return torch.nanmedian(ratio.masked_fill_(negligible, math.nan))


class ClosedLoopYellowFin(YellowFin):
    """YellowFin whose momentum is corrected until the measured total momentum meets its target.

    Applied momentum = target mu* + correction, the correction integrating
    gamma (mu* - mu_T) and clamped so the sum stays in [-0.999, 0.999] (module docstring).
    ``staleness`` must equal the delay of the gradients the optimizer receives (the
    trainer's ``staleness``); ``feedback_gain`` is gamma (0 gives open-loop YellowFin
    that still measures mu_T). Other arguments are YellowFin's. ``stat_tensors()`` adds
    ``total_momentum`` (mu_T, NaN until measurable), ``target_momentum`` (mu*) and
    ``momentum_correction`` (after this step's update).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        feedback_gain: float = 0.01,
        staleness: int = 15,
        **kwargs: Any,
    ) -> None:
        if feedback_gain < 0.0:
            raise ValueError(
                f"ClosedLoopYellowFin: feedback_gain must be >= 0, got {feedback_gain}"
            )
        if not isinstance(staleness, int) or staleness < 0:
            raise ValueError(f"ClosedLoopYellowFin: staleness must be an int >= 0, got {staleness}")
        if kwargs.get("rescaled_sgd"):
            raise ValueError(
                "ClosedLoopYellowFin: rescaled_sgd=True applies no momentum, so there is none "
                "to correct; use YellowFin(rescaled_sgd=True)"
            )
        super().__init__(params, **kwargs)
        self.feedback_gain = feedback_gain
        self.staleness = staleness

    def _global_state(self) -> dict[str, Any]:
        state = super()._global_state()
        if "param_history" not in state:
            numel = state["momentum_buffer"].numel()
            device = state["momentum_buffer"].device
            # x_j sits in row j % (tau + 2); lr_j (the lr of the step to x_j) in j % (tau + 1).
            history = torch.zeros(self.staleness + 2, numel, dtype=torch.float32, device=device)
            history[0] = self._get_backend().flat_params()
            state["param_history"] = history
            state["lr_history"] = torch.zeros(self.staleness + 1, device=device)
            state["total_momentum"] = torch.full((), math.nan, device=device)
            state["target_momentum"] = torch.zeros((), device=device)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """YellowFin's step, then the measurement of mu_T and the feedback."""
        state = self._global_state()
        steps_before = state["step"]
        loss = super().step(closure)
        if state["step"] == steps_before:  # no parameter had a gradient
            return loss
        total = self._measure(state)
        target = state["momentum"] - state["momentum_correction"]
        correction = state["momentum_correction"] + self.feedback_gain * (target - total)
        bounded = (target + correction).clamp(-_MAX_ABS_MOMENTUM, _MAX_ABS_MOMENTUM) - target
        state["momentum_correction"] = torch.where(
            torch.isfinite(total), bounded, state["momentum_correction"]
        )
        state["total_momentum"] = total
        state["target_momentum"] = target
        return loss

    def _measure(self, state: dict[str, Any]) -> Tensor:
        """mu_T of the step x_{n-tau-1} -> x_{n-tau}, paired with the gradient just received."""
        n, tau = state["step"], self.staleness
        rows = tau + 2
        history, lrs = state["param_history"], state["lr_history"]
        lrs[n % (tau + 1)] = state["lr"]
        backend = self._get_backend()
        current = backend.flat_params()
        total = torch.full((), math.nan, device=current.device)
        if n >= tau + 2:  # x_{n-tau-2} exists and the gradient is really tau updates old
            grad = backend.flat_grads()
            x_mid = history[(n - tau - 1) % rows]
            for span, group in zip(backend.layout.group_spans, self.param_groups, strict=True):
                if group["weight_decay"] != 0.0:
                    grad[span].add_(x_mid[span], alpha=group["weight_decay"])
            x_new = current if tau == 0 else history[(n - tau) % rows]
            total = measure_total_momentum(
                x_new, x_mid, history[n % rows], grad, lrs[(n - tau) % (tau + 1)]
            )
        history[n % rows] = current
        return total

    def _stat_sources(self, state: dict[str, Any]) -> dict[str, Tensor]:
        """YellowFin's, plus the measured total momentum, its target and the correction."""
        sources = super()._stat_sources(state)
        sources.update(
            total_momentum=state["total_momentum"],
            target_momentum=state["target_momentum"],
            momentum_correction=state["momentum_correction"],
        )
        return sources
