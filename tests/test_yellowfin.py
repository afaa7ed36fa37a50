"""YellowFin against the authors' trajectories and against the spec's step, rule by rule.

Two references: the recorded trajectories of the authors' PyTorch code (default settings),
and ``SpecYellowFin`` below, a plain float64 transcription of "One step" in
../shared/YELLOWFIN.md that covers every flag, run side by side with the optimizer on a
fresh random quadratic. Then the torch.optim contract: hyperparameters in param groups
and state dicts, the trainer's hooks (``schedule_key``, ``stat_tensors``).
"""

from __future__ import annotations

import copy
import io
import math
from collections import Counter
from dataclasses import dataclass, field

import pytest
import torch

from tests.trajectories import load_scenario, trajectory_cases
from yfbench.optim import YellowFin

STAT_KEYS = ("lr", "momentum", "h_max", "h_min", "grad_var", "dist_to_opt")
RTOL = 1e-3
EPS = 1e-6


def _assert_rel(what: str, ours: float, expected: float, atol: float = 0.0) -> None:
    assert abs(ours - expected) <= RTOL * abs(expected) + atol, f"{what}: {ours!r} vs {expected!r}"


def _assert_params(what: str, ours: torch.Tensor, expected: torch.Tensor) -> None:
    """Parameters compare relative to the largest magnitude, not elementwise near zero."""
    error = (ours.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item()
    assert error <= RTOL * scale, f"{what}: max abs error {error:.3g} vs scale {scale:.3g}"


def _flat(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def _set_grads(params: list[torch.Tensor], flat_grad: torch.Tensor) -> None:
    for p, g in zip(params, flat_grad.split([p.numel() for p in params]), strict=True):
        p.grad = g.reshape(p.shape).to(p.dtype).clone()


# --------------------------------------------------------------------------- authors' data
@pytest.mark.parametrize("name", trajectory_cases())
def test_matches_authors_trajectory(name: str) -> None:
    scenario = load_scenario(name)
    params = scenario.initial_params()
    opt = YellowFin(params, **scenario.optimizer_kwargs)
    for t, row in enumerate(scenario.steps):
        _set_grads(params, scenario.gradient(t, _flat(params)))
        opt.step()
        stats = opt.stats()
        for key in STAT_KEYS:
            if key == "grad_var" and t == 0:
                # C = S/b - |g_avg|^2/b^2 is exactly 0 at step 0 (then floored at eps, and not
                # used); float32 rounding leaves a few ulps of S/b either side, so compare it
                # absolutely at that scale.
                assert abs(stats[key] - row[key]) <= 1e-6 * stats["grad_norm_sq"], stats[key]
                continue
            _assert_rel(f"{name} step {t} {key}", stats[key], row[key])
        _assert_params(f"{name} step {t} params", _flat(params), torch.tensor(row["params"]))


# --------------------------------------------------------------------------- spec reference
class SpecYellowFin:
    """The spec's "One step", in float64 Python, one rule per line, with event counters.

    ``groups`` is a list of (param indices, weight_decay, lr_factor).  Sparsity debias follows
    the paper digest: s = EMA(nnz/numel), zero-debiased; h_min, h_max and C times s, D / sqrt(s).
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        groups: list[tuple[list[int], float, float]],
        lr: float = 1.0,
        momentum: float = 0.0,
        beta: float = 0.999,
        curv_win_width: int = 20,
        zero_debias: bool = True,
        adaptive_clip: bool = True,
        clip_norm: float | None = None,
        smooth_hyperparams: bool = False,
        sparsity_debias: bool = False,
        h_log_smooth: bool = True,
        tune_momentum: bool = True,
    ) -> None:
        self.params = [p.detach().double().clone() for p in params]
        self.groups = groups
        self.lr, self.momentum, self.beta, self.width = lr, momentum, beta, curv_win_width
        self.zero_debias, self.adaptive_clip, self.clip_norm = zero_debias, adaptive_clip, clip_norm
        self.smooth, self.sparsity_debias = smooth_hyperparams, sparsity_debias
        self.log_smooth, self.tune_momentum = h_log_smooth, tune_momentum
        self.t = 0
        self.S = self.N = self.R = self.Hmin = self.Hmax = self.density = 0.0
        self.g_avg = [torch.zeros_like(p) for p in self.params]
        self.velocity: list[torch.Tensor | None] = [None] * len(self.params)
        self.window: list[float] = []
        self.h_max_prev = 0.0
        self.smooth_lr, self.smooth_mu = lr, momentum
        self.correction = 0.0
        self.events: Counter[str] = Counter()

    def _ema(self, avg: float, value: float) -> float:
        return self.beta * avg + (1 - self.beta) * value

    def _clip(self, grads: list[torch.Tensor], max_norm: float, event: str) -> list[torch.Tensor]:
        factor = min(1.0, max_norm / (math.sqrt(_norm_sq(grads)) + 1e-6))
        if factor < 1.0:
            self.events[event] += 1
        return [g * factor for g in grads]

    def _tuned_momentum(self, D: float, C: float, h_min: float, h_max: float) -> float:
        p = (D + EPS) ** 2 * (h_min + EPS) ** 2 / (2 * (C + EPS))
        w3 = (-math.sqrt(p**2 + 4 * p**3 / 27) - p) / 2
        w = math.copysign(abs(w3) ** (1 / 3), w3)
        x = w - p / (3 * (w + EPS)) + 1
        dr = max((h_max + EPS) / (h_min + EPS), 1 + EPS)
        return max(x**2, ((math.sqrt(dr) - 1) / (math.sqrt(dr) + 1)) ** 2)

    def step(self, grads: list[torch.Tensor]) -> dict[str, float]:
        t, beta, width = self.t, self.beta, self.width
        g = [x.double() for x in grads]
        if self.clip_norm is not None:  # 1
            g = self._clip(g, self.clip_norm, "manual_clip")
        if self.adaptive_clip and t > 1:  # 2
            g = self._clip(g, math.sqrt(100 * self.h_max_prev) + EPS, "stat_clip")
        s = _norm_sq(g)  # 3
        exploding = t >= 1 and s >= self.h_max_prev
        self.S = self._ema(self.S, s)  # 4
        self.g_avg = [beta * a + (1 - beta) * x for a, x in zip(self.g_avg, g, strict=True)]
        self.N = self._ema(self.N, math.sqrt(s))
        self.R = self._ema(self.R, self.N / (self.S + EPS))
        b = 1 - beta ** (t + 1) if self.zero_debias else 1.0
        self.window = (self.window + [s])[-width:]  # 5
        if self.log_smooth:
            self.Hmin = self._ema(self.Hmin, math.log(min(self.window) + EPS))
            self.Hmax = self._ema(self.Hmax, math.log(max(self.window) + EPS))
            h_min, h_max = math.exp(self.Hmin / b), math.exp(self.Hmax / b)
        else:
            self.Hmin = self._ema(self.Hmin, min(self.window))
            self.Hmax = self._ema(self.Hmax, max(self.window))
            h_min, h_max = self.Hmin / b, self.Hmax / b
        C = max(self.S / b - _norm_sq(self.g_avg) / b**2, EPS)  # 6
        D = self.R / b
        if self.sparsity_debias:
            nonzero = sum(int(torch.count_nonzero(x)) for x in g)
            self.density = self._ema(self.density, nonzero / sum(x.numel() for x in g))
            density = self.density / b
            h_min, h_max, C, D = h_min * density, h_max * density, C * density, D / density**0.5
        if t == 0:  # 7
            alpha, mu = self.lr, self.momentum
        else:
            mu = self._tuned_momentum(D, C, h_min, h_max) if self.tune_momentum else self.momentum
            alpha = (1 - math.sqrt(mu)) ** 2 / (h_min + EPS)
            if t + 1 >= 10 * width:
                self.events["slow_start_over"] += 1
            alpha = min(alpha, alpha * (t + 1) / (10 * width))
            if self.smooth:
                self.smooth_lr = self._ema(self.smooth_lr, alpha)
                self.smooth_mu = self._ema(self.smooth_mu, mu)
                alpha, mu = self.smooth_lr, self.smooth_mu
        mu += self.correction
        if self.adaptive_clip and exploding:  # 9
            g = self._clip(g, math.sqrt(self.h_max_prev) + EPS, "exploding")
        applied = []
        for indices, weight_decay, lr_factor in self.groups:
            lr = alpha * lr_factor  # 8
            if self.adaptive_clip and lr * math.sqrt(s) >= 100:
                self.events["clamp_step0" if t == 0 else "clamp_tuned"] += 1
                lr = 100 / math.sqrt(s + EPS)
            applied.append(lr)
            for i in indices:  # 10
                d = g[i] + weight_decay * self.params[i]
                v = self.velocity[i]
                self.velocity[i] = d if v is None else mu * v + d
                self.params[i] = self.params[i] - lr * self.velocity[i]
        self.h_max_prev = h_max
        self.t += 1
        return dict(lr=applied[0], momentum=mu, h_max=h_max, h_min=h_min, grad_var=C, dist_to_opt=D)


def _norm_sq(tensors: list[torch.Tensor]) -> float:
    return sum(float((x * x).sum()) for x in tensors)


@dataclass(frozen=True)
class SpecCase:
    """A run on a random quadratic; ``expect`` lists rules that must fire at least once."""

    options: dict = field(default_factory=dict)
    groups: tuple = ((1e-2, 1.0), (0.0, 0.5))  # (weight_decay, lr_factor) per tensor
    spikes: tuple = ()
    sparse: bool = False
    correction_from: int | None = None
    expect: frozenset = frozenset()
    steps: int = 80


SPEC_CASES = {
    "two_groups_weight_decay": SpecCase(options=dict(lr=0.1, momentum=0.5)),
    "manual_clip": SpecCase(options=dict(clip_norm=1.0), expect=frozenset({"manual_clip"})),
    "spikes": SpecCase(spikes=(30, 31, 55), expect=frozenset({"stat_clip", "exploding"})),
    "catastrophic_clamp_step0": SpecCase(options=dict(lr=1e3), expect=frozenset({"clamp_step0"})),
    "catastrophic_clamp_lr_factor": SpecCase(
        options=dict(lr=1e-6), groups=((1e-2, 3e6), (0.0, 0.5)), expect=frozenset({"clamp_tuned"})
    ),
    "slow_start_over": SpecCase(
        options=dict(curv_win_width=5), steps=120, expect=frozenset({"slow_start_over"})
    ),
    "no_zero_debias": SpecCase(options=dict(zero_debias=False)),
    "linear_curvature": SpecCase(options=dict(h_log_smooth=False)),
    "smooth_hyperparams": SpecCase(options=dict(smooth_hyperparams=True, lr=0.05)),
    "sparsity_debias": SpecCase(options=dict(sparsity_debias=True), sparse=True),
    "fixed_momentum": SpecCase(options=dict(tune_momentum=False, momentum=0.9)),
    "momentum_correction": SpecCase(correction_from=10),
    "no_adaptive_clip": SpecCase(options=dict(adaptive_clip=False), spikes=(30,)),
}
CORRECTION = 0.05


@pytest.mark.parametrize("name", sorted(SPEC_CASES))
def test_matches_spec_step_by_step(name: str) -> None:
    case = SPEC_CASES[name]
    gen = torch.Generator().manual_seed(sorted(SPEC_CASES).index(name))
    shapes = [(6,), (2, 5)]
    sizes = [math.prod(shape) for shape in shapes]
    numel = sum(sizes)
    h = torch.exp(torch.empty(numel, dtype=torch.float64).uniform_(-2.3, 2.3, generator=gen))
    c = torch.randn(numel, dtype=torch.float64, generator=gen)
    x0 = torch.randn(numel, dtype=torch.float64, generator=gen) * 3
    noise = 0.3 * torch.randn(case.steps, numel, dtype=torch.float64, generator=gen)
    masks = torch.rand(case.steps, numel, generator=gen) > 0.4 * torch.rand(case.steps, 1)

    params = [
        torch.nn.Parameter(chunk.float().reshape(shape))
        for chunk, shape in zip(x0.split(sizes), shapes, strict=True)
    ]
    opt = YellowFin(
        [
            dict(params=[p], weight_decay=wd, lr_factor=lf)
            for p, (wd, lf) in zip(params, case.groups, strict=True)
        ],
        **case.options,
    )
    groups = [([i], wd, lf) for i, (wd, lf) in enumerate(case.groups)]
    spec = SpecYellowFin([p.detach().reshape(-1) for p in params], groups, **case.options)

    def gradient(x: torch.Tensor, t: int) -> torch.Tensor:
        grad = h.float() * (x - c.float()) + noise[t].float()
        grad = grad * 1e3 if t in case.spikes else grad
        return grad * masks[t] if case.sparse else grad

    for t in range(case.steps):
        if t == case.correction_from:
            opt.set_momentum_correction(CORRECTION)
            spec.correction = CORRECTION
        # Both take the gradient at the optimizer's parameters, so float32-vs-float64
        # rounding is not amplified by the dynamics and every step is checked as a step.
        grad = gradient(_flat(params), t)
        _set_grads(params, grad)
        opt.step()
        expected = spec.step(list(grad.double().split(sizes)))
        stats = opt.stats()
        for key in STAT_KEYS:
            if t == 0 and key == "grad_var":
                continue  # C is 0 - 0 at step 0, pure rounding noise, and unused
            atol = 1e-7 if key == "momentum" else 0.0  # mu near 0 comes from a cancellation
            _assert_rel(f"{name} step {t} {key}", stats[key], expected[key], atol=atol)
        _assert_params(f"{name} step {t} params", _flat(params), _flat(spec.params))
    missing = {event for event in case.expect if spec.events[event] == 0}
    assert not missing, f"{name}: rules never triggered: {missing}"


# --------------------------------------------------------------------------- single rules
def _random_grads(steps: int, shapes: list[tuple[int, ...]], seed: int = 0) -> list[list]:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(shape, generator=gen) for shape in shapes] for _ in range(steps)]


def _assign(params: list[torch.Tensor], grads: list) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else g.to(p.dtype).clone()


def _step_with(opt: YellowFin, params: list[torch.Tensor], grads: list) -> dict[str, float]:
    _assign(params, grads)
    opt.step()
    return opt.stats()


def test_step0_applies_initial_lr_times_factor_and_momentum() -> None:
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    grad = torch.tensor([0.5, 0.25, -1.0])
    opt = YellowFin([param], lr=0.1, momentum=0.3, lr_factor=2.0)
    stats = _step_with(opt, [param], [grad])
    assert stats["lr"] == pytest.approx(0.2) and stats["momentum"] == pytest.approx(0.3)
    torch.testing.assert_close(param.detach(), torch.tensor([1.0, -2.0, 3.0]) - 0.2 * grad)


def test_weight_decay_changes_update_not_statistics() -> None:
    shapes = [(4,), (3, 3)]
    grads = _random_grads(30, shapes)
    runs = {}
    for wd in (0.0, 0.1):
        params = [torch.nn.Parameter(torch.ones(shape)) for shape in shapes]
        opt = YellowFin(params, lr=0.1, weight_decay=wd)
        stats = [_step_with(opt, params, g) for g in grads]
        runs[wd] = (stats, _flat(params))
    assert runs[0.0][0] == runs[0.1][0]
    assert not torch.allclose(runs[0.0][1], runs[0.1][1])


def test_fixed_momentum_ablation_keeps_momentum_and_tunes_lr() -> None:
    param = torch.nn.Parameter(torch.zeros(5))
    opt = YellowFin([param], lr=0.1, momentum=0.9, tune_momentum=False)
    stats = [_step_with(opt, [param], g) for g in _random_grads(40, [(5,)])]
    assert all(s["momentum"] == pytest.approx(0.9) for s in stats)
    tuned_lrs = {round(s["lr"], 12) for s in stats[1:]}
    assert len(tuned_lrs) > 30


def test_momentum_correction_adds_to_tuned_momentum() -> None:
    grads = _random_grads(30, [(6,)])
    params = [torch.nn.Parameter(torch.zeros(6)) for _ in range(2)]
    plain, corrected = (YellowFin([p], lr=0.1) for p in params)
    for t, g in enumerate(grads):
        if t == 12:
            corrected.set_momentum_correction(0.05)
        a, b = _step_with(plain, params[:1], g), _step_with(corrected, params[1:], g)
        shift = 0.05 if t >= 12 else 0.0
        assert b["momentum"] == pytest.approx(a["momentum"] + shift, rel=1e-6, abs=1e-9)
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-6)


def test_statistics_are_global_across_groups() -> None:
    shapes = [(4,), (2, 3)]
    grads = _random_grads(25, shapes)
    split = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    joined = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    opt_split = YellowFin([dict(params=[split[0]]), dict(params=[split[1]])], lr=0.1)
    opt_joined = YellowFin(joined, lr=0.1)
    for g in grads:
        assert _step_with(opt_split, split, g) == pytest.approx(_step_with(opt_joined, joined, g))
    torch.testing.assert_close(_flat(split), _flat(joined))


def test_update_is_torch_sgd_with_groups_and_missing_grads() -> None:
    """With clipping off, YF is torch.optim.SGD run with its lr and momentum; a parameter
    without a gradient is skipped (unchanged, momentum not advanced), as SGD skips it."""
    shapes = [(5,), (3, 2), (4,)]
    grads = _random_grads(12, shapes)
    for t in (3, 4, 7):
        grads[t][2] = None
    grads[5][0] = None
    factors, decays = (1.0, 0.3), (0.01, 0.02)
    init = [torch.randn(s, generator=torch.Generator().manual_seed(1)) for s in shapes]
    yf_params = [torch.nn.Parameter(x.clone()) for x in init]
    sgd_params = [torch.nn.Parameter(x.clone()) for x in init]

    def groups(params: list) -> list[dict]:
        return [
            dict(params=params[:2], weight_decay=decays[0], lr_factor=factors[0]),
            dict(params=params[2:], weight_decay=decays[1], lr_factor=factors[1]),
        ]

    yf = YellowFin(groups(yf_params), lr=0.05, momentum=0.2, adaptive_clip=False)
    sgd = torch.optim.SGD(
        [{k: v for k, v in g.items() if k != "lr_factor"} for g in groups(sgd_params)],
        lr=0.0,
        momentum=0.5,
    )
    for t, g in enumerate(grads):
        before = [p.detach().clone() for p in yf_params]
        stats = _step_with(yf, yf_params, g)
        for group, factor in zip(sgd.param_groups, factors, strict=True):
            group["lr"] = stats["lr"] / factors[0] * factor
            group["momentum"] = stats["momentum"]
        _assign(sgd_params, g)
        sgd.step()
        for i, (ours, theirs) in enumerate(zip(yf_params, sgd_params, strict=True)):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=f"step {t} p{i}")
            if g[i] is None:
                assert torch.equal(ours.detach(), before[i])


def _quadratic_grads(params: list[torch.Tensor], t: int, scale: float = 1.0) -> list:
    """Parameter-dependent gradients, so a continuation depends on the restored parameters."""
    gen = torch.Generator().manual_seed(1000 + t)
    return [
        (1.5 * p.detach() - 1.0 + 0.2 * torch.randn(p.shape, generator=gen)) * scale for p in params
    ]


def _make(shapes: list[tuple[int, ...]], **options) -> tuple[list, YellowFin]:
    params = [torch.nn.Parameter(torch.full(s, 2.0)) for s in shapes]
    return params, YellowFin(
        [dict(params=params[:1], weight_decay=1e-3), dict(params=params[1:], lr_factor=0.5)],
        **options,
    )


def test_state_dict_round_trip_continues_bitwise() -> None:
    shapes = [(7,), (3, 4)]
    params, opt = _make(shapes, lr=0.1, momentum=0.1)
    for t in range(25):
        _step_with(opt, params, _quadratic_grads(params, t))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    fresh_params, fresh = _make(shapes, lr=0.7, momentum=0.0)
    with torch.no_grad():
        for dst, src in zip(fresh_params, params, strict=True):
            dst.copy_(src)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    for t in range(25, 40):
        a = _step_with(opt, params, _quadratic_grads(params, t))
        b = _step_with(fresh, fresh_params, _quadratic_grads(fresh_params, t))
        assert a == b, f"stats differ at step {t}"
        for p, q in zip(params, fresh_params, strict=True):
            assert torch.equal(p, q), f"params differ at step {t}"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_skips_the_step(bad: float) -> None:
    shapes = [(7,), (3, 4)]
    params, opt = _make(shapes, lr=0.1)
    for t in range(8):
        _step_with(opt, params, _quadratic_grads(params, t))
    before_params = [p.detach().clone() for p in params]
    before = opt.stats()
    grads = _quadratic_grads(params, 8)
    grads[1][1, 2] = bad
    after = _step_with(opt, params, grads)
    for p, q in zip(params, before_params, strict=True):
        assert torch.equal(p.detach(), q)
    assert after["skipped_steps"] == 1
    assert {k: v for k, v in after.items() if k not in ("step", "skipped_steps")} == {
        k: v for k, v in before.items() if k not in ("step", "skipped_steps")
    }
    for t in range(9, 30):
        stats = _step_with(opt, params, _quadratic_grads(params, t))
    assert all(math.isfinite(v) for v in stats.values())
    assert all(torch.isfinite(p).all() for p in params)
    assert stats["skipped_steps"] == 1


def test_skipped_step_leaves_no_trace() -> None:
    shapes = [(7,), (3, 4)]
    (params_a, opt_a), (params_b, opt_b) = _make(shapes, lr=0.1), _make(shapes, lr=0.1)
    for t in range(30):
        for params, opt in ((params_a, opt_a), (params_b, opt_b)):
            _step_with(opt, params, _quadratic_grads(params, t))
        if t == 5:
            nan_grads = [torch.full(s, float("nan")) for s in shapes]
            _step_with(opt_a, params_a, nan_grads)
    for p, q in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=0.0)


def test_finite_gradients_never_give_non_finite_state() -> None:
    """Deterministic large gradients: C sits at its eps floor while D^2 h^2 grows, so the
    cubic's p = D^2 h^2 / 2C gets huge.  Any such step must stay finite (or be skipped)."""
    gen = torch.Generator().manual_seed(0)
    curvature = torch.rand(20, generator=gen) * 10 + 1
    param = torch.nn.Parameter(torch.randn(20, generator=gen) * 1e3)
    opt = YellowFin([param], lr=1e-3)
    for t in range(130):
        stats = _step_with(opt, [param], [curvature * param.detach()])
        assert all(math.isfinite(v) for v in stats.values()), f"step {t}: {stats}"
        assert torch.isfinite(param).all(), f"step {t}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_parameters(dtype: torch.dtype) -> None:
    shapes = [(7,), (3, 4)]
    runs = {}
    for run_dtype in (torch.float32, dtype):
        params, opt = _make(shapes, lr=0.1)
        with torch.no_grad():
            for p in params:
                p.data = p.data.to(run_dtype)
        for t in range(30):
            grads = [g.to(run_dtype) for g in _quadratic_grads(params, t, scale=0.3)]
            stats = _step_with(opt, params, grads)
        assert all(p.dtype == run_dtype for p in params)
        assert all(math.isfinite(v) for v in stats.values())
        state = opt.state_dict()["state"]["yellowfin"]
        assert all(
            v.dtype in (torch.float32, torch.int64) for v in state.values() if torch.is_tensor(v)
        )
        runs[run_dtype] = _flat(params).float()
    assert not torch.equal(runs[dtype], torch.full_like(runs[dtype], 2.0))
    error = (runs[dtype] - runs[torch.float32]).abs().max()
    assert error <= 2e-2 * runs[torch.float32].abs().max()


@pytest.mark.cuda
def test_step_never_syncs_on_cuda() -> None:
    shapes = [(64,), (32, 16)]
    params = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in shapes]
    opt = YellowFin(
        [dict(params=params[:1], weight_decay=1e-3), dict(params=params[1:], lr_factor=0.5)],
        lr=0.1,
        momentum=0.1,
        clip_norm=5.0,
    )
    for t in range(25):
        for p in params:
            p.grad = torch.randn_like(p) * (100.0 if t == 22 else 1.0)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
            tensors = opt.stat_tensors()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert all(t.device.type == "cuda" for t in tensors.values())
    assert all(math.isfinite(v) for v in opt.stats().values())


# --------------------------------------------------------------------------- torch.optim contract
def test_global_hyperparameters_round_trip_through_state_dict() -> None:
    """A state saved by a non-default optimizer, loaded into a default one, continues
    exactly: the global hyperparameters travel in the param groups."""
    shapes = [(7,), (3, 4)]
    options = dict(lr=0.1, beta=0.99, curv_win_width=7, clip_norm=8.0, h_log_smooth=False, eps=1e-5)
    params, opt = _make(shapes, **options)
    for t in range(25):
        _step_with(opt, params, _quadratic_grads(params, t, scale=3.0))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    fresh_params, fresh = _make(shapes)
    assert fresh.config() != opt.config()
    with torch.no_grad():
        for dst, src in zip(fresh_params, params, strict=True):
            dst.copy_(src)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.config() == opt.config()
    for t in range(25, 40):
        a = _step_with(opt, params, _quadratic_grads(params, t, scale=3.0))
        b = _step_with(fresh, fresh_params, _quadratic_grads(fresh_params, t, scale=3.0))
        assert a == b, f"stats differ at step {t}"
        for p, q in zip(params, fresh_params, strict=True):
            assert torch.equal(p, q), f"params differ at step {t}"


def test_checkpoint_without_global_hyperparameters_still_loads() -> None:
    """Checkpoints from before the globals were group values: the constructor's are used."""
    shapes = [(7,), (3, 4)]
    params, opt = _make(shapes, lr=0.1, beta=0.99)
    for t in range(10):
        _step_with(opt, params, _quadratic_grads(params, t))
    old = copy.deepcopy(opt.state_dict())
    for group in old["param_groups"]:
        for key in opt.config()._fields:
            del group[key]
    fresh_params, fresh = _make(shapes, lr=0.1, beta=0.99)
    with torch.no_grad():
        for dst, src in zip(fresh_params, params, strict=True):
            dst.copy_(src)
    fresh.load_state_dict(old)
    assert fresh.config() == opt.config()
    a = _step_with(opt, params, _quadratic_grads(params, 10))
    assert a == _step_with(fresh, fresh_params, _quadratic_grads(fresh_params, 10))


def test_global_hyperparameters_must_agree_across_groups() -> None:
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="beta must be equal in every param group"):
        YellowFin([dict(params=[a]), dict(params=[b], beta=0.9)])
    opt = YellowFin([a], curv_win_width=10)
    with pytest.raises(ValueError, match="curv_win_width"):
        opt.add_param_group(dict(params=[b], curv_win_width=20))
    opt.add_param_group(dict(params=[b], lr_factor=0.5, weight_decay=1e-4))  # per group: fine
    assert opt.param_groups[1]["curv_win_width"] == 10
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        YellowFin([dict(params=[a], weight_decay=-1.0)])


