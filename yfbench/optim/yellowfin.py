"""YellowFin: automatic tuning of one learning rate and one momentum for momentum SGD.

Implements ``../shared/YELLOWFIN.md`` (Zhang & Mitliagkas, "YellowFin and the Art of
Momentum Tuning"), matching the authors' final PyTorch code step for step in its default
configuration.  Every statistic is a tensor on the parameters' device, the per-parameter
work runs on flat buffers (one kernel per operation for the whole model), and ``step()``
never waits for the host: data-dependent choices use ``torch.where``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

GLOBAL_STATE_KEY = "yellowfin"
_SCALAR_STATS = (
    "grad_norm_sq_avg",  # S: EMA of ||g||^2
    "grad_norm_avg",  # N: EMA of ||g||
    "dist_avg",  # R: EMA of N / (S + eps)
    "h_min_avg",  # EMA of log(min(window) + eps), or of min(window) when linear
    "h_max_avg",
    "sparsity_avg",
    "smooth_lr",
    "smooth_momentum",
    "h_min",
    "h_max",
    "grad_var",
    "dist_to_opt",
    "grad_norm_sq",
    "lr",
    "momentum",
)


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


class YellowFin(Optimizer):
    """Momentum SGD whose learning rate and momentum are tuned every step.

    ``lr`` and ``momentum`` are only used on step 0; afterwards they are tuned.
    ``lr_factor`` multiplies the tuned lr (hand-set decay schedules act on it) and,
    like ``weight_decay``, may differ per param group; all statistics are global.
    ``momentum_correction`` (see :meth:`set_momentum_correction`) is added to the tuned
    momentum; it is the seam for closed-loop feedback in asynchronous training.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        lr_factor: float = 1.0,
        beta: float = 0.999,
        curv_win_width: int = 20,
        zero_debias: bool = True,
        adaptive_clip: bool = True,
        clip_norm: float | None = None,
        smooth_hyperparams: bool = False,
        sparsity_debias: bool = False,
        h_log_smooth: bool = True,
        tune_momentum: bool = True,
        stat_protect_factor: float = 100.0,
        catastrophic_move_threshold: float = 100.0,
        eps: float = 1e-6,
    ) -> None:
        _require(lr >= 0.0, f"lr must be >= 0, got {lr}")
        _require(0.0 <= momentum < 1.0, f"momentum must be in [0, 1), got {momentum}")
        _require(weight_decay >= 0.0, f"weight_decay must be >= 0, got {weight_decay}")
        _require(lr_factor >= 0.0, f"lr_factor must be >= 0, got {lr_factor}")
        _require(0.0 < beta < 1.0, f"beta must be in (0, 1), got {beta}")
        _require(curv_win_width >= 1, f"curv_win_width must be >= 1, got {curv_win_width}")
        _require(clip_norm is None or clip_norm > 0, f"clip_norm must be > 0, got {clip_norm}")
        _require(eps > 0.0, f"eps must be > 0, got {eps}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, lr_factor=lr_factor)
        super().__init__(params, defaults)
        self.beta = beta
        self.curv_win_width = curv_win_width
        self.zero_debias = zero_debias
        self.adaptive_clip = adaptive_clip
        self.clip_norm = clip_norm
        self.smooth_hyperparams = smooth_hyperparams
        self.sparsity_debias = sparsity_debias
        self.h_log_smooth = h_log_smooth
        self.tune_momentum = tune_momentum
        self.stat_protect_factor = stat_protect_factor
        self.catastrophic_move_threshold = catastrophic_move_threshold
        self.eps = eps

    # ------------------------------------------------------------------ state
    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _global_state(self) -> dict[str, Any]:
        """Float32 statistics (as in the authors' code) and flat buffers, on the params' device."""
        state = self.state[GLOBAL_STATE_KEY]
        if not state:
            params = self._params()
            device = params[0].device
            numel = sum(p.numel() for p in params)
            state["step"] = 0
            # Steps whose statistics were applied: the "t" of the spec. Skipped steps do not
            # count, so a run with a skipped step continues as if that step never happened.
            state["stat_steps"] = torch.zeros((), dtype=torch.int64, device=device)
            state["skipped_steps"] = torch.zeros((), dtype=torch.int64, device=device)
            state["grad_avg"] = torch.zeros(numel, dtype=torch.float32, device=device)
            state["momentum_buffer"] = torch.zeros(numel, dtype=torch.float32, device=device)
            state["curv_window"] = torch.zeros(
                self.curv_win_width, dtype=torch.float32, device=device
            )
            state["momentum_correction"] = torch.zeros((), dtype=torch.float32, device=device)
            for name in _SCALAR_STATS:
                state[name] = torch.zeros((), dtype=torch.float32, device=device)
            first = self.param_groups[0]
            state["smooth_lr"].fill_(first["lr"])
            state["smooth_momentum"].fill_(first["momentum"])
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        device = self._params()[0].device
        state = self.state[GLOBAL_STATE_KEY]
        for key, value in state.items():
            if isinstance(value, Tensor):
                state[key] = value.to(device)
        self._views = None

    def set_momentum_correction(self, correction: Tensor | float) -> None:
        """Additive correction to the tuned momentum (closed-loop YellowFin's feedback)."""
        self._global_state()["momentum_correction"].copy_(torch.as_tensor(correction))

    def _flat_views(self, state: dict[str, Any]) -> _FlatViews:
        """Per-parameter views of the flat buffers, rebuilt only when the buffers change."""
        views = getattr(self, "_views", None)
        buf = state["momentum_buffer"]
        if views is None or views.momentum_buffer is not buf:
            views = self._views = _FlatViews(self.param_groups, buf)
        return views

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch.optim signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = self._params()
        missing = [i for i, p in enumerate(params) if p.grad is None]
        if len(missing) == len(params):
            return loss
        state = self._global_state()
        views = self._flat_views(state)
        t = state["stat_steps"].clone()
        eps = self.eps
        debias = (1.0 - self.beta ** (t + 1).double()).float() if self.zero_debias else 1.0

        flat_grad = views.gather_grads(params)
        if missing:
            saved = self._save_slices(state, views, missing)

        # 1-2: manual clip, then stat-protection clip, folded into one scale.
        raw_norm_sq = torch.dot(flat_grad, flat_grad)
        scale = torch.ones_like(raw_norm_sq)
        if self.clip_norm is not None:
            scale = _clip_factor(torch.sqrt(raw_norm_sq), self.clip_norm)
        h_max_prev = state["h_max"]
        if self.adaptive_clip:
            protect = torch.sqrt(self.stat_protect_factor * h_max_prev) + eps
            protected = scale * _clip_factor(torch.sqrt(raw_norm_sq) * scale, protect)
            scale = torch.where(t > 1, protected, scale)
        grad_norm_sq = raw_norm_sq * scale**2
        finite = torch.isfinite(grad_norm_sq)
        # A non-finite gradient becomes zeros (0 * inf = nan, then nan -> 0).
        flat_grad.mul_(torch.where(finite, scale, 0.0).float()).nan_to_num_(0.0, 0.0, 0.0)

        # 3-6: statistics.
        new = self._updated_statistics(state, flat_grad, grad_norm_sq, finite, t, debias)
        # 7: tuned lr and momentum.
        group0 = self.param_groups[0]
        alpha, mu = self._tuned_lr_momentum(state, new, t)
        alpha = torch.where(t == 0, group0["lr"], alpha.float())
        mu = torch.where(t == 0, group0["momentum"], mu.float()) + state["momentum_correction"]
        for key, value in new.items():
            state[key] = torch.where(finite, value, state[key])
        # The update also needs finite hyperparameters (the cubic can overflow).
        apply = finite & torch.isfinite(alpha) & torch.isfinite(mu)
        state["skipped_steps"] += (~apply).long()
        state["stat_steps"] += finite.long()

        # 9: exploding-gradient clip, applied to the update only.
        update_scale = torch.ones_like(grad_norm_sq)
        if self.adaptive_clip:
            exploding = (t >= 1) & (grad_norm_sq >= h_max_prev)
            clip = _clip_factor(torch.sqrt(grad_norm_sq), torch.sqrt(h_max_prev) + eps)
            update_scale = torch.where(exploding, clip, update_scale)

        # 10: v = mu v + (g + wd p); p -= lr v.  A skipped step leaves v and p unchanged.
        flat_grad.mul_(torch.where(apply, update_scale, 0.0).float())
        # Per group: (parameters with a gradient, their views of the workspace).
        tensors = views.with_grads(params) if missing else views.group_tensors
        decaying = False
        for (_, group), (group_params, grad_views) in zip(views.groups, tensors, strict=True):
            if group["weight_decay"] != 0.0 and group_params:
                torch._foreach_add_(grad_views, group_params, alpha=group["weight_decay"])
                decaying = True
        if decaying:
            flat_grad.mul_(apply.float())
        buf = state["momentum_buffer"]
        buf.mul_(torch.where(apply, mu, 1.0).float()).add_(flat_grad)

        applied_lr = None
        for (index_range, group), (group_params, grad_views) in zip(
            views.groups, tensors, strict=True
        ):
            if not group_params:
                continue
            lr = alpha * group["lr_factor"]
            if self.adaptive_clip:
                too_big = lr * torch.sqrt(grad_norm_sq) >= self.catastrophic_move_threshold
                lr = torch.where(
                    too_big, self.catastrophic_move_threshold / torch.sqrt(grad_norm_sq + eps), lr
                )
            if applied_lr is None:
                applied_lr = lr
            # The gradient buffer is free now: reuse it for the step -lr * v.
            span = views.span(index_range)
            torch.mul(buf[span], -torch.where(apply, lr, 0.0).float(), out=flat_grad[span])
            torch._foreach_add_(group_params, grad_views)
        if missing:
            self._restore_slices(state, saved)
        state["lr"] = torch.where(apply, applied_lr, state["lr"])
        state["momentum"] = torch.where(apply, mu, state["momentum"])
        state["step"] += 1
        return loss

    def _updated_statistics(
        self,
        state: dict[str, Any],
        grad: Tensor,
        grad_norm_sq: Tensor,
        finite: Tensor,
        t: Tensor,
        debias: Tensor,
    ) -> dict[str, Tensor]:
        """Steps 3-6 of the spec: EMAs, curvature range, variance and distance."""
        beta, eps = self.beta, self.eps
        # The per-parameter EMA is updated in place; a zero weight on a skipped step keeps it.
        state["grad_avg"].lerp_(grad, torch.where(finite, 1.0 - beta, 0.0).float())
        window = state["curv_window"]
        slot = (t % self.curv_win_width).view(1)
        window.scatter_(0, slot, torch.where(finite, grad_norm_sq, window.gather(0, slot)))
        filled = torch.arange(self.curv_win_width, device=window.device) <= t
        curv_min = torch.where(filled, window, math.inf).min()
        curv_max = torch.where(filled, window, -math.inf).max()

        new: dict[str, Tensor] = {}
        new["grad_norm_sq"] = grad_norm_sq
        new["grad_norm_sq_avg"] = _ema(state["grad_norm_sq_avg"], grad_norm_sq, beta)
        new["grad_norm_avg"] = _ema(state["grad_norm_avg"], torch.sqrt(grad_norm_sq), beta)
        new["dist_avg"] = _ema(
            state["dist_avg"], new["grad_norm_avg"] / (new["grad_norm_sq_avg"] + eps), beta
        )
        if self.h_log_smooth:
            new["h_min_avg"] = _ema(state["h_min_avg"], torch.log(curv_min + eps), beta)
            new["h_max_avg"] = _ema(state["h_max_avg"], torch.log(curv_max + eps), beta)
            h_min = torch.exp(new["h_min_avg"] / debias)
            h_max = torch.exp(new["h_max_avg"] / debias)
        else:
            new["h_min_avg"] = _ema(state["h_min_avg"], curv_min, beta)
            new["h_max_avg"] = _ema(state["h_max_avg"], curv_max, beta)
            h_min = new["h_min_avg"] / debias
            h_max = new["h_max_avg"] / debias
        grad_avg_sq = torch.dot(state["grad_avg"], state["grad_avg"])
        grad_var = torch.clamp(new["grad_norm_sq_avg"] / debias - grad_avg_sq / debias**2, min=eps)
        dist = new["dist_avg"] / debias
        if self.sparsity_debias:
            density = torch.count_nonzero(grad).float() / grad.numel()
            new["sparsity_avg"] = _ema(state["sparsity_avg"], density, beta)
            sparsity = new["sparsity_avg"] / debias
            h_min, h_max, grad_var = h_min * sparsity, h_max * sparsity, grad_var * sparsity
            dist = dist / torch.sqrt(sparsity)
        new.update(h_min=h_min, h_max=h_max, grad_var=grad_var, dist_to_opt=dist)
        return new

    def _tuned_lr_momentum(
        self, state: dict[str, Any], new: dict[str, Tensor], t: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Step 7: robust-region momentum, its lr, slow start and optional smoothing."""
        eps = self.eps
        if self.tune_momentum:
            # In float64: in float32 the cubic loses all digits once p > ~1e9 and overflows
            # past ~1e12 (the authors computed it in Python floats).
            stats = (new[k].double() for k in ("dist_to_opt", "grad_var", "h_min", "h_max"))
            mu = robust_momentum(*stats, eps).float()
        else:
            mu = torch.full_like(new["h_min"], self.param_groups[0]["momentum"])
        alpha = (1.0 - torch.sqrt(mu)) ** 2 / (new["h_min"] + eps)
        alpha = alpha * torch.clamp((t + 1) / (10.0 * self.curv_win_width), max=1.0)
        if self.smooth_hyperparams:
            # Step 0 applies the initial values, so smoothing starts at step 1.
            tuning = t > 0
            new["smooth_lr"] = torch.where(
                tuning, _ema(state["smooth_lr"], alpha, self.beta), state["smooth_lr"]
            )
            new["smooth_momentum"] = torch.where(
                tuning, _ema(state["smooth_momentum"], mu, self.beta), state["smooth_momentum"]
            )
            return new["smooth_lr"], new["smooth_momentum"]
        return alpha, mu

    # ------------------------------------------------------------------ no-grad parameters
    @staticmethod
    def _save_slices(state: dict[str, Any], views: _FlatViews, indices: list[int]) -> list[tuple]:
        """Parameters without a gradient keep their EMA and momentum, as torch.optim.SGD does."""
        saved = []
        for i in indices:
            span = views.span(range(i, i + 1))
            saved.append(
                (span, state["grad_avg"][span].clone(), state["momentum_buffer"][span].clone())
            )
        return saved

    @staticmethod
    def _restore_slices(state: dict[str, Any], saved: list[tuple]) -> None:
        for span, grad_avg, buf in saved:
            state["grad_avg"][span] = grad_avg
            state["momentum_buffer"][span] = buf

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict[str, float]:
        """Python floats for the step just taken (this may sync; ``step()`` never does)."""
        state = self._global_state()
        out = {
            "lr": state["lr"],
            "momentum": state["momentum"],
            "h_max": state["h_max"],
            "h_min": state["h_min"],
            "grad_var": state["grad_var"],
            "dist_to_opt": state["dist_to_opt"],
            "grad_norm_sq": state["grad_norm_sq"],
        }
        values = torch.stack([v.double() for v in out.values()]).tolist()
        result = dict(zip(out, values, strict=True))
        result["step"] = state["step"]
        result["skipped_steps"] = int(state["skipped_steps"])
        return result


class _FlatViews:
    """The flat layout of all parameters: offsets, per-group ranges, a gradient workspace."""

    def __init__(self, param_groups: list[dict[str, Any]], momentum_buffer: Tensor) -> None:
        self.momentum_buffer = momentum_buffer
        params = [p for group in param_groups for p in group["params"]]
        self.offsets = [0]
        for p in params:
            self.offsets.append(self.offsets[-1] + p.numel())
        self.groups: list[tuple[range, dict[str, Any]]] = []
        for group in param_groups:
            start = len(self.groups) and self.groups[-1][0].stop
            self.groups.append((range(start, start + len(group["params"])), group))
        self.workspace = torch.empty_like(momentum_buffer)
        self.grad_views = [
            self.workspace[self.offsets[i] : self.offsets[i + 1]].view_as(p)
            for i, p in enumerate(params)
        ]
        self._all_float32 = all(p.dtype == torch.float32 for p in params)
        self.group_tensors = [
            ([params[i] for i in r], [self.grad_views[i] for i in r]) for r, _ in self.groups
        ]

    def with_grads(self, params: list[Tensor]) -> list[tuple[list[Tensor], list[Tensor]]]:
        """Like ``group_tensors``, leaving out parameters that have no gradient this step."""
        return [
            (
                [params[i] for i in r if params[i].grad is not None],
                [self.grad_views[i] for i in r if params[i].grad is not None],
            )
            for r, _ in self.groups
        ]

    def span(self, index_range: range) -> slice:
        return slice(self.offsets[index_range.start], self.offsets[index_range.stop])

    def gather_grads(self, params: list[Tensor]) -> Tensor:
        """Copy every gradient (zeros where there is none) into the float32 workspace."""
        grads = [
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params
        ]
        if self._all_float32:
            torch.cat(grads, out=self.workspace)
        else:
            torch._foreach_copy_(
                self.grad_views, [g.view_as(v) for g, v in zip(grads, self.grad_views, strict=True)]
            )
        return self.workspace


def _ema(avg: Tensor, value: Tensor, beta: float) -> Tensor:
    return beta * avg + (1.0 - beta) * value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"YellowFin: {message}")
