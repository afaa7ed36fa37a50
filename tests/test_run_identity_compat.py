"""The committed runs keep their identity under today's config tree, and new trainer
keys at their defaults do not change it (so a relaunched grid skips or resumes them)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import REPO_ROOT, compose_config, run_config
from yfbench.config import semantic_config
from yfbench.run_contract import config_hash

COMMITTED = sorted((REPO_ROOT / "results" / "runs").glob("*/cpu/*/*-seed1/run_config.json"))


@pytest.mark.parametrize(
    "record", COMMITTED, ids=[str(p.parent.relative_to(REPO_ROOT / "results")) for p in COMMITTED]
)
def test_committed_runs_compose_to_their_recorded_identity(record):
    recorded = json.loads(record.read_text())
    composed = semantic_config(compose_config(recorded["overrides"]))
    assert composed == recorded["config"]
    assert config_hash(composed) == recorded["config_hash"]


def test_committed_runs_are_there():
    assert len(COMMITTED) >= 4 * 9  # four tasks, every grid point's seed 1


def test_flushing_subnormals_is_part_of_a_runs_identity(tmp_path, run_main):
    base = ["task=noisy_quadratic", "optimizer=momentum_sgd", "trainer.max_steps=5"]
    assert "flush_denormal" not in semantic_config(compose_config(base))["trainer"]
    flushed = semantic_config(compose_config([*base, "trainer.flush_denormal=true"]))
    assert flushed["trainer"]["flush_denormal"] is True
    run_dir = tmp_path / "run"
    result = run_main([*base, "trainer.flush_denormal=true", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr
    assert run_config(run_dir)["trainer"]["flush_denormal"] is True
    # The same run without flushing is another run: refused in that directory.
    refused = run_main([*base, f"hydra.run.dir={run_dir}"])
    assert refused.returncode != 0 and "different config" in refused.stderr.lower(), refused.stderr
