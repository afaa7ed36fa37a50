"""The clipping experiment's task: binarized CIFAR-10 pixel sequences and a 1-layer LSTM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import compose_config
from yfbench.errors import UserError
from yfbench.tasks import TaskContext, build_task
from yfbench.tasks.pixel_lstm import binarize


def _task(shared_data: Path, cache: Path, seed: int = 1, **sizes):
    overrides = ["task=pixel_lstm", "task.image_size=8", "task.hidden=8", "task.test_subset=16"]
    cfg = compose_config(overrides + [f"task.{k}={v}" for k, v in sizes.items()]).task
    ctx = TaskContext(seed=seed, device=torch.device("cpu"), data_dir=shared_data, cache_dir=cache)
    torch.manual_seed(seed)
    return build_task(cfg, ctx)


def test_binarize_pools_grayscale_and_thresholds() -> None:
    images = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    images[0, :16] = 255  # top half white
    images[1, :, :, 1] = 200  # green only: luma 0.587 * 200 / 255 = 0.46
    bits = binarize(images, 2, 0.5)
    assert bits.tolist() == [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    assert binarize(images, 2, 0.4)[1].tolist() == [1.0] * 4
    with pytest.raises(UserError, match="must divide 32"):
        binarize(images, 5, 0.5)


def test_pixel_task_trains_and_its_batches_follow_seed_and_step(shared_data, data_cache) -> None:
    task = _task(shared_data, data_cache)
    assert task.train_bits.shape == (50000, 64) and set(task.train_bits.unique().tolist()) <= {0, 1}
    assert task.steps_per_epoch == 50000 // 32 and task.grad_clip_norm is None
    again = _task(shared_data, data_cache)
    assert torch.equal(task.train_loss(task.model, 3), again.train_loss(again.model, 3))
    optimizer = torch.optim.Adam(task.model.parameters(), lr=1e-2)
    before = task.train_loss(task.model, 0).item()
    for _ in range(10):
        optimizer.zero_grad()
        task.train_loss(task.model, 0).backward()
        optimizer.step()
    assert task.train_loss(task.model, 0).item() < before
    with torch.no_grad():  # as the trainer calls it (Task.evaluate's contract)
        metrics = task.evaluate()
    assert set(metrics) == set(task.metrics) == {"loss"}
