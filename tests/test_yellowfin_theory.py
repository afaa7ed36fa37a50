"""The maths YellowFin rests on: the closed-form cubic and the robust region of momentum.

Both are checked numerically against brute force, independent of the optimizer's code path.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from yfbench.optim import cubic_momentum_root, robust_momentum

DECADES = [10.0**k for k in range(-4, 5)]  # 1e-4 .. 1e4


def _objective_slope(x: torch.Tensor, dist, grad_var, h_min) -> torch.Tensor:
    """d/dx of x^2 D^2 + (1-x)^4 C / h^2: increasing in x, so its sign brackets the minimiser."""
    return 2 * x * dist**2 - 4 * (1 - x) ** 3 * grad_var / h_min**2


def _brute_force_minimiser(dist, grad_var, h_min, grid_points: int = 4001) -> torch.Tensor:
    """Minimise the noisy-quadratic surrogate over [0, 1]: dense grid, then bisect on the slope."""
    grid = torch.linspace(0.0, 1.0, grid_points, dtype=torch.float64)
    values = grid[:, None] ** 2 * dist**2 + (1 - grid[:, None]) ** 4 * grad_var / h_min**2
    best = values.argmin(dim=0)
    step = 1.0 / (grid_points - 1)
    lo = torch.clamp(grid[best] - step, min=0.0)
    hi = torch.clamp(grid[best] + step, max=1.0)
    for _ in range(80):
        mid = (lo + hi) / 2
        rising = _objective_slope(mid, dist, grad_var, h_min) > 0
        hi = torch.where(rising, mid, hi)
        lo = torch.where(rising, lo, mid)
    return (lo + hi) / 2


def _input_grid(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    combos = torch.tensor(list(itertools.product(DECADES, DECADES, DECADES)), dtype=torch.float64)
    return tuple(combos[:, i].to(dtype) for i in range(3))


def _assert_same_momentum(root: torch.Tensor, expected_root: torch.Tensor, atol: float) -> None:
    """Compare mu = x^2, the quantity the optimizer uses.

    For p = D^2 h^2 / 2C near 1e20 the minimiser x is ~1e-20 and the closed form's
    y = w - p/(3w) cancels to ~1e-5 absolute even in float64; squared, that is harmless.
    """
    torch.testing.assert_close(root.double() ** 2, expected_root**2, rtol=1e-6, atol=atol)


def test_cubic_root_is_the_surrogate_minimiser_float64() -> None:
    dist, grad_var, h_min = _input_grid(torch.float64)
    # eps = 0 gives the exact minimiser of the surrogate as written.
    closed_form = cubic_momentum_root(dist, grad_var, h_min, eps=0.0)
    _assert_same_momentum(closed_form, _brute_force_minimiser(dist, grad_var, h_min), atol=1e-9)


def test_cubic_root_with_eps_minimises_the_shifted_surrogate() -> None:
    """The optimizer's eps shifts D, C and h_min by eps; the root stays near that minimiser."""
    eps = 1e-6
    dist, grad_var, h_min = _input_grid(torch.float64)
    closed_form = cubic_momentum_root(dist, grad_var, h_min, eps=eps)
    expected = _brute_force_minimiser(dist + eps, grad_var + eps, h_min + eps)
    _assert_same_momentum(closed_form, expected, atol=1e-6)


def _spectral_radius(alpha: torch.Tensor, curvature: float, momentum: float) -> torch.Tensor:
    """Spectral radius of heavy ball on f = h x^2 / 2: [[1 - a h + mu, -mu], [1, 0]]."""
    operator = torch.zeros(alpha.numel(), 2, 2, dtype=torch.float64)
    operator[:, 0, 0] = 1 - alpha * curvature + momentum
    operator[:, 0, 1] = -momentum
    operator[:, 1, 0] = 1.0
    return torch.linalg.eigvals(operator).abs().amax(dim=-1)


@pytest.mark.parametrize("momentum", [0.01, 0.25, 0.5, 0.81, 0.95, 0.999])
@pytest.mark.parametrize("curvature", [1e-3, 1.0, 250.0])
def test_spectral_radius_is_sqrt_momentum_on_robust_region(
    momentum: float, curvature: float
) -> None:
    root = momentum**0.5
    lo, hi = (1 - root) ** 2 / curvature, (1 + root) ** 2 / curvature
    inside = torch.linspace(lo, hi, 201, dtype=torch.float64)
    radius = _spectral_radius(inside, curvature, momentum)
    torch.testing.assert_close(radius, torch.full_like(radius, root), rtol=1e-6, atol=0.0)

    outside = torch.tensor([lo * 0.9, hi * 1.01, hi * 1.1], dtype=torch.float64)
    assert (_spectral_radius(outside, curvature, momentum) > root * (1 + 1e-4)).all()


@pytest.mark.parametrize("h_min, h_max", [(1.0, 1.0), (0.1, 10.0), (2.0, 3e4), (1e-3, 5e-3)])
@pytest.mark.parametrize("dist, grad_var", [(1.0, 1.0), (10.0, 1e-3), (1e-2, 1e2)])
def test_tuned_pair_puts_every_curvature_in_robust_region(
    h_min: float, h_max: float, dist: float, grad_var: float
) -> None:
    """YellowFin's (alpha, mu) makes every h in [h_min, h_max] contract at rate exactly sqrt(mu)."""
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    mu = float(robust_momentum(*map(as_tensor, (dist, grad_var, h_min, h_max)), eps=0.0))
    alpha = (1 - mu**0.5) ** 2 / h_min
    for curvature in torch.logspace(
        torch.log10(as_tensor(h_min)), torch.log10(as_tensor(h_max)), 25, dtype=torch.float64
    ).tolist():
        radius = _spectral_radius(torch.tensor([alpha], dtype=torch.float64), curvature, mu)
        assert radius.item() == pytest.approx(mu**0.5, rel=1e-6, abs=1e-7)
