"""The synthetic analysis figures: checked against the theory they illustrate."""

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from yfbench.analysis.__main__ import main
from yfbench.analysis.synthetic import (
    RotatedQuadratic,
    abs_convergence,
    distance_trajectory,
    first_below,
    robust_tuning,
    spectral_radius,
)


@pytest.mark.parametrize("mu", [0.1, 0.5, 0.9])
def test_spectral_radius_is_sqrt_mu_exactly_on_the_robust_region(mu: float):
    low, high = (1 - math.sqrt(mu)) ** 2, (1 + math.sqrt(mu)) ** 2
    inside = np.linspace(low, high, 50)
    np.testing.assert_allclose(spectral_radius(inside, mu), math.sqrt(mu), rtol=1e-6)
    outside = np.array([low * 0.5, high * 1.1])
    assert (spectral_radius(outside, mu) > math.sqrt(mu) + 1e-3).all()


def test_spectral_radius_without_momentum_is_gradient_descent():
    # mu = 0: A has eigenvalues 1 - lr h and 0.
    np.testing.assert_allclose(spectral_radius(np.array([0.5, 1.5, 3.0]), 0.0), [0.5, 0.5, 2.0])


def test_robust_tuning_covers_the_curvature_range():
    lr, mu = robust_tuning(1.0, 100.0)
    assert mu == pytest.approx((9 / 11) ** 2)
    # Both ends of [h_min, h_max] sit on the robust region's boundary.
    assert lr * 1.0 == pytest.approx((1 - math.sqrt(mu)) ** 2)
    assert lr * 100.0 == pytest.approx((1 + math.sqrt(mu)) ** 2)


def test_abs_gradient_descent_takes_one_target_per_step():
    result = abs_convergence(target=0.05, start=1.0, steps=30)
    # GD with lr = 0.05 moves |x| down by 0.05 a step: 0.95 away takes 19 steps.
    assert first_below(result.plain, 0.05) == 19
    assert first_below(result.tuned, 0.05) < 19


def test_yellowfin_converges_on_the_rotated_quadratic_in_float64():
    problem = RotatedQuadratic(dim=200, condition=30.0)
    # The problem is a real rotation: gradients equal R^T diag(h) R x with R orthogonal.
    x = problem.start
    assert float(x @ problem.gradient(x)) > 0
    distance = distance_trajectory(problem, "yellowfin", 600, lr=1 / 30, h_log_smooth=False)
    assert distance[-1] < 1e-12 * distance[0]


def test_synthetic_cli_writes_all_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import yfbench.analysis.synthetic as synthetic

    # Same recipes, smaller problems: the full-size run is `make figures`.
    small_quadratic = synthetic.rotated_quadratic_curves
    small_ablation = synthetic.momentum_ablation_curves
    monkeypatch.setattr(
        synthetic, "rotated_quadratic_curves", lambda: small_quadratic(dim=50, steps=100)
    )
    monkeypatch.setattr(
        synthetic, "momentum_ablation_curves", lambda: small_ablation(dim=50, steps=100)
    )
    assert main(["synthetic", "--out", str(tmp_path)]) == 0
    for stem in ("spectral_radius", "abs_convergence", "rotated_quadratic", "momentum_ablation"):
        assert imread(tmp_path / f"{stem}.png").shape[0] > 100
        assert ET.parse(tmp_path / f"{stem}.svg").getroot().tag.endswith("svg")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["abs_convergence"]["steps_to_target_no_momentum"] == 19


@pytest.mark.slow
def test_full_synthetic_figures_reach_tiny_distances(tmp_path: Path):
    assert main(["synthetic", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    finals = summary["rotated_quadratic_final_distance"]
    assert finals["YellowFin, linear h smoothing (paper's Alg. 2)"] < 1e-20
