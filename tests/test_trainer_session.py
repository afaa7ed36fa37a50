"""A session of the trainer: stop signals from the first moment, long runs on a CPU."""

from __future__ import annotations

import os
import signal

import pytest
from omegaconf import OmegaConf, open_dict

from tests.helpers import compose_config, records, summary
from yfbench.config import semantic_config
from yfbench.engine.progress import LongRunOnCpu
from yfbench.engine.trainer import run
from yfbench.tasks import TASKS
from yfbench.tasks.noisy_quadratic import build as build_quadratic


def build_signalled_during_setup(cfg, ctx):
    """The quadratic, after SIGUSR2 arrived while its data was being read."""
    os.kill(os.getpid(), signal.SIGUSR2)
    return build_quadratic(cfg, ctx)


def test_a_signal_during_set_up_is_recorded_as_interrupted(tmp_path, quadratic_config, monkeypatch):
    leaked = []  # the signal reaching the test's own handler: the trainer did not catch it
    monkeypatch.setitem(TASKS, "signalled", f"{__name__}:build_signalled_during_setup")
    previous = signal.signal(signal.SIGUSR2, lambda *_: leaked.append(True))
    try:
        with open_dict(quadratic_config):
            quadratic_config.task.name = "signalled"
        result = run(quadratic_config, tmp_path)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert not leaked
    assert result["status"] == "interrupted" and result["steps"] == 0
    assert "SIGUSR2 during set-up" in result["error"]
    assert summary(tmp_path)["status"] == "interrupted"
    assert records(tmp_path) == []


def test_a_long_run_on_a_cpu_is_warned_about_and_estimated_in_its_own_length(tmp_path, caplog):
    cfg = compose_config(
        ["task=noisy_quadratic", "task.dim=50", "trainer.max_steps=30", "trainer.long_run=true"]
    )
    assert cfg.trainer.checkpoint_every == 0
    assert run(cfg, tmp_path)["status"] == "completed"
    assert "a long run (trainer.long_run" in caplog.text
    # 30 steps: no checkpoints forced on it, and the estimate is in minutes, not "hours".
    assert "checkpointing every" not in caplog.text
    assert "minutes more on this CPU (0 of 30 steps left)" in caplog.text


def test_a_long_run_of_more_than_1000_steps_is_checkpointed(caplog):
    trainer = OmegaConf.create({"checkpoint_every": 0})
    LongRunOnCpu(max_steps=21150).warn(trainer)
    assert trainer.checkpoint_every == 1000
    assert "checkpointing every 1000 steps" in caplog.text


@pytest.mark.parametrize(("scale", "long_run"), [("cpu", False), ("paper", True)])
def test_long_run_comes_from_the_scale_and_is_not_part_of_a_run_identity(scale, long_run):
    cfg = compose_config(["task=noisy_quadratic", f"scale={scale}"])
    assert cfg.trainer.long_run is long_run
    assert "long_run" not in semantic_config(cfg)["trainer"]


def test_the_recorded_command_has_no_absolute_path_below_the_working_directory(monkeypatch):
    from yfbench.engine.environment import command_line

    here = os.getcwd()
    monkeypatch.setattr("sys.argv", ["yfbench/__main__.py", f"hydra.run.dir={here}/runs/a"])
    assert command_line() == "python -m yfbench hydra.run.dir=runs/a"
