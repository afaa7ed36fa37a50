"""Shared fixtures: offline environment, composed configs, tiny tasks, device markers.

Tests read real data from ../shared/data and never touch the network or W&B servers.
A test composes configs with :func:`yfbench.config.compose` (``tests.helpers.compose_config``)
or takes ``quadratic_config``, and builds tasks with ``build_tiny_task``; no test file
initialises Hydra itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers import TINY_TASK_OVERRIDES
from yfbench.config import compose
from yfbench.tasks import Task, TaskContext, build_task

# Two busy cores: one intra-op thread per process is both faster and steadier.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are skipped, with the reason, where no CUDA device is present."""
    if torch.cuda.is_available():
        return
    no_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(no_cuda)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's cache of decoded data, shared by every test that builds a task or runs
    one: decoding CIFAR-10's 60,000 JPEGs takes tens of seconds, once."""
    return tmp_path_factory.getbasetemp() / "cache"


@pytest.fixture(autouse=True)
def _offline_environment(monkeypatch: pytest.MonkeyPatch, data_cache: Path) -> None:
    monkeypatch.setenv(
        "YFBENCH_DATA_DIR", os.environ.get("YFBENCH_TEST_DATA_DIR", str(SHARED_DATA))
    )
    monkeypatch.setenv("YFBENCH_CACHE_DIR", str(data_cache))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"offline data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def quadratic_config() -> DictConfig:
    """The composed config of a short noisy-quadratic run (12 steps, evaluated every 4):
    the fastest real run, for engine tests; adjust it with ``open_dict``."""
    return compose(
        ["task=noisy_quadratic", "task.dim=50", "trainer.max_steps=12", "trainer.eval_every=4"]
    )


@pytest.fixture
def build_tiny_task(shared_data: Path, data_cache: Path) -> Callable[..., Task]:
    """``build_tiny_task(name, seed=1, overrides=(), rank=0, world_size=1)``: the task
    ``name`` at CPU scale with :data:`TINY_TASK_OVERRIDES`, on the CPU."""

    def build(
        name: str,
        seed: int = 1,
        overrides: Sequence[str] = (),
        rank: int = 0,
        world_size: int = 1,
    ) -> Task:
        tiny = TINY_TASK_OVERRIDES.get(name, [])
        cfg = compose([f"task={name}", "scale=cpu", *tiny, *overrides])
        ctx = TaskContext(
            seed=seed,
            device=torch.device("cpu"),
            data_dir=shared_data,
            cache_dir=data_cache,
            rank=rank,
            world_size=world_size,
        )
        return build_task(cfg.task, ctx)

    return build
