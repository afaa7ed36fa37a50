"""Fault injection: kill -9 and resume, signals, corrupt inputs, NaN gradients, failing W&B."""

from __future__ import annotations

import errno
import importlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from tests.helpers import (
    REPO_ROOT,
    TINY_TASK_OVERRIDES,
    compose_config,
    compose_with_hydra,
    records,
    run_cli,
    summary,
)
from yfbench import sweep_signals
from yfbench.__main__ import stop_on_a_full_disk
from yfbench.engine.trainer import run
from yfbench.errors import UserError
from yfbench.hydra_callbacks import STATUS_ENV, RunCallbacks, abandon_sweep
from yfbench.tasks import TASKS
from yfbench.tasks.noisy_quadratic import NoisyQuadratic


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "yfbench", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_lines(
    path: Path, count: int, process: subprocess.Popen, timeout: float = 240
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and len(path.read_bytes().splitlines()) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {count} lines (exit {process.poll()})")


RESUMABLE = [
    # (task, steps, checkpoint_every, extra overrides); a kill -9 of a real process each.
    pytest.param("noisy_quadratic", 1000, 100, ["task.dim=20000"], marks=pytest.mark.slow),
    ("tinyshakespeare_lstm", 300, 50, TINY_TASK_OVERRIDES["tinyshakespeare_lstm"]),
]


@pytest.mark.parametrize(("task", "steps", "every", "extra"), RESUMABLE)
@pytest.mark.parametrize("kill_seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_kill9_then_resume_gives_identical_metrics(
    tmp_path, caplog, task, steps, every, extra, kill_seed
):
    common = [
        f"task={task}",
        "optimizer=yellowfin",
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={every * 2}",
        *extra,
    ]
    reference_dir, crashed_dir = tmp_path / "reference", tmp_path / "crashed"
    assert run(compose_config(common), reference_dir)["status"] == "completed"

    args = [*common, f"trainer.checkpoint_every={every}", f"hydra.run.dir={crashed_dir}"]
    # Past the first checkpoint, and far enough from the end that the kill lands mid-run.
    kill_at = random.Random(kill_seed).randint(every + 1, steps - steps // 10)
    process = _start(args)
    _wait_for_lines(crashed_dir / "metrics.jsonl", kill_at, process)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (crashed_dir / "summary.json").exists()

    # The resume is in-process: what it reads is on disk, whichever process wrote it.
    with caplog.at_level(logging.INFO, logger="yfbench"):
        resumed = run(compose_config([*common, f"trainer.checkpoint_every={every}"]), crashed_dir)
    assert resumed["status"] == "completed"
    assert f"resuming {crashed_dir} from step" in caplog.text
    assert records(crashed_dir) == records(reference_dir)


def test_sigterm_saves_and_records_interrupted_then_resumes(tmp_path):
    common = [
        "task=noisy_quadratic",
        "task.dim=20000",
        "trainer.max_steps=600",
        "trainer.eval_every=150",
    ]
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    assert run(compose_config(common), reference_dir)["status"] == "completed"
    process = _start([*common, f"hydra.run.dir={run_dir}"])
    # Some 400 steps (seconds) before the run would end: the signal lands mid-run.
    _wait_for_lines(run_dir / "metrics.jsonl", 200, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    interrupted = summary(run_dir)
    assert interrupted["status"] == "interrupted" and "SIGTERM" in interrupted["error"]
    assert (run_dir / "checkpoint.pt").exists()
    assert run(compose_config(common), run_dir)["status"] == "completed"
    assert records(run_dir) == records(reference_dir)


# ------------------------------------------------------------- a sweep on a full disk
FULL_DISK = "yfbench: error: cannot write {} ({}): free some space and rerun the same command"


def test_a_sweep_on_a_full_disk_is_one_message_and_leaves_nothing_half_written(tmp_path, run_main):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    # Hydra's own write of the sweep's multirun.yaml (before any run) fails with ENOSPC.
    (sweep_dir / "multirun.yaml").symlink_to("/dev/full")
    grid = ["-m", "task=noisy_quadratic", "trainer.max_steps=2", "seed=1,2"]
    # A process: the full-disk message is the entry point's, around main().
    result = run_cli([*grid, f"hydra.sweep.dir={sweep_dir}"])
    assert result.returncode == 2, result.stderr
    message = FULL_DISK.format(sweep_dir / "multirun.yaml", "No space left on device")
    assert result.stderr.splitlines() == [message]  # no traceback
    assert list(sweep_dir.iterdir()) == []  # no multirun.yaml cut short, no status file, no run


@pytest.fixture
def sweep_started(tmp_path):
    """on_multirun_start has run (status file, signal handlers, environment) for tmp_path."""
    cfg = compose_with_hydra(["task=noisy_quadratic", f"hydra.sweep.dir={tmp_path}"])
    before = {sig: signal.getsignal(sig) for sig in sweep_signals.STOP_SIGNALS}
    RunCallbacks().on_multirun_start(cfg)
    yield OmegaConf.to_yaml(cfg)
    abandon_sweep()  # a no-op where the test's own call undid it
    assert {sig: signal.getsignal(sig) for sig in sweep_signals.STOP_SIGNALS} == before
    assert not {STATUS_ENV, sweep_signals.STOP_ENV, sweep_signals.MAIN_ENV} & set(os.environ)


def _full_disk(filename: str | None = None, code: int = errno.ENOSPC):
    def hydra_write() -> None:
        raise OSError(code, os.strerror(code), *([filename] if filename else []))

    return hydra_write


def test_a_multirun_yaml_cut_short_by_a_full_disk_is_removed(sweep_started, tmp_path, capsys):
    (tmp_path / "multirun.yaml").write_text(sweep_started[:100])  # Hydra stopped there
    with pytest.raises(SystemExit) as stop:
        stop_on_a_full_disk(_full_disk())
    assert stop.value.code == 2
    message = FULL_DISK.format(tmp_path / "multirun.yaml", "No space left on device")
    assert capsys.readouterr().err == message + "\n"
    assert list(tmp_path.iterdir()) == []


def test_a_whole_multirun_yaml_stays_and_the_failed_file_is_named(sweep_started, tmp_path, capsys):
    (tmp_path / "multirun.yaml").write_text(sweep_started)
    job_dir = tmp_path / "sgd" / "lr0.1-seed1"
    with pytest.raises(SystemExit):
        stop_on_a_full_disk(_full_disk(str(job_dir), errno.EDQUOT))
    assert capsys.readouterr().err == FULL_DISK.format(job_dir, "Disk quota exceeded") + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["multirun.yaml"]


def test_only_a_full_disk_is_caught_at_the_entry_point(sweep_started):
    with pytest.raises(PermissionError):
        stop_on_a_full_disk(_full_disk("x", errno.EACCES))
    assert stop_on_a_full_disk(lambda: 3) == 3


def _checkpointed_run(run_dir: Path, steps: int = 10) -> DictConfig:
    """A finished run with a checkpoint, its summary removed: the next run resumes it.

    In-process: how the CLI prints a refusal (one line, exit 2) is tested in test_cli."""
    cfg = compose_config(
        ["task=noisy_quadratic", f"trainer.max_steps={steps}", "trainer.checkpoint_every=5"]
    )
    assert run(cfg, run_dir)["status"] == "completed"
    (run_dir / "summary.json").unlink()
    return cfg


def test_corrupt_checkpoint_is_refused_with_a_clear_message(tmp_path):
    cfg = _checkpointed_run(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02 definitely not a checkpoint")
    with pytest.raises(UserError, match=r"corrupt.*checkpoint\.pt|checkpoint\.pt.*corrupt"):
        run(cfg, tmp_path)


def test_truncated_checkpoint_is_refused(tmp_path):
    cfg = _checkpointed_run(tmp_path)
    checkpoint = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(checkpoint[: len(checkpoint) // 2])
    with pytest.raises(UserError, match="corrupt"):
        run(cfg, tmp_path)


def test_incompatible_checkpoint_is_refused(tmp_path):
    cfg = _checkpointed_run(tmp_path)
    payload = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    payload["model"] = {"x": torch.zeros(3)}  # right run, wrong shapes
    torch.save(payload, tmp_path / "checkpoint.pt")
    with pytest.raises(UserError, match="does not fit"):
        run(cfg, tmp_path)


def test_truncated_data_file_is_refused(tmp_path, shared_data, run_main):
    data = tmp_path / "data"
    shutil.copytree(shared_data / "tinyshakespeare", data / "tinyshakespeare")
    text = data / "tinyshakespeare" / "input.txt"
    text.write_bytes(text.read_bytes()[:1000])
    result = run_main(
        ["task=tinyshakespeare_lstm", "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'run'}"],
        env={"YFBENCH_DATA_DIR": str(data)},
    )
    assert result.returncode == 2
    assert "checksum mismatch" in result.stderr and "input.txt" in result.stderr
    assert "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed" in result.stderr


def test_unwritable_output_directory(tmp_path, run_main):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as a user that ignores directory permissions")
    result = run_main(["task=noisy_quadratic", f"hydra.run.dir={locked / 'run'}"])
    assert result.returncode != 0
    assert "run" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ in-process faults
class _GradientFault(NoisyQuadratic):
    """The quadratic with its gradient replaced by ``fault_value`` on iteration ``fault_step``."""

    fault_step = 7
    fault_value = float("nan")
    _hook = None

    def train_loss(self, module: torch.nn.Module, step: int) -> torch.Tensor:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if step == self.fault_step:
            value = self.fault_value
            self._hook = self.model.x.register_hook(lambda g: torch.full_like(g, value))
        return super().train_loss(module, step)


def build_gradient_fault(cfg, ctx) -> _GradientFault:
    return _GradientFault(cfg.dim, cfg.condition_number, cfg.noise_std, ctx)


@pytest.fixture
def fault_task(monkeypatch):
    monkeypatch.setitem(TASKS, "gradient_fault", f"{__name__}:build_gradient_fault")

    def configure(overrides: list[str]):
        cfg = compose_config(["task=noisy_quadratic", "trainer.max_steps=20", *overrides])
        with open_dict(cfg):
            cfg.task.name = "gradient_fault"
        return cfg

    return configure


def _run_in_process(cfg, run_dir: Path) -> dict:
    return run(cfg, run_dir)


def test_nan_gradient_is_skipped_by_yellowfin_and_logged(tmp_path, fault_task):
    result = _run_in_process(fault_task(["optimizer=yellowfin"]), tmp_path)
    assert result["status"] == "completed"
    train = [r for r in records(tmp_path) if r["split"] == "train"]
    assert [r["skipped_steps"] for r in train[6:9]] == [0, 1, 1]
    assert all(isinstance(r["loss"], float) for r in train)


def test_nan_gradient_diverges_momentum_sgd_with_the_step(tmp_path, fault_task):
    result = _run_in_process(fault_task(["optimizer=momentum_sgd"]), tmp_path)
    assert result["status"] == "diverged"
    assert "step 8" in result["error"] or "step 9" in result["error"]


def test_fp16_overflow_is_skipped_before_yellowfin(tmp_path, fault_task):
    _GradientFault.fault_value = float("inf")
    try:
        cfg = fault_task(["optimizer=yellowfin", "trainer.precision=fp16"])
        result = _run_in_process(cfg, tmp_path / "fp16")
    finally:
        _GradientFault.fault_value = float("nan")
    assert result["status"] == "completed"
    train = [r for r in records(tmp_path / "fp16") if r["split"] == "train"]
    # The scaler dropped the overflowing step: YellowFin never saw it, so nothing was skipped
    # inside YellowFin and its lr/momentum did not move on that iteration.
    assert all(r["skipped_steps"] == 0 for r in train)
    assert train[7]["lr"] == train[6]["lr"] and train[7]["grad_norm_sq"] == train[6]["grad_norm_sq"]


def test_fp16_scaler_hands_yellowfin_unscaled_gradients(tmp_path):
    overrides = ["task=noisy_quadratic", "trainer.max_steps=15", "optimizer=yellowfin"]
    fp32 = run(compose_config(overrides), tmp_path / "fp32")
    fp16 = run(compose_config([*overrides, "trainer.precision=fp16"]), tmp_path / "fp16")
    assert fp32["status"] == fp16["status"] == "completed"
    a = [r for r in records(tmp_path / "fp32") if r["split"] == "train"]
    b = [r for r in records(tmp_path / "fp16") if r["split"] == "train"]
    for x, y in zip(a, b, strict=True):
        assert y["grad_norm_sq"] == pytest.approx(x["grad_norm_sq"], rel=1e-4)


def test_failing_wandb_warns_and_jsonl_survives(tmp_path, monkeypatch, caplog):
    import wandb

    def broken_init(*args, **kwargs):
        raise RuntimeError("simulated W&B outage")

    monkeypatch.setattr(wandb, "init", broken_init)
    cfg = compose_config(["task=noisy_quadratic", "trainer.max_steps=10", "logger=wandb"])
    result = run(cfg, tmp_path)
    assert result["status"] == "completed"
    assert "W&B unavailable" in caplog.text
    assert len([r for r in records(tmp_path) if r["split"] == "train"]) == 10


class _Crash(Exception):
    """Stands in for a crash between two checkpoints."""


@pytest.mark.parametrize(
    ("task", "extra"),
    [
        ("cifar10_resnet", TINY_TASK_OVERRIDES["cifar10_resnet"]),
        ("ptb_lstm", TINY_TASK_OVERRIDES["ptb_lstm"]),
        # Small, with its dropout: the RNG state must be restored exactly.
        ("wsj_parse_lstm", ["task.model.hidden_size=16", "task.model.embed_size=16"]),
        ("tinyshakespeare_lstm", TINY_TASK_OVERRIDES["tinyshakespeare_lstm"]),
        # Simulated asynchrony: the stale-gradient queue and closed-loop state are resumed too.
        ("noisy_quadratic", ["trainer=async", "optimizer=yellowfin_closed_loop"]),
    ],
)
def test_every_task_resumes_exactly_after_a_crash(tmp_path, monkeypatch, task, extra):
    overrides = [
        f"task={task}",
        "optimizer=yellowfin",
        "trainer.max_steps=12",
        "trainer.eval_every=6",
        "trainer.checkpoint_every=5",
        *extra,
    ]
    cfg = compose_config(overrides)
    assert run(cfg, tmp_path / "reference")["status"] == "completed"

    module_name, builder_name = TASKS[task].split(":")
    real_builder = getattr(importlib.import_module(module_name), builder_name)

    def crashing_builder(task_cfg, ctx):
        built = real_builder(task_cfg, ctx)
        train_loss = built.train_loss

        def train_loss_or_crash(module: torch.nn.Module, step: int) -> torch.Tensor:
            if step == 8:
                raise _Crash(f"simulated crash at step {step}")
            return train_loss(module, step)

        built.train_loss = train_loss_or_crash
        return built

    module = importlib.import_module(module_name)
    monkeypatch.setattr(module, builder_name, crashing_builder)
    with pytest.raises(_Crash):
        run(cfg, tmp_path / "crashed")
    assert summary(tmp_path / "crashed")["status"] == "failed"
    monkeypatch.setattr(module, builder_name, real_builder)

    assert run(cfg, tmp_path / "crashed")["status"] == "completed"
    assert records(tmp_path / "crashed") == records(tmp_path / "reference")


def test_a_run_directory_in_use_is_refused(tmp_path):
    import fcntl

    cfg = compose_config(["task=noisy_quadratic", "trainer.max_steps=3"])
    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="in use by another yfbench process"):
            run(cfg, tmp_path)
    assert run(cfg, tmp_path)["status"] == "completed"


def test_yellowfin_skipping_every_step_is_recorded_as_diverged(tmp_path, fault_task, monkeypatch):
    monkeypatch.setattr(_GradientFault, "fault_step", None)
    original = _GradientFault.train_loss

    def always_nan(self, module: torch.nn.Module, step: int) -> torch.Tensor:
        self.fault_step = step
        return original(self, module, step)

    monkeypatch.setattr(_GradientFault, "train_loss", always_nan)
    result = run(fault_task(["optimizer=yellowfin", "trainer.max_steps=200"]), tmp_path)
    assert result["status"] == "diverged"
    assert "skipped every step" in result["error"]


def test_wall_time_counts_every_second_once_across_checkpoints(tmp_path, monkeypatch):
    import itertools

    from yfbench.engine import clock

    ticks = itertools.count()  # a clock that advances 1 ms per reading
    monkeypatch.setattr(clock.time, "perf_counter", lambda: next(ticks) / 1000)
    cfg = compose_config(
        ["task=noisy_quadratic", "trainer.max_steps=200", "trainer.checkpoint_every=20"]
    )
    result = run(cfg, tmp_path)
    times = [r["time_s"] for r in records(tmp_path, drop=()) if r["split"] == "train"]
    increments = [b - a for a, b in zip(times, times[1:], strict=False)]
    # A checkpoint costs a few readings; counting earlier time again would jump by seconds.
    assert 0 < min(increments) and max(increments) <= 0.01
    assert times[-1] <= result["wall_time_s"] <= times[-1] + 0.01
