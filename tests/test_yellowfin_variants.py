"""The momentum-ablation variants of YellowFin and its clip-event counters.

Variants are compared with plain YellowFin fed the same gradient sequence (gradients that
do not depend on the parameters), so both see identical statistics: whatever differs is
the variant's doing.
"""

from __future__ import annotations

import math

import pytest
import torch

from yfbench.engine.optimizers import build_optimizer
from yfbench.optim import YellowFin
from yfbench.optim.closed_loop import ClosedLoopYellowFin

SHAPES = [(5,), (3, 4)]


def _grads(t: int, spike_at: int | None = None) -> list[torch.Tensor]:
    """A noisy gradient sequence whose norm varies, so YellowFin tunes a nonzero momentum."""
    gen = torch.Generator().manual_seed(t)
    scale = (1.0 + 0.5 * math.sin(t / 3.0)) * (1e3 if t == spike_at else 1.0)
    return [scale * (0.3 + torch.randn(s, generator=gen)) for s in SHAPES]


def _optimizer(**options) -> tuple[list[torch.nn.Parameter], YellowFin]:
    params = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
    return params, YellowFin(params, **options)


def _step(params: list[torch.nn.Parameter], opt: YellowFin, grads: list[torch.Tensor]) -> dict:
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt.step()
    return opt.stats()


def test_rescaled_sgd_applies_no_momentum_and_yellowfins_effective_lr() -> None:
    (yf_params, yf), (rs_params, rescaled) = _optimizer(), _optimizer(rescaled_sgd=True)
    tuned_momenta = []
    for t in range(300):
        grads = _grads(t)
        plain, ablated = _step(yf_params, yf, grads), _step(rs_params, rescaled, grads)
        assert ablated["momentum"] == 0.0, t
        expected = plain["lr"] / (1.0 - plain["momentum"])
        assert ablated["lr"] == pytest.approx(expected, rel=1e-5), t
        for key in ("h_min", "h_max", "grad_var", "dist_to_opt"):
            assert ablated[key] == plain[key], (t, key)
        tuned_momenta.append(plain["momentum"])
    assert max(tuned_momenta) > 0.1  # the rescaling had a momentum to fold into the lr


def test_rescaled_sgd_update_is_plain_sgd() -> None:
    params, opt = _optimizer(rescaled_sgd=True, adaptive_clip=False)
    for t in range(50):
        before = [p.detach().clone() for p in params]
        grads = _grads(t)
        lr = _step(params, opt, grads)["lr"]
        for p, b, g in zip(params, before, grads, strict=True):
            torch.testing.assert_close(p.detach(), b - lr * g, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_fixed_momentum_keeps_momentum_and_tunes_the_lr(momentum: float) -> None:
    params, opt = _optimizer(tune_momentum=False, momentum=momentum)
    for t in range(260):
        stats = _step(params, opt, _grads(t))
        assert stats["momentum"] == pytest.approx(momentum, abs=1e-7), t
        if t >= 200:  # past the slow start: alpha = (1 - sqrt(mu))^2 / h_min
            expected = (1.0 - math.sqrt(momentum)) ** 2 / (stats["h_min"] + 1e-6)
            assert stats["lr"] == pytest.approx(expected, rel=1e-5), t


def _exploding(previous: dict, now: dict) -> int:
    """Step 9's condition: s >= h_max of the step before."""
    return int(now["grad_norm_sq"] >= previous["h_max"])


def test_clip_events_are_counted_only_when_the_adaptive_clip_binds() -> None:
    params, opt = _optimizer()
    previous, expected = _step(params, opt, _grads(0)), 0
    for t in range(1, 40):
        stats = _step(params, opt, _grads(t))
        expected += _exploding(previous, stats)
        assert (stats["protect_clips"], stats["exploding_clips"]) == (0, expected), t
        previous = stats
    assert expected > 0  # the sequence has norms above the smoothed h_max
    stats = _step(params, opt, _grads(40, spike_at=40))  # 1000x the usual norm
    assert (stats["protect_clips"], stats["exploding_clips"]) == (1, expected + 1)
    assert isinstance(stats["exploding_clips"], int)
    nan_grads = [torch.full(s, math.nan) for s in SHAPES]
    stats = _step(params, opt, nan_grads)  # skipped: no clip event
    assert (stats["skipped_steps"], stats["protect_clips"]) == (1, 1)
    assert stats["exploding_clips"] == expected + 1
    unclipped_params, unclipped = _optimizer(adaptive_clip=False)
    for t in range(41):
        stats = _step(unclipped_params, unclipped, _grads(t, spike_at=40))
    assert (stats["protect_clips"], stats["exploding_clips"]) == (0, 0)


def test_checkpoint_without_clip_counters_resumes_with_zero_counts() -> None:
    params, opt = _optimizer()
    for t in range(5):
        previous = _step(params, opt, _grads(t))
    saved = opt.state_dict()
    global_state = next(iter(saved["state"].values()))
    del global_state["protect_clips"], global_state["exploding_clips"]
    resumed_params, resumed = _optimizer()
    resumed.load_state_dict(saved)
    for p, q in zip(resumed_params, params, strict=True):
        p.data.copy_(q.detach())
    stats = _step(resumed_params, resumed, _grads(5))
    assert stats["step"] == 6 and stats["protect_clips"] == 0
    assert stats["exploding_clips"] == _exploding(previous, stats)


def test_variant_configs_build_the_variants() -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    rescaled = build_optimizer(params, {"name": "yellowfin_rescaled_sgd", "rescaled_sgd": True})
    assert rescaled.config().rescaled_sgd
    open_loop = build_optimizer(params, {"name": "yellowfin_open_loop", "feedback_gain": 0.0})
    assert isinstance(open_loop, ClosedLoopYellowFin) and open_loop.feedback_gain == 0.0
    with pytest.raises(ValueError, match="no momentum"):
        ClosedLoopYellowFin(params, rescaled_sgd=True)
