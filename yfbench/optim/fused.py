"""YellowFin's fused step: parameters and gradients in flat buffers, three compiled passes.

The eager step gathers every gradient into a workspace and then makes a dozen passes over
model-sized buffers, one per PyTorch operation. Here the parameters and their ``.grad``
are views of two flat float32 buffers, so nothing is gathered or scattered, and the
per-element work is three passes:

1. s = ||g||^2 (``torch.dot``, exactly as the eager step computes it);
2. the gradient EMA update fused with its squared-norm reduction (one generated kernel);
3. the momentum and parameter update, with weight decay, the non-finite skip and the
   exploding-gradient scale (one generated kernel).

That is 36 bytes of memory traffic per parameter instead of about 92 (Adam: 28). The
scalar phases between the passes are two more compiled graphs of 0-d tensors. Every value
that changes from step to step (lr, momentum, scales, the schedule's ``lr_factor``,
``weight_decay``) enters the graphs as a 0-d tensor, so after the first step nothing
recompiles. ``torch.compile`` runs with ``dynamic=False``: each parameter layout gets its
own graphs, and past dynamo's recompile limit (8 layouts per process) a function runs
uncompiled.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from yfbench.optim.flat import FlatLayout
from yfbench.optim.phases import Clip, StepUpdate


# --------------------------------------------------------------------------- compilation
class _Compiled:
    """``fn`` through ``torch.compile`` (static shapes, one graph), or ``fn`` itself once
    compiling has failed anywhere in this process (warned once)."""

    failed = False

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.graph: Callable[..., Any] | None = None
        try:
            self.graph = torch.compile(fn, dynamic=False, fullgraph=True)
        except RuntimeError as error:  # e.g. a Python version dynamo does not support
            _Compiled._fail(error)

    def __call__(self, *args: Any) -> Any:
        if self.graph is not None and not _Compiled.failed:
            try:
                return self.graph(*args)
            except torch._dynamo.exc.RecompileError:
                raise  # asked for by config.error_on_recompile: a finding, not a failure
            except torch._dynamo.exc.TorchDynamoException as error:  # incl. InductorError
                _Compiled._fail(error)
        return self.fn(*args)

    @staticmethod
    def _fail(error: Exception) -> None:
        if not _Compiled.failed:
            _Compiled.failed = True
            first_line = str(error).splitlines()[0] if str(error) else ""
            warnings.warn(
                f"YellowFin(fused=True): torch.compile failed ({type(error).__name__}: "
                f"{first_line}); the fused step runs its passes uncompiled (correct, but "
                "slower than fused=False)",
                RuntimeWarning,
                stacklevel=4,
            )


_COMPILED: dict[Callable[..., Any], _Compiled] = {}


def _compiled(fn: Callable[..., Any]) -> _Compiled:
    """The process-wide compiled version of ``fn`` (dynamo caches per code object anyway)."""
    if fn not in _COMPILED:
        _COMPILED[fn] = _Compiled(fn)
    return _COMPILED[fn]


# --------------------------------------------------------------------------- passes
def _ema_pass(
    grad: Tensor, grad_avg: Tensor, clip: Clip, count: bool
) -> tuple[Tensor, Tensor | None]:
    """Pass 2: ḡ <- lerp(ḡ, clip(g), weight) in place; returns ||ḡ||^2 and, if ``count``,
    the fraction of nonzero clipped gradient entries (for sparsity debiasing).

    A non-finite step has weight 0 and a zero gradient: ḡ keeps its value exactly. (The
    weight comes in as a tensor: computed in here, it stops inductor from fusing the
    update with the reduction, which then reads everything twice.)
    """
    clipped = torch.where(clip.finite, grad * clip.scale, 0.0)
    grad_avg.lerp_(clipped, clip.ema_weight)
    density = torch.count_nonzero(clipped).float() / grad.numel() if count else None
    return torch.sum(grad_avg * grad_avg), density


def _update_pass(
    params: list[Tensor],
    grads: list[Tensor],
    momenta: list[Tensor],
    scale: Tensor,
    finite: Tensor,
    update: StepUpdate,
    weight_decays: tuple[Tensor, ...],
    decays: tuple[bool, ...],
) -> None:
    """Pass 3, per param group: d = clip(g)·s_9 (+ wd·p); v <- mu v + d; p <- p - lr v.

    The clipped gradient is recomputed from g rather than stored by pass 2: one model-sized
    write and read fewer. ``decays`` (wd != 0 per group) is static: a group without decay
    never reads p for it, like the eager step.
    """
    keep = update.apply.float()
    for p, g, v, neg_lr, wd, decay in zip(
        params, grads, momenta, update.neg_lrs, weight_decays, decays, strict=True
    ):
        d = torch.where(finite, g * scale, 0.0) * update.grad_coef
        if decay:
            d = (d + wd * p) * keep
        v.mul_(update.momentum).add_(d)
        p.add_(v * neg_lr)


# --------------------------------------------------------------------------- backend
_MOVED = (
    "YellowFin(fused=True): parameter {index} no longer lives in the optimizer's flat buffer "
    "(something re-pointed it after the optimizer was built, e.g. model.to(), "
    "module._apply or nn.LSTM.flatten_parameters()); build the optimizer last"
)


class FusedBackend:
    """Flat float32 parameter and gradient buffers that the parameters and their ``.grad``
    view, and the compiled passes over them.

    At construction every parameter's storage is moved into the flat parameter buffer
    (values and strides kept) and a view of the flat gradient buffer becomes its ``.grad``;
    backward then accumulates into it in place. A ``.grad`` found replaced at step time
    (set to None, assigned, swapped by a staleness simulator) is copied into a fresh flat
    buffer, since whoever took the old view may still hold it; None counts as a zero
    gradient. A parameter re-pointed elsewhere is an error.
    """

    def __init__(self, layout: FlatLayout) -> None:
        for index, p in enumerate(layout.params):
            if p.dtype != torch.float32:
                raise ValueError(
                    f"YellowFin(fused=True) needs float32 parameters; parameter {index} is "
                    f"{p.dtype} (use fused=False, or keep float32 master weights)"
                )
            if p.device != layout.device:
                raise ValueError("YellowFin(fused=True) needs all parameters on one device")
            if not p.requires_grad:
                raise ValueError(
                    f"YellowFin(fused=True): parameter {index} does not require grad; leave "
                    "frozen parameters out of the optimizer (fused treats a missing gradient "
                    "as zero, so weight decay and momentum would still move them)"
                )
        self.layout = layout
        self.flat_param = torch.empty(layout.numel, dtype=torch.float32, device=layout.device)
        views = layout.views(self.flat_param)
        torch._foreach_copy_(views, [p.detach() for p in layout.params])
        for p, view in zip(layout.params, views, strict=True):
            p.data = view
        self._param_ptrs = [p.data_ptr() for p in layout.params]
        self._param_segments = [self.flat_param[span] for span in layout.group_spans]
        self._adopt_grads()
        self._group_scalars: dict[tuple[int, str], tuple[float, Tensor]] = {}
        # The group whose lr stats() reports: the first one with parameters.
        self.report_group = next(i for i, r in enumerate(layout.group_params) if len(r))

    # ------------------------------------------------------------------ gradients
    def _adopt_grads(self) -> None:
        """Attach views of a fresh flat gradient buffer, holding the current ``.grad``s."""
        params = self.layout.params
        present = [i for i, p in enumerate(params) if p.grad is not None]
        make = torch.empty if len(present) == len(params) else torch.zeros
        self.flat_grad = make(self.layout.numel, dtype=torch.float32, device=self.layout.device)
        self._grad_views = self.layout.views(self.flat_grad)
        if present:
            torch._foreach_copy_(
                [self._grad_views[i] for i in present], [params[i].grad for i in present]
            )
        for p, view in zip(params, self._grad_views, strict=True):
            p.grad = view
        self._grad_segments = [self.flat_grad[span] for span in self.layout.group_spans]

    def _grads_attached(self) -> bool:
        """Whether every ``.grad`` is still our view; raises if a parameter was re-pointed.

        Runs every step over every parameter, hence the C-level ``map`` loops."""
        params = self.layout.params
        ptrs = list(map(Tensor.data_ptr, params))
        if ptrs != self._param_ptrs:
            moved = next(
                i for i, (a, b) in enumerate(zip(ptrs, self._param_ptrs, strict=True)) if a != b
            )
            raise RuntimeError(_MOVED.format(index=moved))
        return all(map(operator.is_, map(operator.attrgetter("grad"), params), self._grad_views))

    def load_grads(self) -> bool:
        """Make the flat gradient buffer hold every ``.grad`` (no host sync)."""
        if not self._grads_attached():
            self._adopt_grads()
        return True

    def zero_grad(self) -> None:
        """Zero the gradients in place, keeping the views (``set_to_none`` has no meaning here)."""
        if self._grads_attached():
            self.flat_grad.zero_()
        else:
            for p in self.layout.params:
                p.grad = None
            self._adopt_grads()

    def flat_params(self) -> Tensor:
        """The live flat parameter buffer (read-only for the caller)."""
        return self.flat_param

    def flat_grads(self) -> Tensor:
        """A copy of the flat gradient buffer that the caller may modify."""
        return self.flat_grad.clone()

    # ------------------------------------------------------------------ hyperparameters
    def _group_scalar(self, index: int, key: str, value: float) -> Tensor:
        """``value`` as a cached 0-d device tensor, refilled (never recreated) when it
        changes, so a schedule changes tensor contents, not the compiled graphs' guards."""
        cached = self._group_scalars.get((index, key))
        if cached is None or cached[0] != value:
            tensor = cached[1] if cached else torch.empty((), device=self.layout.device)
            tensor.fill_(value)
            self._group_scalars[(index, key)] = cached = (value, tensor)
        return cached[1]

    def group_values(
        self, groups: list[dict[str, Any]]
    ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, ...]]:
        """Group 0's initial (lr, momentum) and each group's lr_factor, as 0-d tensors."""
        initial = (
            self._group_scalar(0, "lr", groups[0]["lr"]),
            self._group_scalar(0, "momentum", groups[0]["momentum"]),
        )
        factors = tuple(
            self._group_scalar(i, "lr_factor", g["lr_factor"]) for i, g in enumerate(groups)
        )
        return initial, factors

    # ------------------------------------------------------------------ passes
    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a scalar phase group as one compiled graph."""
        return _compiled(fn)(*args)

    def grad_norm_sq(self) -> Tensor:
        """Pass 1."""
        return torch.dot(self.flat_grad, self.flat_grad)

    def update_grad_avg(
        self, state: dict[str, Any], clip: Clip, count: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Pass 2; remembers ``clip``: pass 3 recomputes the clipped gradient."""
        self._clip = clip
        return _compiled(_ema_pass)(self.flat_grad, state["grad_avg"], clip, count)

    def apply_update(
        self, state: dict[str, Any], groups: list[dict[str, Any]], update: StepUpdate
    ) -> None:
        """Pass 3."""
        buf = state["momentum_buffer"]
        weight_decays = tuple(
            self._group_scalar(i, "weight_decay", g["weight_decay"]) for i, g in enumerate(groups)
        )
        _compiled(_update_pass)(
            self._param_segments,
            self._grad_segments,
            [buf[span] for span in self.layout.group_spans],
            self._clip.scale,
            self._clip.finite,
            update,
            weight_decays,
            tuple(g["weight_decay"] != 0.0 for g in groups),
        )
