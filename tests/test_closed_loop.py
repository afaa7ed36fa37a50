"""Simulated asynchrony (StaleGradients) and closed-loop YellowFin's total-momentum feedback."""

from __future__ import annotations

import io

import pytest
import torch

from yfbench.engine.staleness import StaleGradients
from yfbench.errors import UserError
from yfbench.optim.closed_loop import ClosedLoopYellowFin, measure_total_momentum

DIM = 200
CURVATURES = torch.logspace(-2, 0, DIM)


def _noisy_quadratic_loss(x: torch.Tensor, gen: torch.Generator, noise: float) -> torch.Tensor:
    """0.5 sum h_i x_i^2 plus a linear term whose random slope is the gradient noise."""
    return 0.5 * (CURVATURES * x * x).sum() + (noise * torch.randn(DIM, generator=gen) * x).sum()


def _train(optimizer_fn, tau: int, steps: int, noise: float = 0.01, seed: int = 0):
    """Yield (x before, fresh gradient, x after, optimizer) for each step under staleness tau."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.Parameter(torch.ones(DIM))
    optimizer, stale = optimizer_fn([x]), StaleGradients(tau)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        _noisy_quadratic_loss(x, gen, noise).backward()
        before, fresh = x.detach().clone(), x.grad.clone()
        stale.swap([x])
        optimizer.step()
        yield before, fresh, x.detach().clone(), optimizer


def test_fifo_returns_the_gradient_from_tau_steps_earlier() -> None:
    tau = 3
    stale = StaleGradients(tau)
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(()))]
    for k in range(10):
        params[0].grad = torch.full((2,), float(k))
        params[1].grad = None if k % 2 else torch.tensor(-float(k))
        stale.swap(params)
        source = max(k - tau, 0)  # the first tau steps apply the oldest gradient there is
        assert torch.equal(params[0].grad, torch.full((2,), float(source)))
        if source % 2:
            assert params[1].grad is None
        else:
            assert torch.equal(params[1].grad, torch.tensor(-float(source)))


def test_fifo_state_round_trip_and_zero_staleness() -> None:
    first, second = StaleGradients(2), StaleGradients(2)
    p = torch.nn.Parameter(torch.zeros(()))
    for k in range(3):
        p.grad = torch.tensor(float(k))
        first.swap([p])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    for k in range(3, 6):
        outputs = []
        for fifo in (first, second):
            p.grad = torch.tensor(float(k))
            fifo.swap([p])
            outputs.append(p.grad.item())
        assert outputs == [k - 2, k - 2]
    with pytest.raises(UserError, match="staleness"):
        StaleGradients(1).load_state_dict(first.state_dict())
    fresh = torch.tensor(7.0)
    p.grad = fresh
    StaleGradients(0).swap([p])
    assert p.grad is fresh
    with pytest.raises(UserError):
        StaleGradients(-1)


def _measured_momentum_sgd(tau: int, momentum: float, lr: float) -> list[float]:
    """mu_T of each step, pairing the gradient at x_k with the step x_k -> x_{k+1}."""
    optimizer_fn = lambda p: torch.optim.SGD(p, lr=lr, momentum=momentum)  # noqa: E731
    xs, grads = [], []
    for before, fresh, after, _ in _train(optimizer_fn, tau, steps=300, seed=1):
        xs.append(before)
        grads.append(fresh)
        final = after
    xs.append(final)
    return [
        float(measure_total_momentum(xs[k + 1], xs[k], xs[k - 1], grads[k], lr))
        for k in range(50, 300)
    ]


def test_without_staleness_the_measurement_is_the_applied_momentum() -> None:
    measured = _measured_momentum_sgd(tau=0, momentum=0.5, lr=0.01)
    assert max(abs(m - 0.5) for m in measured) < 1e-4


def test_staleness_adds_momentum_to_momentum_sgd() -> None:
    measured = _measured_momentum_sgd(tau=15, momentum=0.5, lr=0.01)
    assert sum(measured) / len(measured) > 0.5 + 0.02


@pytest.mark.parametrize("tau", [0, 3])
def test_optimizer_measures_the_step_taken_from_where_its_gradient_was_computed(tau: int) -> None:
    """Its mu_T at step n is the measurement of step n - tau with that step's fresh gradient."""
    optimizer_fn = lambda p: ClosedLoopYellowFin(p, staleness=tau, adaptive_clip=False)  # noqa: E731
    xs, grads, lrs, measured = [], [], [], []
    for before, fresh, after, optimizer in _train(optimizer_fn, tau, steps=60):
        stats = optimizer.stats()
        xs.append(before)
        grads.append(fresh)
        lrs.append(stats["lr"])
        measured.append(stats["total_momentum"])
        final = after
    assert all(m != m for m in measured[: tau + 1])  # NaN until x_{n-tau-2} exists
    xs.append(final)
    for n in range(tau + 2, 61):  # n counts steps; step j moves x_{j-1} -> x_j
        j = n - tau
        expected = measure_total_momentum(xs[j], xs[j - 1], xs[j - 2], grads[j - 1], lrs[j - 1])
        assert measured[n - 1] == pytest.approx(float(expected), rel=1e-4, abs=1e-5)


