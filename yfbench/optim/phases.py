"""The scalar phases of a YellowFin step, shared by the eager and the fused step.

A step alternates passes over every parameter element with phases on 0-d tensors. The
phases are written once here, as pure functions of the global hyperparameters
(:class:`Config`) and the previous scalar state: the eager step calls them as they are,
the fused step compiles each group of them into one graph. Data-dependent choices use
``torch.where``, so nothing waits for the host. Step numbers refer to the algorithm in
:class:`yfbench.optim.YellowFin`'s docstring.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class Config(NamedTuple):
    """The global hyperparameters: equal in every param group, constants of the step."""

    beta: float
    curv_win_width: int
    zero_debias: bool
    adaptive_clip: bool
    clip_norm: float | None
    smooth_hyperparams: bool
    sparsity_debias: bool
    h_log_smooth: bool
    tune_momentum: bool
    rescaled_sgd: bool
    stat_protect_factor: float
    catastrophic_move_threshold: float
    eps: float


class Clip(NamedTuple):
    """Results of steps 1-3, the inputs of pass 2."""

    scale: Tensor  # the gradient scale of steps 1-2
    grad_norm_sq: Tensor  # s of step 3
    finite: Tensor  # bool: s is finite (else the step is skipped)
    ema_weight: Tensor  # 1 - beta, or 0 on a skipped step: the EMAs' weight of step 4
    protected: Tensor  # bool: step 2's stat-protection clip scaled the gradient down


class StepUpdate(NamedTuple):
    """Per-step coefficients of pass 3 (step 10), computed by the scalar phases."""

    apply: Tensor  # bool: the step is applied (finite statistics and hyperparameters)
    grad_coef: Tensor  # exploding-gradient scale, 0 on a skipped step
    momentum: Tensor  # mu, 1 on a skipped step (the buffer is kept)
    neg_lrs: tuple[Tensor, ...]  # -lr per param group, 0 on a skipped step


def cubic_momentum_root(dist: Tensor, grad_var: Tensor, h_min: Tensor, eps: float) -> Tensor:
    """Closed-form minimiser x of x^2 D^2 + (1-x)^4 C / h_min^2 on [0, 1] (sqrt of momentum).

    Setting the derivative to zero and substituting y = x - 1 gives the depressed cubic
    y^3 + p y + p = 0 with p = D^2 h_min^2 / (2 C); Vieta's substitution solves it.
    """
    p = (dist + eps) ** 2 * (h_min + eps) ** 2 / (2 * (grad_var + eps))
    w3 = (-torch.sqrt(p**2 + 4.0 / 27.0 * p**3) - p) / 2.0
    w = torch.sign(w3) * torch.abs(w3) ** (1.0 / 3.0)
    y = w - p / (3.0 * (w + eps))
    return y + 1.0


def robust_momentum(
    dist: Tensor, grad_var: Tensor, h_min: Tensor, h_max: Tensor, eps: float
) -> Tensor:
    """Momentum that keeps every curvature in [h_min, h_max] in the robust region."""
    x = cubic_momentum_root(dist, grad_var, h_min, eps)
    dynamic_range = torch.clamp((h_max + eps) / (h_min + eps), min=1.0 + eps)
    sqrt_dr = torch.sqrt(dynamic_range)
    return torch.maximum(x**2, ((sqrt_dr - 1.0) / (sqrt_dr + 1.0)) ** 2)


def _clip_factor(norm: Tensor, max_norm: Tensor | float) -> Tensor:
    """``clip_grad_norm_``'s scale: min(1, max_norm / (norm + 1e-6))."""
    return torch.clamp(max_norm / (norm + 1e-6), max=1.0)


def _ema(avg: Tensor, value: Tensor, beta: float) -> Tensor:
    return beta * avg + (1.0 - beta) * value


def _phase_1_2_clip(
    cfg: Config, raw_norm_sq: Tensor, h_max_prev: Tensor, t: Tensor
) -> tuple[Tensor, Tensor]:
    """Steps 1-2: the manual clip and the stat-protection clip, folded into one scale, and
    whether the stat protection scaled the gradient down."""
    scale = torch.ones_like(raw_norm_sq)
    protected = torch.zeros_like(raw_norm_sq, dtype=torch.bool)
    if cfg.clip_norm is not None:
        scale = _clip_factor(torch.sqrt(raw_norm_sq), cfg.clip_norm)
    if cfg.adaptive_clip:
        protect = torch.sqrt(cfg.stat_protect_factor * h_max_prev) + cfg.eps
        factor = _clip_factor(torch.sqrt(raw_norm_sq) * scale, protect)
        protected = (t > 1) & (factor < 1.0)
        scale = torch.where(t > 1, scale * factor, scale)
    return scale, protected


