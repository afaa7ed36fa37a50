"""YellowFin: automatic tuning of one learning rate and one momentum for momentum SGD.

The optimizer (:class:`YellowFin`) and its eager backend. A step alternates three passes
over every parameter element, done by a backend (eager PyTorch here, compiled kernels on
flat buffers in :mod:`yfbench.optim.fused`), with the scalar phases of
:mod:`yfbench.optim.phases`. Every statistic stays on the parameters' device and
``step()`` never waits for the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.optim import Optimizer

from yfbench.optim.flat import FlatLayout
from yfbench.optim.fused import FusedBackend
from yfbench.optim.phases import Clip, Config, StepUpdate, clip_and_norm, statistics_and_tuning

GLOBAL_STATE_KEY = "yellowfin"
_SCALAR_STATE = (  # every 0-d tensor of the global state
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
    "momentum_correction",
    "stat_steps",  # steps whose statistics were applied: the spec's t
    "skipped_steps",
    "protect_clips",  # applied steps whose gradient step 2 (stat protection) clipped
    "exploding_clips",  # applied steps whose update step 9 (exploding gradient) clipped
)
_INT_STATE = ("stat_steps", "skipped_steps", "protect_clips", "exploding_clips")
# Counters that ``stats()`` reports as ints.
_COUNTERS = ("skipped_steps", "protect_clips", "exploding_clips")
_REPORTED = ("lr", "momentum", "h_max", "h_min", "grad_var", "dist_to_opt", "grad_norm_sq")


# --------------------------------------------------------------------------- backends
class _Backend(Protocol):
    """The per-element work of a step. After ``update_grad_avg`` the backend holds the
    clipped gradient for ``apply_update`` (materialised, or as g and its scale)."""

    layout: FlatLayout
    report_group: int

    def run(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def load_grads(self) -> bool: ...
    def grad_norm_sq(self) -> Tensor: ...
    def update_grad_avg(
        self, state: dict[str, Any], clip: Clip, count: bool
    ) -> tuple[Tensor, Tensor | None]: ...
    def group_values(
        self, groups: list[dict[str, Any]]
    ) -> tuple[tuple[Any, Any], tuple[Any, ...]]: ...
    def apply_update(
        self, state: dict[str, Any], groups: list[dict[str, Any]], update: StepUpdate
    ) -> None: ...
    def flat_params(self) -> Tensor: ...
    def flat_grads(self) -> Tensor: ...


class _EagerBackend:
    """Eager PyTorch: gradients gathered into a flat float32 workspace, which then holds the
    clipped gradient and finally the step; parameters updated with ``torch._foreach_*``.

    A parameter without a gradient keeps its EMA and momentum slices, as torch.optim.SGD
    skips it.
    """

    def __init__(self, layout: FlatLayout) -> None:
        self.layout = layout
        self.workspace = torch.empty(layout.numel, dtype=torch.float32, device=layout.device)
        self.grad_views = layout.views(self.workspace)
        # Per group: (parameters, their workspace views).
        self._group_tensors = [
            ([layout.params[i] for i in r], [self.grad_views[i] for i in r])
            for r in layout.group_params
        ]
        self.report_group = 0
        self._missing: list[int] = []
        self._saved: list[tuple[slice, Tensor, Tensor]] = []

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def load_grads(self) -> bool:
        """Gather the gradients (zeros where there is none); False if there is none at all."""
        params = self.layout.params
        self._missing = [i for i, p in enumerate(params) if p.grad is None]
        if len(self._missing) == len(params):
            return False
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        self.layout.gather(grads, self.workspace, self.grad_views)
        self.report_group = next(
            i
            for i, r in enumerate(self.layout.group_params)
            if any(params[j].grad is not None for j in r)
        )
        return True

    def grad_norm_sq(self) -> Tensor:
        return torch.dot(self.workspace, self.workspace)

    def update_grad_avg(
        self, state: dict[str, Any], clip: Clip, count: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Clip the workspace in place (a non-finite gradient becomes zeros: 0 * inf = nan,
        then nan -> 0) and fold it into the EMA; return ||ḡ||^2 and, if ``count``, the
        fraction of nonzero clipped gradient entries."""
        self._saved = [self._save(state, i) for i in self._missing]
        grad, grad_avg = self.workspace, state["grad_avg"]
        grad.mul_(torch.where(clip.finite, clip.scale, 0.0).float()).nan_to_num_(0.0, 0.0, 0.0)
        grad_avg.lerp_(grad, clip.ema_weight)
        density = torch.count_nonzero(grad).float() / grad.numel() if count else None
        return torch.dot(grad_avg, grad_avg), density

    def group_values(
        self, groups: list[dict[str, Any]]
    ) -> tuple[tuple[float, float], tuple[float, ...]]:
        return (groups[0]["lr"], groups[0]["momentum"]), tuple(g["lr_factor"] for g in groups)

    def apply_update(
        self, state: dict[str, Any], groups: list[dict[str, Any]], update: StepUpdate
    ) -> None:
        """v = mu v + (g + wd p); p -= lr v. A skipped step leaves v and p unchanged."""
        grad = self.workspace
        grad.mul_(update.grad_coef)
        tensors = self._group_tensors
        if self._missing:
            tensors = [self._with_grads(params, views) for params, views in tensors]
        decaying = False
        for group, (group_params, grad_views) in zip(groups, tensors, strict=True):
            if group["weight_decay"] != 0.0 and group_params:
                torch._foreach_add_(grad_views, group_params, alpha=group["weight_decay"])
                decaying = True
        if decaying:
            grad.mul_(update.apply.float())
        buf = state["momentum_buffer"]
        buf.mul_(update.momentum).add_(grad)
        for span, neg_lr, (group_params, grad_views) in zip(
            self.layout.group_spans, update.neg_lrs, tensors, strict=True
        ):
            if group_params:
                # The workspace is free now: reuse it for the step -lr * v.
                torch.mul(buf[span], neg_lr, out=grad[span])
                torch._foreach_add_(group_params, grad_views)
        for span, grad_avg, momentum in self._saved:
            state["grad_avg"][span] = grad_avg
            state["momentum_buffer"][span] = momentum

    def flat_params(self) -> Tensor:
        out = torch.empty(self.layout.numel, dtype=torch.float32, device=self.layout.device)
        params = [p.detach() for p in self.layout.params]
        return self.layout.gather(params, out, self.layout.views(out))

    def flat_grads(self) -> Tensor:
        """The gradients, gathered into the workspace (free between steps)."""
        self.load_grads()
        return self.workspace

    @staticmethod
    def _with_grads(params: list[Tensor], views: list[Tensor]) -> tuple[list, list]:
        """The (parameters, views) pairs whose parameter has a gradient this step."""
        kept = [(p, v) for p, v in zip(params, views, strict=True) if p.grad is not None]
        return [p for p, _ in kept], [v for _, v in kept]

    def _save(self, state: dict[str, Any], index: int) -> tuple[slice, Tensor, Tensor]:
        span = self.layout.span(range(index, index + 1))
        return span, state["grad_avg"][span].clone(), state["momentum_buffer"][span].clone()


