"""The paper's analysis figures on synthetic problems (paper_digest.md, sections 5.2-5.3).

Each figure has its own recipe function that returns the data it plots, so tests can
check the numbers against the theory without drawing.  Everything runs on CPU in
seconds; ``run_all`` writes the figures and a ``summary.json`` of the key numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from yfbench import atomic
from yfbench.analysis.plots import PALETTE, STYLE, save_figure
from yfbench.optim import YellowFin

MOMENTA = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)


def robust_tuning(h_min: float, h_max: float) -> tuple[float, float]:
    """(lr, momentum) from the generalized condition number: the smallest momentum whose
    robust region covers [h_min, h_max], and the lr at the region's lower end."""
    root = math.sqrt(h_max / h_min)
    momentum = ((root - 1.0) / (root + 1.0)) ** 2
    return (1.0 - math.sqrt(momentum)) ** 2 / h_min, momentum


# --------------------------------------------------------------------------- figure 1
def spectral_radius(lr: np.ndarray, momentum: float, curvature: float = 1.0) -> np.ndarray:
    """Spectral radius of the momentum operator [[1 - lr h + mu, -mu], [1, 0]].

    Its eigenvalues solve z^2 - (1 + mu - lr h) z + mu = 0.
    """
    b = 1.0 + momentum - np.asarray(lr, dtype=np.float64) * curvature
    disc = np.sqrt((b**2 - 4.0 * momentum).astype(np.complex128))
    return np.maximum(np.abs((b + disc) / 2.0), np.abs((b - disc) / 2.0))


def plot_spectral_radius(stem: Path) -> list[Path]:
    """rho vs lr (h = 1) for several momenta: flat at sqrt(mu) over the robust region."""
    lr = np.linspace(1e-3, 4.0, 4000)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for index, mu in enumerate(MOMENTA):
        color = PALETTE[index % len(PALETTE)]
        ax.plot(lr, spectral_radius(lr, mu), color=color, label=f"μ = {mu:g}")
        ends = np.array([(1 - math.sqrt(mu)) ** 2, (1 + math.sqrt(mu)) ** 2])
        ax.plot(ends, [math.sqrt(mu)] * 2, "o", color=color, markersize=4)
    ax.set_ylim(0.0, 1.5)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("learning rate α (curvature h = 1)")
    ax.set_ylabel("spectral radius ρ(A)")
    ax.set_title("Momentum operator: ρ = √μ on the robust region (dots: its ends)")
    ax.legend(ncol=2)
    return save_figure(fig, stem)


# --------------------------------------------------------------------------- figure 2
def abs_trajectory(lr: float, momentum: float, start: float = 1.0, steps: int = 30) -> np.ndarray:
    """|x_t| of heavy-ball (sub)gradient descent on f(x) = |x|, t = 0..steps."""
    x, previous, out = start, start, [abs(start)]
    for _ in range(steps):
        x, previous = x - lr * np.sign(x) + momentum * (x - previous), x
        out.append(abs(x))
    return np.array(out)


@dataclass
class AbsResult:
    """Trajectories |x_t| of GCN-tuned heavy ball and of plain GD (lr = target) on |x|."""

    target: float
    momentum: float
    lr: float
    tuned: np.ndarray
    plain: np.ndarray


def first_below(distance: np.ndarray, target: float) -> int | None:
    """First step t with |x_t| <= target (with a tolerance for the float steps of GD)."""
    below = np.flatnonzero(distance <= target + 1e-12)
    return int(below[0]) if below.size else None


def abs_convergence(target: float = 0.05, start: float = 1.0, steps: int = 30) -> AbsResult:
    """GCN-tuned momentum vs plain GD (lr = target) on |x|.

    The generalized curvature f'(x)/x = 1/|x| ranges over [1/start, 1/target] on the way
    from ``start`` to the target, which gives the GCN and the robust (lr, momentum).
    """
    lr, momentum = robust_tuning(1.0 / start, 1.0 / target)
    return AbsResult(
        target,
        momentum,
        lr,
        abs_trajectory(lr, momentum, start, steps),
        abs_trajectory(target, 0.0, start, steps),
    )


