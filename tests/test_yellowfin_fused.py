"""YellowFin(fused=True) against the eager step, and the contract of its flat buffers.

Parity runs replay one gradient sequence into both optimizers. Left to compute their own
gradients, two runs whose parameters differ in the last bit (an FMA here, a reduction
order there) drift apart through the model's dynamics, which would test the model's
chaos rather than the optimizer. Tolerances are 1e-6 relative, except where the spec's
own formulas cancel or amplify. C = S/b - ||ḡ||²/b² carries an ulp or two of S/b (the
two modes sum ||ḡ||² in different orders), so it is compared at that scale, and mu,
computed from C, gets its tolerance multiplied by the same condition number (S/b)/C;
mu near 0 comes out of the cubic's cancellation (1e-7 absolute, as in
tests/test_yellowfin.py); lr = (1 - sqrt(mu))^2 / h_min amplifies mu's relative error
by sqrt(mu) / (1 - sqrt(mu)).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor, nn

import yfbench.optim.fused as fused_module
from tests.trajectories import load_scenario, trajectory_cases
from yfbench.engine.staleness import StaleGradients
from yfbench.optim import YellowFin

RTOL = 1e-6
REPORTED = ("lr", "momentum", "h_max", "h_min", "grad_var", "dist_to_opt", "grad_norm_sq")


# A compile failure falls back to eager passes with a RuntimeWarning: here it must fail.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@pytest.fixture(autouse=True, scope="module")
def _fresh_dynamo() -> Iterator[None]:
    """Compiled graphs of earlier tests must not count towards dynamo's recompile limit."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _flat(params: list[Tensor]) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def assert_parity(what: str, eager: YellowFin, fused_opt: YellowFin) -> None:
    """Statistics and parameters of the two optimizers agree (see the module docstring)."""
    a, b = eager.stats(), fused_opt.stats()
    counters = ("step", "skipped_steps", "protect_clips", "exploding_clips")
    assert [a[k] for k in counters] == [b[k] for k in counters], what
    state, beta = eager.state["yellowfin"], eager.config().beta
    steps = int(state["stat_steps"])
    # C = S/b - ||ḡ||²/b² is accurate to a few ulps of S/b; lr and mu inherit its error.
    variance_scale = float(state["grad_norm_sq_avg"]) / (1.0 - beta**steps if steps else 1.0)
    cancellation = max(1.0, variance_scale / a["grad_var"])
    # lr = (1 - sqrt(mu))^2 / h_min multiplies mu's relative error by sqrt(mu) / (1 - sqrt(mu)).
    lr_conditioning = 1.0 / (1.0 - math.sqrt(min(a["momentum"], 1.0 - 1e-6)))
    tols = {
        "grad_var": RTOL * max(abs(a["grad_var"]), variance_scale),
        "momentum": RTOL * cancellation * abs(a["momentum"]) + 1e-7,
        "lr": RTOL * cancellation * lr_conditioning * abs(a["lr"]),
    }
    for key in REPORTED:
        tol = tols.get(key, RTOL * abs(a[key]))
        assert abs(a[key] - b[key]) <= tol, f"{what} {key}: eager {a[key]!r} fused {b[key]!r}"
    pa, pb = (_flat([p for g in o.param_groups for p in g["params"]]) for o in (eager, fused_opt))
    error = (pa - pb).abs().max().item()
    assert error <= RTOL * pa.abs().max().item(), f"{what} params: max abs error {error:.3g}"


def _replay(eager: YellowFin, fused_opt: YellowFin, grads: list[Tensor]) -> None:
    """One step of each with the same gradients (copied into the fused ``.grad`` views)."""
    eager_params = [p for g in eager.param_groups for p in g["params"]]
    fused_params = [p for g in fused_opt.param_groups for p in g["params"]]
    for p, q, grad in zip(eager_params, fused_params, grads, strict=True):
        p.grad = grad.clone()
        q.grad.copy_(grad)
    eager.step()
    fused_opt.step()


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", trajectory_cases())
def test_fused_matches_eager_on_authors_trajectories(name: str) -> None:
    scenario = load_scenario(name)
    eager, fused_opt = (
        YellowFin(scenario.initial_params(), fused=use_fused, **scenario.optimizer_kwargs)
        for use_fused in (False, True)
    )
    for t in range(len(scenario.steps)):
        x = _flat(eager.param_groups[0]["params"])
        _replay(eager, fused_opt, scenario.split(scenario.gradient(t, x)))
        assert_parity(f"{name} step {t}", eager, fused_opt)


