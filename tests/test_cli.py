"""End-to-end CLI: run contract, multirun with a divergence, bad input, W&B offline.

What does not depend on the process (records, messages, exit statuses, W&B's files) runs
in-process (the ``run_main`` fixture); the run contract, the fast answer to a mistyped
command and ``--help`` start a real ``python -m yfbench``."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.helpers import REPO_ROOT, compose_config, records, run_cli, summary
from yfbench.engine.trainer import run

QUADRATIC = ["task=noisy_quadratic", "trainer.max_steps=30", "trainer.eval_every=10"]


def test_single_run_writes_the_run_contract(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli([*QUADRATIC, "optimizer=yellowfin", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr
    config = json.loads((run_dir / "run_config.json").read_text())["config"]
    assert config["task"]["name"] == "noisy_quadratic"
    assert config["optimizer"]["name"] == "yellowfin"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line)["step"], int) for line in lines)  # JSON lines
    rows = records(run_dir, drop=())
    train = [r for r in rows if r["split"] == "train"]
    valid = [r for r in rows if r["split"] == "valid"]
    assert [r["step"] for r in train] == list(range(1, 31))
    assert [r["step"] for r in valid] == [10, 20, 30]
    for row in train:
        assert {"loss", "lr", "momentum", "time_s", "h_min", "h_max"} <= row.keys()
    result_summary = summary(run_dir)
    assert result_summary["status"] == "completed"
    assert result_summary["steps"] == 30
    assert result_summary["error"] is None
    assert result_summary["steps_per_s"] > 0 and result_summary["wall_time_s"] > 0
    assert result_summary["final"]["valid_loss"] == valid[-1]["loss"]
    assert result_summary["best"]["loss"] == min(r["loss"] for r in valid)


def test_log_every_controls_train_records(tmp_path):
    assert run(compose_config([*QUADRATIC, "trainer.log_every=7"]), tmp_path)["steps"] == 30
    steps = [r["step"] for r in records(tmp_path) if r["split"] == "train"]
    assert steps == [7, 14, 21, 28, 30]


def test_multirun_survives_a_diverged_run_and_skips_completed_ones(tmp_path, run_main):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *QUADRATIC,
        "optimizer=sgd",
        "optimizer.lr=0.1,1000",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_main(args)
    assert result.returncode == 0, result.stderr
    statuses = {p.parent.name: summary(p.parent)["status"] for p in sweep.rglob("summary.json")}
    assert statuses == {
        "lr0.1-seed1": "completed",
        "lr0.1-seed2": "completed",
        "lr1000-seed1": "diverged",
        "lr1000-seed2": "diverged",
    }
    diverged = summary(sweep / "sgd" / "lr1000-seed1")
    assert diverged["diverged_step"] <= diverged["steps"] < 30
    assert f"(step {diverged['diverged_step']})" in diverged["error"]

    before = (sweep / "sgd" / "lr0.1-seed1" / "metrics.jsonl").read_bytes()
    again = run_main(args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipping") == 4
    assert (sweep / "sgd" / "lr0.1-seed1" / "metrics.jsonl").read_bytes() == before


def _assert_clear_error(result, *fragments: str, max_lines: int = 20) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= max_lines, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_unknown_task_names_the_choices(tmp_path):
    result = run_cli(["task=no_such_task", f"hydra.run.dir={tmp_path}"])
    _assert_clear_error(result, "no_such_task", "noisy_quadratic")


def test_a_command_line_is_checked_before_torch_is_imported():
    """What runs before the config composes (the CLI module, the sweep callbacks) leaves
    torch out, so a mistyped command answers in a second, not after torch's import."""
    probe = "import sys, yfbench.__main__, yfbench.hydra_callbacks; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False", result.stderr