def test_schedule_key_scales_the_applied_lr() -> None:
    """The trainer scales ``group[optimizer.schedule_key]``: YellowFin's lr_factor, which
    multiplies the tuned lr and leaves the statistics alone."""
    shapes = [(6,), (2, 3)]
    grads = _random_grads(30, shapes)
    runs = []
    for factor in (1.0, 0.25):
        params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        opt = YellowFin(params, lr=0.1, adaptive_clip=False)
        key = getattr(opt, "schedule_key", "lr")
        assert key == "lr_factor"
        stats = []
        for t, g in enumerate(grads):
            if t == 10:
                opt.param_groups[0][key] *= factor
            stats.append(_step_with(opt, params, g))
        runs.append(stats)
    for t, (plain, scaled) in enumerate(zip(*runs, strict=True)):
        expected = plain["lr"] * (0.25 if t >= 10 else 1.0)
        assert scaled["lr"] == pytest.approx(expected, rel=1e-6), t
        assert scaled["grad_norm_sq"] == plain["grad_norm_sq"] or t > 10


def test_stat_tensors_are_device_snapshots_that_stats_reads() -> None:
    shapes = [(7,), (3, 4)]
    params, opt = _make(shapes, lr=0.1)
    for t in range(5):
        _step_with(opt, params, _quadratic_grads(params, t))
    tensors = opt.stat_tensors()
    counters = ("skipped_steps", "protect_clips", "exploding_clips")
    assert set(tensors) == {*STAT_KEYS, "grad_norm_sq", *counters}
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in tensors.values())
    stats = opt.stats()
    assert set(stats) == {*tensors, "step"}
    assert stats == {**{k: v.item() for k, v in tensors.items()}, "skipped_steps": 0, "step": 5}
    assert all(isinstance(stats[k], int) for k in ("step", *counters))
    snapshot = {k: v.clone() for k, v in tensors.items()}
    _step_with(opt, params, [torch.full(s, math.nan) for s in shapes])
    _step_with(opt, params, _quadratic_grads(params, 6))
    assert all(torch.equal(tensors[k], snapshot[k]) for k in tensors)
    assert opt.stat_tensors()["skipped_steps"].item() == 1.0


def test_docstring_states_the_algorithm_without_repository_paths() -> None:
    doc = YellowFin.__doc__
    assert "1706.03471" in doc and "10. " in doc and "../" not in doc