# --------------------------------------------------------------------------- optimizer
class YellowFin(Optimizer):
    r"""Momentum SGD whose learning rate and momentum are tuned every step: YellowFin.

    Zhang & Mitliagkas, "YellowFin and the Art of Momentum Tuning", arXiv:1706.03471. In
    its default configuration this follows the authors' final PyTorch code step for step.

    Algorithm (t counts applied steps from 0; β = ``beta``, w = ``curv_win_width``,
    ε = ``eps``; clip(g, m) scales every gradient by min(1, m / (‖g‖ + 1e-6)); every norm
    and statistic is global over all parameters of all param groups):

    1. If ``clip_norm``: g ← clip(g, clip_norm).
    2. If ``adaptive_clip`` and t > 1: g ← clip(g, √(100 h_max) + ε), h_max from step t-1.
    3. s = ‖g‖².
    4. EMAs with weight β, zero-debiased by b = 1 − β^(t+1): S of s, ḡ of g (per element),
       N of √s, R of N / (S + ε).
    5. Curvature range over the last w values of s:
       h_min = exp(EMA(log(min + ε)) / b), h_max = exp(EMA(log(max + ε)) / b).
    6. Gradient variance C = max(S/b − ‖ḡ‖²/b², ε); distance to the optimum D = R/b.
    7. μ = max(x², ((√d − 1)/(√d + 1))²) with d = h_max/h_min and x the closed-form root
       of the cubic that minimises x²D² + (1 − x)⁴C/h_min²; α = (1 − √μ)²/h_min, times
       min(1, (t+1)/(10w)) (slow start). Step 0 applies ``lr`` and ``momentum`` instead.
    8. Per param group, lr = α · ``lr_factor``; if ``adaptive_clip`` and lr·√s ≥ 100,
       lr = 100/√(s + ε).
    9. If ``adaptive_clip``, t ≥ 1 and s ≥ h_max of step t-1: g ← clip(g, √h_max + ε) for
       the update only.
    10. The update of ``torch.optim.SGD``: v ← μ v + (g + wd·p) (v = g + wd·p at first),
        p ← p − lr·v, with wd = ``weight_decay`` of the group.

    A step with a non-finite s, α or μ is skipped: parameters, momentum and statistics
    stay as they were and ``stats()["skipped_steps"]`` counts it. ``protect_clips`` and
    ``exploding_clips`` count the applied steps whose gradient step 2, respectively step 9,
    scaled down (the adaptive clip's events).

    Arguments: ``lr``, ``momentum``, ``weight_decay`` and ``lr_factor`` may differ per
    param group (``lr`` and ``momentum`` of the first group are step 0's values; afterwards
    both are tuned). The others are global and must be equal in every group: ``beta``,
    ``curv_win_width``, ``zero_debias``, ``adaptive_clip``, ``clip_norm``, ``eps``,
    ``stat_protect_factor`` (the 100 of step 2), ``catastrophic_move_threshold`` (the 100
    of step 8), and the variants ``smooth_hyperparams`` (EMA-smooth α and μ as in the
    paper's pseudocode), ``sparsity_debias`` (scale h_min, h_max, C by the EMA of the
    gradient density, D by its inverse square root), ``h_log_smooth=False`` (smooth the
    curvature range linearly) and ``tune_momentum=False`` (keep ``momentum``, tune only
    α), ``rescaled_sgd=True`` (apply μ = 0 and lr = α/(1 − μ) of the tuned pair at every
    step: the "YellowFin rescaling" ablation, plain SGD with YellowFin's effective step,
    driven by its own statistics). All of them are saved by ``state_dict()`` and restored
    by ``load_state_dict()``.

    ``fused=True`` runs each step as three compiled passes over flat buffers
    (:mod:`yfbench.optim.fused`): 36 bytes of memory traffic per parameter instead of
    about 92. It needs float32 parameters that require grad, all on one device, and moves
    their storage into one flat buffer (their ``.grad`` become views of another), so build
    it after the model is in place. Differences from the eager step: a parameter whose
    ``.grad`` is None counts as having a zero gradient (eager skips it, as
    torch.optim.SGD does), and ``zero_grad()`` zeroes in place. On one CPU thread it
    takes under half the eager step's time on a CIFAR ResNet-110 or the PTB LSTM; the
    price is a compilation in the first step (about 20 s with an empty inductor cache, a
    few seconds with a warm one; nothing recompiles afterwards), and backward then
    accumulates into the zeroed buffer instead of handing over fresh gradients. Worth it
    for long runs of large models; the default stays eager, the readable reference.
    State dicts of both modes are interchangeable.

    Hooks for training loops: ``schedule_key`` names the param-group key an lr schedule
    should scale (``lr_factor``); :meth:`stat_tensors` returns the step's statistics as
    device tensors without a host sync, :meth:`stats` as Python floats;
    :meth:`set_momentum_correction` adds a correction to the tuned momentum (the seam for
    closed-loop feedback in asynchronous training).
    """

    schedule_key = "lr_factor"

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
        rescaled_sgd: bool = False,
        stat_protect_factor: float = 100.0,
        catastrophic_move_threshold: float = 100.0,
        eps: float = 1e-6,
        *,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            lr_factor=lr_factor,
            beta=beta,
            curv_win_width=curv_win_width,
            zero_debias=zero_debias,
            adaptive_clip=adaptive_clip,
            clip_norm=clip_norm,
            smooth_hyperparams=smooth_hyperparams,
            sparsity_debias=sparsity_debias,
            h_log_smooth=h_log_smooth,
            tune_momentum=tune_momentum,
            rescaled_sgd=rescaled_sgd,
            stat_protect_factor=stat_protect_factor,
            catastrophic_move_threshold=catastrophic_move_threshold,
            eps=eps,
        )
        # A construction-time choice (it moves the parameters' storage), so it is not a
        # param-group value and state dicts do not carry it.
        self.fused = bool(fused)
        self._backend: _Backend | None = None
        super().__init__(params, defaults)
        if self.fused:
            self._backend = FusedBackend(FlatLayout(self.param_groups))

    # ------------------------------------------------------------------ param groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self._backend is not None or GLOBAL_STATE_KEY in self.state:
            raise ValueError(
                "YellowFin: add_param_group after the first step (with fused=True, after "
                "construction) is not supported: statistics and buffers span all parameters"
            )
        for key, value in self.defaults.items():
            param_group.setdefault(key, value)
        _validate(param_group)
        if self.param_groups:
            _check_global(self.param_groups[0], param_group)
        super().add_param_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # Checkpoints from before the global hyperparameters were group values lack them:
        # those runs used the constructor's values, which are the defaults here.
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        # Optimizer.__getstate__ keeps only defaults, state and param groups: a pickled or
        # deep-copied YellowFin comes back eager.
        self.__dict__.setdefault("fused", False)
        self.__dict__.setdefault("_backend", None)

    def config(self) -> Config:
        """The global hyperparameters, as the scalar phases take them."""
        group = self.param_groups[0]
        return Config(**{key: group[key] for key in Config._fields})

    # ------------------------------------------------------------------ state
    def _get_backend(self) -> _Backend:
        if self._backend is None:
            self._backend = _EagerBackend(FlatLayout(self.param_groups))
        return self._backend

    def _global_state(self) -> dict[str, Any]:
        """Float32 statistics (as in the authors' code) and flat buffers, on the params' device."""
        state = self.state[GLOBAL_STATE_KEY]
        if not state:
            params = [p for group in self.param_groups for p in group["params"]]
            device, numel = params[0].device, sum(p.numel() for p in params)
            first = self.param_groups[0]
            state["step"] = 0
            state["grad_avg"] = torch.zeros(numel, dtype=torch.float32, device=device)
            state["momentum_buffer"] = torch.zeros(numel, dtype=torch.float32, device=device)
            state["curv_window"] = torch.zeros(
                first["curv_win_width"], dtype=torch.float32, device=device
            )
            for name in _SCALAR_STATE:
                dtype = torch.int64 if name in _INT_STATE else torch.float32
                state[name] = torch.zeros((), dtype=dtype, device=device)
            state["smooth_lr"].fill_(first["lr"])
            state["smooth_momentum"].fill_(first["momentum"])
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups[1:]:
            _check_global(self.param_groups[0], group)
        device = self.param_groups[0]["params"][0].device
        state = self.state[GLOBAL_STATE_KEY]
        for key, value in state.items():
            if isinstance(value, Tensor):
                state[key] = value.to(device)
        if state:  # checkpoints from before the clip counters existed start them at 0
            for name in _INT_STATE:
                state.setdefault(name, torch.zeros((), dtype=torch.int64, device=device))

    def set_momentum_correction(self, correction: Tensor | float) -> None:
        """Additive correction to the tuned momentum (closed-loop YellowFin's feedback)."""
        self._global_state()["momentum_correction"].copy_(torch.as_tensor(correction))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch.optim's, except that fused mode always zeroes its flat gradient buffer
        in place (the ``.grad`` stay views of it)."""
        if isinstance(self._backend, FusedBackend):
            self._backend.zero_grad()
        else:
            super().zero_grad(set_to_none)

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One YellowFin step: three passes over the parameters, scalar phases between."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        backend = self._get_backend()
        if not backend.load_grads():
            return loss  # no parameter has a gradient
        state, cfg = self._global_state(), self.config()
        scalars = {key: state[key] for key in _SCALAR_STATE}
        raw_norm_sq = backend.grad_norm_sq()  # pass 1
        clip = backend.run(  # steps 1-3
            clip_and_norm, cfg, raw_norm_sq, scalars["h_max"], scalars["stat_steps"]
        )
        # pass 2 (step 4's ḡ)
        grad_avg_sq, density = backend.update_grad_avg(state, clip, cfg.sparsity_debias)
        stored, update = backend.run(  # steps 4-9
            statistics_and_tuning,
            cfg,
            scalars,
            state["curv_window"],
            clip,
            grad_avg_sq,
            density,
            *backend.group_values(self.param_groups),
            backend.report_group,
        )
        backend.apply_update(state, self.param_groups, update)  # pass 3 (step 10)
        state.update(stored)
        state["step"] += 1
        return loss

    # ------------------------------------------------------------------ reporting
    def _stat_sources(self, state: dict[str, Any]) -> dict[str, Tensor]:
        """The state tensors that ``stat_tensors()`` reports, by name."""
        return {key: state[key] for key in (*_REPORTED, *_COUNTERS)}

    def stat_tensors(self) -> dict[str, Tensor]:
        """The statistics of the step just taken as 0-d float32 tensors on the parameters'
        device, without a host sync; a snapshot that later steps do not change."""
        sources = self._stat_sources(self._global_state())
        snapshot = torch.stack([value.float() for value in sources.values()])
        return dict(zip(sources, snapshot.unbind(), strict=True))

    def stats(self) -> dict[str, float | int]:
        """``stat_tensors()`` as Python floats (one host transfer), plus the step count;
        ``step`` and the counters (skipped steps, clip events) are ints."""
        tensors = self.stat_tensors()
        values = torch.stack(list(tensors.values())).tolist()
        result: dict[str, float | int] = dict(zip(tensors, values, strict=True))
        for counter in _COUNTERS:
            result[counter] = int(result[counter])
        result["step"] = self._global_state()["step"]
        return result


# Allowed values of every hyperparameter: (test, what the error message says).
_VALID: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (lambda v: v >= 0.0, ">= 0"),
    "momentum": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0.0, ">= 0"),
    "lr_factor": (lambda v: v >= 0.0, ">= 0"),
    "beta": (lambda v: 0.0 < v < 1.0, "in (0, 1)"),
    "curv_win_width": (lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
    "clip_norm": (lambda v: v is None or v > 0.0, "None or > 0"),
    "eps": (lambda v: v > 0.0, "> 0"),
}


def _validate(group: dict[str, Any]) -> None:
    """Reject out-of-range hyperparameters of a param group."""
    for key, (valid, expected) in _VALID.items():
        _require(valid(group[key]), f"{key} must be {expected}, got {group[key]!r}")


def _check_global(first: dict[str, Any], group: dict[str, Any]) -> None:
    """The statistics are global, so their hyperparameters must agree across groups."""
    differing = [key for key in Config._fields if group[key] != first[key]]
    _require(
        not differing,
        f"{', '.join(differing)} must be equal in every param group (the statistics are "
        "global); set them once in the constructor",
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"YellowFin: {message}")