class _TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 12)
        self.lstm = nn.LSTM(12, 16, 2, batch_first=True)
        self.decoder = nn.Linear(16, 50)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.decoder(self.lstm(self.embedding(tokens))[0])


def _tiny_cnn() -> tuple[nn.Module, Callable[[nn.Module], Tensor]]:
    """Conv weights in channels_last, as the trainer's ``channels_last`` option makes them."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).to(memory_format=torch.channels_last)
    x = torch.randn(16, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (16,))
    return model, lambda m: nn.functional.cross_entropy(m(x), y)


def _tiny_lstm() -> tuple[nn.Module, Callable[[nn.Module], Tensor]]:
    tokens, targets = torch.randint(0, 50, (4, 10)), torch.randint(0, 50, (4, 10))
    return _TinyLM(), lambda m: nn.functional.cross_entropy(
        m(tokens).flatten(0, 1), targets.flatten()
    )


def _two_groups(model: nn.Module) -> list[dict]:
    """Matrices with weight decay, vectors with a smaller lr_factor."""
    params = list(model.parameters())
    return [
        dict(params=[p for p in params if p.dim() > 1], weight_decay=1e-3),
        dict(params=[p for p in params if p.dim() <= 1], lr_factor=0.5),
    ]


@pytest.mark.parametrize("make", [_tiny_cnn, _tiny_lstm], ids=["cnn", "lstm"])
def test_fused_matches_eager_on_small_models(make: Callable) -> None:
    """30 steps of real gradients, a NaN gradient at step 12, a schedule change of
    lr_factor and weight_decay; after warm-up nothing recompiles."""
    torch.manual_seed(0)
    model, loss_fn = make()
    fused_model = make()[0]
    fused_model.load_state_dict(model.state_dict())
    eager = YellowFin(_two_groups(model), lr=0.05, momentum=0.1)
    fused_opt = YellowFin(_two_groups(fused_model), lr=0.05, momentum=0.1, fused=True)
    for t in range(30):
        model.zero_grad(set_to_none=True)
        loss_fn(model).backward()
        grads = [p.grad for group in eager.param_groups for p in group["params"]]
        if t == 12:
            grads[-1][0] = math.nan
        if t in (15, 20):  # an lr schedule, then a weight-decay change
            for opt in (eager, fused_opt):
                opt.param_groups[0][opt.schedule_key] *= 0.5
                opt.param_groups[0]["weight_decay"] *= 2.0 if t == 20 else 1.0
        with torch._dynamo.config.patch(error_on_recompile=t >= 3):
            _replay(eager, fused_opt, grads)
        assert_parity(f"step {t}", eager, fused_opt)
    assert fused_opt.stats()["skipped_steps"] == 1


def test_fused_state_dict_is_interchangeable_with_eager() -> None:
    """A checkpoint of either mode resumes in the other, in parity with the original."""
    shapes = [(8,), (3, 4)]
    gen = torch.Generator().manual_seed(0)
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(30)]

    def make(use_fused: bool, like: YellowFin | None = None) -> YellowFin:
        params = [nn.Parameter(torch.full(s, 2.0)) for s in shapes]
        opt = YellowFin(params, lr=0.1, weight_decay=1e-3, fused=use_fused)
        if like is not None:
            buffer = io.BytesIO()
            torch.save(like.state_dict(), buffer)
            buffer.seek(0)
            opt.load_state_dict(torch.load(buffer, weights_only=True))
            with torch.no_grad():
                for p, q in zip(like.param_groups[0]["params"], params, strict=True):
                    q.copy_(p)
        return opt

    eager, fused_opt = make(False), make(True)
    for g in grads[:15]:
        _replay(eager, fused_opt, g)
    fused_from_eager, eager_from_fused = make(True, like=eager), make(False, like=fused_opt)
    for t, g in enumerate(grads[15:], start=15):
        _replay(eager, fused_from_eager, g)
        _replay(eager_from_fused, fused_opt, g)
        assert_parity(f"fused resumed from eager, step {t}", eager, fused_from_eager)
        assert_parity(f"eager resumed from fused, step {t}", eager_from_fused, fused_opt)


VARIANTS = {
    "sparsity_debias": dict(sparsity_debias=True),
    "clip_norm": dict(clip_norm=2.0),
    "smooth_hyperparams": dict(smooth_hyperparams=True, lr=0.05),
    "no_zero_debias": dict(zero_debias=False),
    "linear_curvature": dict(h_log_smooth=False),
    "fixed_momentum": dict(tune_momentum=False, momentum=0.9),
    "rescaled_sgd": dict(rescaled_sgd=True),
    "no_adaptive_clip": dict(adaptive_clip=False),
}


@pytest.mark.parametrize(
    "name",
    [n if n == "sparsity_debias" else pytest.param(n, marks=pytest.mark.slow) for n in VARIANTS],
)
def test_fused_matches_eager_for_every_variant(name: str) -> None:
    """Each flag of the spec (sparse gradients, spikes at 30 and 31, two groups)."""
    shapes = [(6,), (2, 5)]
    gen = torch.Generator().manual_seed(sorted(VARIANTS).index(name))
    opts = []
    for use_fused in (False, True):
        params = [nn.Parameter(torch.full(s, 3.0)) for s in shapes]
        groups = [
            dict(params=params[:1], weight_decay=1e-2),
            dict(params=params[1:], lr_factor=0.5),
        ]
        opts.append(YellowFin(groups, fused=use_fused, **VARIANTS[name]))
    for t in range(60):
        x = [
            p.detach()
            for p in opts[0].param_groups[0]["params"] + opts[0].param_groups[1]["params"]
        ]
        grads = [1.5 * p - 1.0 + 0.3 * torch.randn(p.shape, generator=gen) for p in x]
        grads = [
            g * (torch.rand(g.shape, generator=gen) > 0.3) * (1e3 if t in (30, 31) else 1.0)
            for g in grads
        ]
        _replay(*opts, grads)
        assert_parity(f"{name} step {t}", *opts)


# --------------------------------------------------------------------------- flat buffers
def test_parameters_and_grads_live_in_flat_buffers() -> None:
    """Storage is moved (values and strides kept); backward accumulates into the views;
    zero_grad zeroes in place and keeps them."""
    model, loss_fn = _tiny_cnn()
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    strides = [p.stride() for p in params]
    assert params[0].is_contiguous(memory_format=torch.channels_last)
    opt = YellowFin(_two_groups(model), fused=True)
    storages = {p.untyped_storage().data_ptr() for p in params}
    grad_storages = {p.grad.untyped_storage().data_ptr() for p in params}
    assert len(storages) == len(grad_storages) == 1 and storages != grad_storages
    for p, value, stride in zip(params, before, strides, strict=True):
        assert torch.equal(p.detach(), value) and p.stride() == p.grad.stride() == stride
    views = [p.grad for p in params]
    loss_fn(model).backward()
    assert all(p.grad is v for p, v in zip(params, views, strict=True))
    assert all(p.grad.any() for p in params)
    opt.step()
    assert not torch.equal(params[0].detach(), before[0])
    opt.zero_grad()
    assert all(p.grad is v and not v.any() for p, v in zip(params, views, strict=True))


def test_replaced_grads_are_adopted_and_none_is_zero() -> None:
    """Swapped-in gradients (a staleness FIFO) are copied into a fresh buffer, so the FIFO's
    queued views stay intact; a None gradient is a zero gradient, unlike eager."""
    shapes = [(8,), (3, 4)]
    gen = torch.Generator().manual_seed(1)
    eager_params = [nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    fused_params = [nn.Parameter(p.detach().clone()) for p in eager_params]
    eager = YellowFin(eager_params, lr=0.1)
    fused_opt = YellowFin(fused_params, lr=0.1, fused=True)
    stale = StaleGradients(2)
    fresh = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(12)]
    delivered = [fresh[max(k - 2, 0)] for k in range(12)]
    for k in range(12):
        fused_opt.zero_grad()
        for p, g in zip(fused_params, fresh[k], strict=True):
            p.grad.add_(g)  # what backward does
        stale.swap(fused_params)
        grads = list(delivered[k])
        if k == 7:  # a parameter without a gradient: fused counts it as zero
            fused_params[1].grad = None
            grads[1] = torch.zeros(shapes[1])
        for p, g in zip(eager_params, grads, strict=True):
            p.grad = g.clone()
        eager.step()
        fused_opt.step()
        assert_parity(f"step {k}", eager, fused_opt)
        storages = {p.grad.untyped_storage().data_ptr() for p in fused_params}
        assert len(storages) == 1  # adopted into one flat buffer again


def test_unsupported_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="float32"):
        YellowFin([nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))], fused=True)
    with pytest.raises(ValueError, match="does not require grad"):
        YellowFin([nn.Parameter(torch.zeros(3), requires_grad=False)], fused=True)
    params = [nn.Parameter(torch.zeros(3))]
    opt = YellowFin(params, fused=True)
    with pytest.raises(ValueError, match="add_param_group"):
        opt.add_param_group(dict(params=[nn.Parameter(torch.zeros(2))]))
    params[0].data = torch.ones(3)  # e.g. model.to() after building the optimizer
    with pytest.raises(RuntimeError, match="no longer lives"):
        opt.step()


@pytest.mark.parametrize("when", ["at torch.compile", "at the first call"])
def test_falls_back_to_uncompiled_passes_when_compiling_fails(
    monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """No C++ compiler, or a Python dynamo does not support: warn once, stay correct."""

    def broken_compile(fn: Callable, **_: object) -> Callable:
        if when == "at torch.compile":
            raise RuntimeError("torch.compile is not supported on this Python")

        def fail(*args: object) -> None:
            raise torch._dynamo.exc.InternalTorchDynamoError("no C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(fused_module, "_COMPILED", {})
    monkeypatch.setattr(fused_module._Compiled, "failed", False)
    shapes = [(8,), (3, 4)]
    eager = YellowFin([nn.Parameter(torch.ones(s)) for s in shapes], lr=0.1)
    fused_opt = YellowFin([nn.Parameter(torch.ones(s)) for s in shapes], lr=0.1, fused=True)
    gen = torch.Generator().manual_seed(2)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        _replay(eager, fused_opt, [torch.randn(s, generator=gen) for s in shapes])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not every step
        for _ in range(5):
            _replay(eager, fused_opt, [torch.randn(s, generator=gen) for s in shapes])
    assert_parity("uncompiled fallback", eager, fused_opt)


# --------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
def test_fused_and_eager_steps_never_sync_on_cuda() -> None:
    """After warm-up (compilation), step() and stat_tensors() never wait for the host, with
    clipping, a gradient spike and a NaN step; and the two modes agree on the GPU."""
    shapes = [(64,), (32, 16), (4, 8, 3, 3)]
    gen = torch.Generator(device="cuda").manual_seed(0)
    init = [torch.randn(s, device="cuda", generator=gen) for s in shapes]
    opts = []
    for use_fused in (False, True):
        params = [nn.Parameter(x.clone()) for x in init]
        opts.append(
            YellowFin(
                [
                    dict(params=params[:1], weight_decay=1e-3),
                    dict(params=params[1:], lr_factor=0.5),
                ],
                lr=0.1,
                momentum=0.1,
                clip_norm=50.0,
                fused=use_fused,
            )
        )
    for t in range(30):
        grads = [torch.randn(s, device="cuda", generator=gen) for s in shapes]
        if t == 22:
            grads[1] = grads[1] * 100.0
        if t == 25:
            grads[0][3] = math.nan
        for opt in opts:
            params = [p for g in opt.param_groups for p in g["params"]]
            for p, g in zip(params, grads, strict=True):
                if opt.fused:
                    p.grad.copy_(g)
                else:
                    p.grad = g.clone()
        torch.cuda.synchronize()
        if t >= 3:
            torch.cuda.set_sync_debug_mode("error")
        try:
            for opt in opts:
                opt.step()
                opt.stat_tensors()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        assert_parity(f"cuda step {t}", *opts)
    assert opts[1].stats()["skipped_steps"] == 1