def plot_abs_convergence(result: AbsResult, stem: Path) -> list[Path]:
    steps = np.arange(result.tuned.size)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(
        steps,
        result.tuned,
        "o-",
        color=PALETTE[0],
        markersize=3,
        label=f"tuned momentum from GCN (μ={result.momentum:.3f}, α={result.lr:.3f})",
    )
    ax.plot(
        steps,
        result.plain,
        "s--",
        color=PALETTE[1],
        markersize=3,
        label=f"no momentum (α={result.target:g})",
    )
    ax.plot(
        steps,
        result.tuned[0] * math.sqrt(result.momentum) ** steps,
        ":",
        color="grey",
        label="√μ^t (rate inside the robust region)",
    )
    ax.axhline(result.target, color="black", linewidth=0.8, label=f"target ε = {result.target:g}")
    ax.set_ylim(0.0, result.tuned[0] * 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel("distance to optimum |x|")
    ax.set_title("f(x) = |x|: robust momentum from the generalized condition number")
    ax.legend()
    return save_figure(fig, stem)


# --------------------------------------------------------------------------- figures 3-4
class RotatedQuadratic:
    """f(x) = x^T R^T diag(h) R x / 2 (optimum 0) with h log-spaced over ``condition`` and
    R a product of random Givens rotations on disjoint coordinate pairs, so the Hessian
    is not diagonal.  Gradients are exact."""

    def __init__(self, dim: int, condition: float, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.curvature = torch.logspace(0.0, math.log10(condition), dim, dtype=torch.float64)
        pairs = torch.randperm(dim - dim % 2, generator=generator)
        self.first, self.second = pairs[0::2], pairs[1::2]
        angle = 2 * math.pi * torch.rand(dim // 2, generator=generator, dtype=torch.float64)
        self.cos, self.sin = torch.cos(angle), torch.sin(angle)
        self.start = torch.randn(dim, generator=generator, dtype=torch.float64) / math.sqrt(dim)

    def _rotate(self, v: torch.Tensor, sign: float) -> torch.Tensor:
        out = v.clone()
        a, b = v[self.first], v[self.second]
        out[self.first] = self.cos * a - sign * self.sin * b
        out[self.second] = sign * self.sin * a + self.cos * b
        return out

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """R^T diag(h) R x."""
        return self._rotate(self.curvature * self._rotate(x, 1.0), -1.0)


def distance_trajectory(
    problem: RotatedQuadratic, optimizer: str, steps: int, **settings: float
) -> np.ndarray:
    """||x_t - x*|| (x* = 0) after each of ``steps`` updates, in float64 parameters.

    ``optimizer`` is "yellowfin" (``settings`` go to its constructor) or "heavy_ball"
    (``settings``: lr, momentum; a fixed-hyperparameter reference).
    """
    x = torch.nn.Parameter(problem.start.clone())
    if optimizer == "yellowfin":
        opt = YellowFin([x], **settings)
    else:
        opt = torch.optim.SGD([x], lr=settings["lr"], momentum=settings["momentum"])
    out = np.empty(steps)
    for t in range(steps):
        x.grad = problem.gradient(x.detach())
        opt.step()
        out[t] = float(torch.linalg.vector_norm(x.detach()))
    return out


def plot_distances(
    curves: dict[str, np.ndarray], title: str, stem: Path, floor: float = 1e-30
) -> list[Path]:
    """Distance to the optimum vs iteration (log scale, cut at ``floor``)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for index, (label, distance) in enumerate(curves.items()):
        ax.semilogy(
            np.arange(1, distance.size + 1),
            distance,
            color=PALETTE[index],
            linestyle=["-", "--", "-.", ":"][index % 4],
            label=label,
        )
    top = max(float(np.nanmax(d)) for d in curves.values())
    ax.set_ylim(floor, top * 10)
    ax.set_xlabel("iteration")
    ax.set_ylabel("distance to optimum")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, stem)


# The paper's Algorithm 2 smooths h_min/h_max linearly; the authors' final code (and
# YellowFin's default) smooths them in the log domain.  On a deterministic quadratic
# only the linear form keeps converging, so the figures show both.
LINEAR_H = {"h_log_smooth": False}


def rotated_quadratic_curves(
    dim: int = 1000, condition: float = 100.0, steps: int = 2000
) -> dict[str, np.ndarray]:
    """YellowFin (initial lr 1/h_max) on the deterministic rotated quadratic, with linear
    and with log-domain curvature smoothing, and the heavy ball tuned from the true
    curvature range (rate sqrt(mu)) for reference."""
    lr, momentum = robust_tuning(1.0, condition)
    problem = RotatedQuadratic(dim, condition)
    start_lr = 1.0 / condition
    return {
        "YellowFin, linear h smoothing (paper's Alg. 2)": distance_trajectory(
            problem, "yellowfin", steps, lr=start_lr, **LINEAR_H
        ),
        "YellowFin, log h smoothing (code default)": distance_trajectory(
            problem, "yellowfin", steps, lr=start_lr
        ),
        f"heavy ball, robust (α, μ) from the true h (μ={momentum:.3f})": distance_trajectory(
            problem, "heavy_ball", steps, lr=lr, momentum=momentum
        ),
    }


def momentum_ablation_curves(
    dim: int = 1000, condition: float = 100.0, steps: int = 2000
) -> dict[str, np.ndarray]:
    """YellowFin with tuned momentum vs the same lr tuner with momentum held fixed
    (linear h smoothing, deterministic rotated quadratic)."""
    problem = RotatedQuadratic(dim, condition)
    curves = {}
    for label, settings in (
        ("YellowFin (tuned μ)", {}),
        ("YellowFin, fixed μ = 0", {"tune_momentum": False, "momentum": 0.0}),
        ("YellowFin, fixed μ = 0.9", {"tune_momentum": False, "momentum": 0.9}),
    ):
        curves[label] = distance_trajectory(
            problem, "yellowfin", steps, lr=1.0 / condition, **LINEAR_H, **settings
        )
    return curves


def run_all(out_dir: Path) -> list[Path]:
    """Write the four figures and summary.json (the numbers the report quotes)."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    with plt.rc_context(STYLE):
        written += plot_spectral_radius(out_dir / "spectral_radius")
        absolute = abs_convergence()
        written += plot_abs_convergence(absolute, out_dir / "abs_convergence")
        quadratic = rotated_quadratic_curves()
        written += plot_distances(
            quadratic,
            "1000-d quadratic (κ = 100), pairwise rotations, exact gradients",
            out_dir / "rotated_quadratic",
        )
        ablation = momentum_ablation_curves()
        written += plot_distances(
            ablation,
            "Momentum adaptivity on the rotated quadratic (κ = 100)",
            out_dir / "momentum_ablation",
        )
    summary = {
        "abs_convergence": {
            "target": absolute.target,
            "tuned_momentum": absolute.momentum,
            "tuned_lr": absolute.lr,
            "steps_to_target_tuned": first_below(absolute.tuned, absolute.target),
            "steps_to_target_no_momentum": first_below(absolute.plain, absolute.target),
        },
        "rotated_quadratic_final_distance": {k: float(v[-1]) for k, v in quadratic.items()},
        "momentum_ablation_final_distance": {k: float(v[-1]) for k, v in ablation.items()},
    }
    path = out_dir / "summary.json"
    atomic.write_text(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return written + [path]