def _momentum_bias(feedback_gain: float, seed: int, steps: int = 1200, window: int = 300) -> float:
    """Mean of mu_T - mu* over the last ``window`` steps of YellowFin under staleness 15."""
    optimizer_fn = lambda p: ClosedLoopYellowFin(p, feedback_gain=feedback_gain, staleness=15)  # noqa: E731
    gaps = []
    for _, _, _, optimizer in _train(optimizer_fn, tau=15, steps=steps, seed=seed):
        stats = optimizer.stats()
        gaps.append(stats["total_momentum"] - stats["target_momentum"])
    return sum(gaps[-window:]) / window


# The same claim end to end (experiment config, trainer, analysis, the stated tolerance) is
# tests/test_asynchrony_quadratic.py, in make test; this optimizer-level check is slow only.
@pytest.mark.slow
def test_closed_loop_drives_total_momentum_to_the_target() -> None:
    open_loop, closed_loop = _momentum_bias(0.0, seed=2), _momentum_bias(0.01, seed=2)
    assert open_loop > 0.02  # asynchrony-induced momentum on top of YellowFin's own
    assert abs(closed_loop) < 0.5 * open_loop


def test_state_dict_round_trip_continues_identically() -> None:
    def make(params):
        return ClosedLoopYellowFin(params, staleness=2, feedback_gain=0.05)

    gen = torch.Generator().manual_seed(3)
    x = torch.nn.Parameter(torch.ones(DIM))
    optimizer, stale = make([x]), StaleGradients(2)

    def run(x, optimizer, stale, gen, steps):
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            _noisy_quadratic_loss(x, gen, 0.01).backward()
            stale.swap([x])
            optimizer.step()
        return x.detach().clone(), optimizer.stats()

    run(x, optimizer, stale, gen, 12)
    buffer = io.BytesIO()
    torch.save({"x": x.detach(), "opt": optimizer.state_dict(), "fifo": stale.state_dict()}, buffer)
    gen_state = gen.get_state()
    expected = run(x, optimizer, stale, gen, 8)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    y = torch.nn.Parameter(saved["x"].clone())
    resumed, resumed_fifo = make([y]), StaleGradients(2)
    resumed.load_state_dict(saved["opt"])
    resumed_fifo.load_state_dict(saved["fifo"])
    got = run(y, resumed, resumed_fifo, torch.Generator().set_state(gen_state), 8)
    assert torch.equal(got[0], expected[0])
    assert got[1] == expected[1]
    assert expected[1]["momentum_correction"] != 0.0


def test_stat_tensors_add_total_momentum_and_correction() -> None:
    optimizer_fn = lambda p: ClosedLoopYellowFin(p, staleness=1, feedback_gain=0.05)  # noqa: E731
    *_, optimizer = list(_train(optimizer_fn, tau=1, steps=8))[-1]
    tensors, stats = optimizer.stat_tensors(), optimizer.stats()
    assert {"total_momentum", "target_momentum", "momentum_correction"} <= set(tensors)
    assert set(stats) == {*tensors, "step"}
    for key in ("total_momentum", "target_momentum", "momentum_correction", "momentum"):
        assert stats[key] == tensors[key].item()
    assert stats["momentum_correction"] != 0.0
    # The applied momentum is the target plus the correction before this step's update.
    feedback = 0.05 * (stats["target_momentum"] - stats["total_momentum"])
    applied = stats["target_momentum"] + stats["momentum_correction"] - feedback
    assert stats["momentum"] == pytest.approx(applied, abs=1e-6)


@pytest.mark.slow  # ~22 s on a fresh clone, most of it compiling the fused step
def test_fused_closed_loop_follows_the_eager_one() -> None:
    """fused=True under staleness: backward into the flat buffer, stale gradients swapped in.
    The measured mu_T is a median of ratios of differences, so it is compared at 1e-3."""
    runs = []
    for fused in (False, True):
        optimizer_fn = lambda p, fused=fused: ClosedLoopYellowFin(  # noqa: E731
            p, staleness=3, feedback_gain=0.05, fused=fused
        )
        runs.append([(o.stats(), x) for _, _, x, o in _train(optimizer_fn, tau=3, steps=40)])
    for (eager, x_eager), (fused, x_fused) in zip(*runs, strict=True):
        torch.testing.assert_close(x_fused, x_eager, rtol=0.0, atol=1e-6)
        for key in ("total_momentum", "momentum_correction"):
            assert fused[key] == pytest.approx(eager[key], rel=1e-3, abs=1e-6, nan_ok=True)
    assert eager["momentum_correction"] != 0.0
