"""Every task at scale=paper trains a few steps on CPU: the paper-scale configs, models and
data paths work before anyone spends GPU hours on them (the CUDA path: scripts/gpu_check.sh)."""

from __future__ import annotations

import pytest

from tests.helpers import compose_config, records
from yfbench.engine.trainer import run

pytestmark = pytest.mark.slow

PAPER_TASKS = ["cifar10_resnet", "ptb_lstm", "tinyshakespeare_lstm", "wsj_parse_lstm"]


@pytest.mark.parametrize("optimizer", ["yellowfin", "adam"])
@pytest.mark.parametrize("task", PAPER_TASKS)
def test_every_task_trains_at_paper_scale(task, optimizer, tmp_path, shared_data):
    cfg = compose_config(
        [
            f"task={task}",
            f"optimizer={optimizer}",
            "scale=paper",
            "trainer.max_steps=3",
            "trainer.checkpoint_every=2",
            "trainer.device=cpu",
            *(["task.test_subset=500"] if task.startswith("cifar") else []),
        ]
    )
    assert cfg.task.paper_max_steps > 20_000  # the paper's run length, unchanged
    result = run(cfg, tmp_path)
    assert result["status"] == "completed", result["error"]
    train = [r for r in records(tmp_path) if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert (tmp_path / "checkpoint.pt").exists()
    assert result["final"]["valid_loss"] > 0
