"""Shared fixtures: offline environment, composed configs, tiny tasks, device markers.

Tests read real data from ../shared/data and never touch the network or W&B servers.
A test composes configs with :func:`yfbench.config.compose` (``tests.helpers.compose_config``)
or takes ``quadratic_config``, and builds tasks with ``build_tiny_task``; no test file
initialises Hydra itself.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
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


CliCall = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_main(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliCall:
    """``run_main(args, env=None)``: ``python -m yfbench ARGS`` in this process, as
    ``yfbench.__main__.main()`` with that command line; returns its exit status and what
    it printed, as ``tests.helpers.run_cli`` does. For tests of what a run does and says;
    ``run_cli`` starts a real interpreter (seconds of torch's import on a busy machine)
    where the process is the subject: its start-up, a signal, the module's own exit path.
    What main() changes process-wide is put back: logging, torch's threads, and subnormal
    flushing (off, torch's default, which every run without trainer.flush_denormal sets)."""
    from yfbench import __main__ as cli

    def call(args: Sequence[str], env: dict[str, str] | None = None):
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(REPO_ROOT)
        monkeypatch.setattr(sys, "argv", ["yfbench", *args])
        root = logging.getLogger()
        handlers, level, raise_exceptions = root.handlers[:], root.level, logging.raiseExceptions
        threads = torch.get_num_threads()
        capfd.readouterr()
        try:
            cli.main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        finally:
            for handler in set(root.handlers) - set(handlers):
                handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
            logging.raiseExceptions = raise_exceptions
            logging.captureWarnings(False)
            torch.set_num_threads(threads)
            torch.set_flush_denormal(False)
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(["python", "-m", "yfbench", *args], code, out, err)

    return call
