"""On the noisy quadratic under staleness 15, closed-loop YellowFin's measured total
momentum stays within the stated tolerance of its target; open loop's does not."""

from __future__ import annotations

from tests.helpers import compose_config
from yfbench.analysis.asynchrony import TOLERANCE, momentum_tracking, tracking_summary
from yfbench.analysis.runs import load_runs
from yfbench.engine.trainer import run


def test_closed_loop_total_momentum_within_tolerance_open_loop_not(tmp_path):
    for grid_point in ("yellowfin_closed_loop", "yellowfin_open_loop"):
        overrides = [
            "experiment=asynchrony_noisy_quadratic",
            f"grid_point={grid_point}",
            "seed=1",
            "trainer.max_steps=1000",
            "trainer.eval_every=0",
        ]
        assert run(compose_config(overrides), tmp_path / grid_point)["status"] == "completed"
    summary = tracking_summary(momentum_tracking(load_runs([tmp_path]))).set_index("optimizer")
    closed, open_loop = summary.loc["yellowfin_closed_loop"], summary.loc["yellowfin_open_loop"]
    assert abs(closed["gap"]) <= TOLERANCE and closed["tracks"]
    assert open_loop["gap"] > TOLERANCE and not open_loop["tracks"]
