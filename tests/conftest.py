"""Tests read real data from ../shared/data and never touch the network or W&B servers."""

import os
from pathlib import Path

import pytest
import torch

# Two busy cores: one intra-op thread per process is both faster and steadier.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _offline_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    monkeypatch.setenv(
        "YFBENCH_DATA_DIR", os.environ.get("YFBENCH_TEST_DATA_DIR", str(SHARED_DATA))
    )
    monkeypatch.setenv("YFBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"offline data not found at {SHARED_DATA}")
    return SHARED_DATA