def test_unknown_optimizer_names_the_choices(tmp_path):
    result = run_cli(["optimizer=adamw_typo", f"hydra.run.dir={tmp_path}"])
    # Hydra's message lists every option, one a line: a few lines more than there are options.
    options = len(list((REPO_ROOT / "conf" / "optimizer").glob("*.yaml")))
    _assert_clear_error(result, "adamw_typo", "yellowfin", max_lines=options + 12)


def test_mistyped_key_is_rejected(tmp_path, run_main):
    result = run_main([*QUADRATIC, "trainer.max_step=5", f"hydra.run.dir={tmp_path}"])
    _assert_clear_error(result, "max_step")


def test_negative_step_count_is_rejected(tmp_path, run_main):
    result = run_main(["task=noisy_quadratic", "trainer.max_steps=-3", f"hydra.run.dir={tmp_path}"])
    _assert_clear_error(result, "trainer.max_steps", "-3")
    assert summary(tmp_path)["status"] == "failed"


def test_bad_optimizer_value_is_rejected(tmp_path, run_main):
    result = run_main([*QUADRATIC, "optimizer.momentum=1.5", f"hydra.run.dir={tmp_path}"])
    _assert_clear_error(result, "momentum", "1.5")


def test_missing_data_directory_names_file_and_fix(tmp_path, run_main):
    result = run_main(
        ["task=tinyshakespeare_lstm", "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'run'}"],
        env={"YFBENCH_DATA_DIR": str(tmp_path / "nowhere"), "YFBENCH_OFFLINE": "1"},
    )
    _assert_clear_error(result, "input.txt", "YFBENCH_DATA_DIR")


def test_help_lists_config_groups():
    result = run_cli(["--help"])
    assert result.returncode == 0
    for group in ("task:", "optimizer:", "scale:", "trainer:", "logger:"):
        assert group in result.stdout
    assert "yellowfin" in result.stdout and "tinyshakespeare_lstm" in result.stdout


def test_wandb_offline_run_is_created(tmp_path):
    assert run(compose_config([*QUADRATIC, "logger=wandb"]), tmp_path)["status"] == "completed"
    offline_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert offline_runs, list(tmp_path.rglob("*"))
    assert any(offline_runs[0].rglob("*.wandb"))


def test_wall_time_is_not_double_counted_across_checkpoints(tmp_path, run_main):
    run_dir = tmp_path / "run"
    args = [*QUADRATIC, "trainer.checkpoint_every=5", f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    assert run_main(args).returncode == 0
    elapsed = time.perf_counter() - started
    times = [r["time_s"] for r in records(run_dir, drop=()) if r["split"] == "train"]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert times[-1] <= summary(run_dir)["wall_time_s"] <= times[-1] + 1.0
    assert summary(run_dir)["wall_time_s"] < elapsed  # start-up excluded, nothing counted twice


def test_a_corrected_config_can_reuse_the_run_directory(tmp_path, run_main):
    bad = run_main(["task=noisy_quadratic", "trainer.max_steps=0", f"hydra.run.dir={tmp_path}"])
    assert bad.returncode == 2 and summary(tmp_path)["status"] == "failed"
    good = run_main(["task=noisy_quadratic", "trainer.max_steps=5", f"hydra.run.dir={tmp_path}"])
    assert good.returncode == 0, good.stderr
    assert summary(tmp_path)["status"] == "completed"


def test_a_finished_run_is_not_skipped_under_another_config(tmp_path, run_main):
    assert run_main([*QUADRATIC, f"hydra.run.dir={tmp_path}"]).returncode == 0
    result = run_main([*QUADRATIC, "task.noise_std=0.5", f"hydra.run.dir={tmp_path}"])
    _assert_clear_error(result, "different config", "task.noise_std")
    assert summary(tmp_path)["status"] == "completed"


def test_bad_device_is_a_clear_error(tmp_path, run_main):
    result = run_main([*QUADRATIC, "trainer.device=gpu", f"hydra.run.dir={tmp_path}"])
    _assert_clear_error(result, "trainer.device", "gpu")
    assert summary(tmp_path)["status"] == "failed"