def _phase_3_norm(raw_norm_sq: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Step 3: s = ||g||^2 after clipping, and whether it is finite (else the step is skipped)."""
    grad_norm_sq = raw_norm_sq * scale**2
    return grad_norm_sq, torch.isfinite(grad_norm_sq)


def clip_and_norm(cfg: Config, raw_norm_sq: Tensor, h_max_prev: Tensor, t: Tensor) -> Clip:
    """Steps 1-3 (between passes 1 and 2), and the weight of step 4's EMAs."""
    scale, protected = _phase_1_2_clip(cfg, raw_norm_sq, h_max_prev, t)
    grad_norm_sq, finite = _phase_3_norm(raw_norm_sq, scale)
    # A zero weight on a skipped step keeps the EMAs exactly.
    ema_weight = torch.where(finite, 1.0 - cfg.beta, 0.0).float()
    return Clip(scale, grad_norm_sq, finite, ema_weight, finite & protected)


def _phase_4_6_statistics(
    cfg: Config,
    scalars: dict[str, Tensor],
    window: Tensor,
    grad_norm_sq: Tensor,
    finite: Tensor,
    grad_avg_sq: Tensor,
    density: Tensor | None,
) -> dict[str, Tensor]:
    """Steps 4-6, given ||ḡ||^2 from pass 2: EMAs, curvature range, variance C, distance D.

    Updates the curvature window in place (keeping it on a non-finite step) and returns
    the new scalar statistics; the caller keeps the old ones on a non-finite step.
    """
    beta, eps, t = cfg.beta, cfg.eps, scalars["stat_steps"]
    debias = (1.0 - beta ** (t + 1).double()).float() if cfg.zero_debias else 1.0
    slot = (t % cfg.curv_win_width).view(1)
    window.scatter_(0, slot, torch.where(finite, grad_norm_sq, window.gather(0, slot)))
    filled = torch.arange(cfg.curv_win_width, device=window.device) <= t
    curv_min = torch.where(filled, window, math.inf).min()
    curv_max = torch.where(filled, window, -math.inf).max()

    new: dict[str, Tensor] = {}
    new["grad_norm_sq"] = grad_norm_sq
    new["grad_norm_sq_avg"] = _ema(scalars["grad_norm_sq_avg"], grad_norm_sq, beta)
    new["grad_norm_avg"] = _ema(scalars["grad_norm_avg"], torch.sqrt(grad_norm_sq), beta)
    new["dist_avg"] = _ema(
        scalars["dist_avg"], new["grad_norm_avg"] / (new["grad_norm_sq_avg"] + eps), beta
    )
    if cfg.h_log_smooth:
        new["h_min_avg"] = _ema(scalars["h_min_avg"], torch.log(curv_min + eps), beta)
        new["h_max_avg"] = _ema(scalars["h_max_avg"], torch.log(curv_max + eps), beta)
        h_min = torch.exp(new["h_min_avg"] / debias)
        h_max = torch.exp(new["h_max_avg"] / debias)
    else:
        new["h_min_avg"] = _ema(scalars["h_min_avg"], curv_min, beta)
        new["h_max_avg"] = _ema(scalars["h_max_avg"], curv_max, beta)
        h_min = new["h_min_avg"] / debias
        h_max = new["h_max_avg"] / debias
    grad_var = torch.clamp(new["grad_norm_sq_avg"] / debias - grad_avg_sq / debias**2, min=eps)
    dist = new["dist_avg"] / debias
    if density is not None:
        new["sparsity_avg"] = _ema(scalars["sparsity_avg"], density, beta)
        sparsity = new["sparsity_avg"] / debias
        h_min, h_max, grad_var = h_min * sparsity, h_max * sparsity, grad_var * sparsity
        dist = dist / torch.sqrt(sparsity)
    new.update(h_min=h_min, h_max=h_max, grad_var=grad_var, dist_to_opt=dist)
    return new


def _phase_7_tune(
    cfg: Config,
    scalars: dict[str, Tensor],
    new: dict[str, Tensor],
    initial: tuple[float | Tensor, float | Tensor],
) -> tuple[Tensor, Tensor]:
    """Step 7: robust-region momentum, its lr, slow start, optional smoothing; step 0
    applies ``initial`` (lr, momentum). Adds the momentum correction (closed loop). With
    ``rescaled_sgd`` the tuned pair (α, μ) becomes (α / (1 − μ), 0): plain SGD with the
    same effective step, the "YellowFin rescaling" ablation."""
    eps, t = cfg.eps, scalars["stat_steps"]
    if cfg.tune_momentum:
        # In float64: in float32 the cubic loses all digits once p > ~1e9 and overflows
        # past ~1e12 (the authors computed it in Python floats).
        stats = (new[k].double() for k in ("dist_to_opt", "grad_var", "h_min", "h_max"))
        mu = robust_momentum(*stats, eps).float()
    else:
        mu = torch.zeros_like(new["h_min"]) + initial[1]
    alpha = (1.0 - torch.sqrt(mu)) ** 2 / (new["h_min"] + eps)
    alpha = alpha * torch.clamp((t + 1) / (10.0 * cfg.curv_win_width), max=1.0)
    if cfg.smooth_hyperparams:
        # Step 0 applies the initial values, so smoothing starts at step 1.
        tuning = t > 0
        new["smooth_lr"] = torch.where(
            tuning, _ema(scalars["smooth_lr"], alpha, cfg.beta), scalars["smooth_lr"]
        )
        new["smooth_momentum"] = torch.where(
            tuning, _ema(scalars["smooth_momentum"], mu, cfg.beta), scalars["smooth_momentum"]
        )
        alpha, mu = new["smooth_lr"], new["smooth_momentum"]
    alpha = torch.where(t == 0, initial[0], alpha.float())
    mu = torch.where(t == 0, initial[1], mu.float()) + scalars["momentum_correction"]
    if cfg.rescaled_sgd:
        alpha, mu = alpha / (1.0 - mu), torch.zeros_like(mu)
    return alpha, mu


def _phase_8_clamp_lr(
    cfg: Config, alpha: Tensor, lr_factor: float | Tensor, grad_norm_sq: Tensor
) -> Tensor:
    """Step 8: a group's lr = alpha * lr_factor, clamped so that lr * ||g|| < 100."""
    lr = alpha * lr_factor
    if cfg.adaptive_clip:
        threshold = cfg.catastrophic_move_threshold
        too_big = lr * torch.sqrt(grad_norm_sq) >= threshold
        lr = torch.where(too_big, threshold / torch.sqrt(grad_norm_sq + cfg.eps), lr)
    return lr


def _phase_9_exploding_clip(
    cfg: Config, grad_norm_sq: Tensor, h_max_prev: Tensor, t: Tensor
) -> Tensor:
    """Step 9: an exploding gradient (s >= previous h_max) is clipped for the update only."""
    update_scale = torch.ones_like(grad_norm_sq)
    if cfg.adaptive_clip:
        exploding = (t >= 1) & (grad_norm_sq >= h_max_prev)
        clip = _clip_factor(torch.sqrt(grad_norm_sq), torch.sqrt(h_max_prev) + cfg.eps)
        update_scale = torch.where(exploding, clip, update_scale)
    return update_scale


def statistics_and_tuning(
    cfg: Config,
    scalars: dict[str, Tensor],
    window: Tensor,
    clip: Clip,
    grad_avg_sq: Tensor,
    density: Tensor | None,
    initial: tuple[float | Tensor, float | Tensor],
    lr_factors: tuple[float | Tensor, ...],
    report_group: int,
) -> tuple[dict[str, Tensor], StepUpdate]:
    """Steps 4-9 (between passes 2 and 3): the scalar state to store and pass 3's inputs.

    A step is applied only if s and the tuned lr and momentum are finite (the cubic can
    overflow); a non-finite s also keeps every statistic. ``report_group``'s lr is the
    one reported.
    """
    t, h_max_prev = scalars["stat_steps"], scalars["h_max"]
    grad_norm_sq, finite = clip.grad_norm_sq, clip.finite
    new = _phase_4_6_statistics(cfg, scalars, window, grad_norm_sq, finite, grad_avg_sq, density)
    alpha, mu = _phase_7_tune(cfg, scalars, new, initial)
    apply = finite & torch.isfinite(alpha) & torch.isfinite(mu)
    lrs = [_phase_8_clamp_lr(cfg, alpha, factor, grad_norm_sq) for factor in lr_factors]
    update_scale = _phase_9_exploding_clip(cfg, grad_norm_sq, h_max_prev, t)

    stored = {key: torch.where(finite, value, scalars[key]) for key, value in new.items()}
    stored["skipped_steps"] = scalars["skipped_steps"] + (~apply).long()
    # Clip events (cumulative, so a train record logged every k steps misses none).
    stored["protect_clips"] = scalars["protect_clips"] + (apply & clip.protected).long()
    stored["exploding_clips"] = scalars["exploding_clips"] + (apply & (update_scale < 1.0)).long()
    stored["stat_steps"] = t + finite.long()
    stored["lr"] = torch.where(apply, lrs[report_group], scalars["lr"])
    stored["momentum"] = torch.where(apply, mu, scalars["momentum"])
    update = StepUpdate(
        apply=apply,
        grad_coef=torch.where(apply, update_scale, 0.0).float(),
        momentum=torch.where(apply, mu, 1.0).float(),
        neg_lrs=tuple(-torch.where(apply, lr, 0.0).float() for lr in lrs),
    )
    return stored, update
