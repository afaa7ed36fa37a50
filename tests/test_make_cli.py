"""The Makefile and scripts fail loudly: a second stage without a tuned point, a bad
SEEDS/JOBS/THREADS, failing CUDA tests; and the CLI's bad input is one message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import compose_config, run_cli
from yfbench.engine.trainer import run
from yfbench.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def _fake_python(tmp_path: Path, answers: dict[str, str]) -> tuple[Path, Path]:
    """A stand-in for .venv/bin/python that logs its arguments; ``answers`` maps a module
    and subcommand (``"yfbench.analysis tuned"``) to the shell its call runs."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    cases = "".join(f'  "{call}") {body} ;;\n' for call, body in answers.items())
    fake.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {log}\ncase "$2 $3" in\n{cases}esac\nexit 0\n'
    )
    fake.chmod(0o755)
    return fake, log


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-o", ".venv/.installed", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_make
@pytest.mark.parametrize(
    "tuned",
    [
        'echo "error: the tuned adam runs were not started with grid_point" >&2; exit 2',
        "exit 0",  # printed nothing
    ],
    ids=["tuned_fails", "tuned_prints_nothing"],
)
def test_the_second_stage_fails_when_no_tuned_point_is_found(tmp_path, tuned):
    fake, log = _fake_python(tmp_path, {"yfbench.analysis tuned": tuned})
    result = _make("reproduce-ptb", f"PY={fake}", "SCALE=testscale")
    assert result.returncode != 0
    assert "reproduce-ptb: no tuned grid point" in result.stderr
    calls = log.read_text().splitlines()
    sweeps = [c for c in calls if c.startswith("-m yfbench -m")]
    assert len(sweeps) == 1 and "seed=1" in sweeps[0]  # the first stage only
    assert not any("grid_point=" in c for c in calls)
    assert not any("compress_runs" in c for c in calls)


@needs_make
def test_the_second_stage_gets_the_tuned_points_quoted(tmp_path):
    fake, log = _fake_python(tmp_path, {"yfbench.analysis tuned": "echo adam_lr1e-3,yellowfin"})
    result = _make("reproduce-ptb", f"PY={fake}", "SCALE=testscale", "SEEDS=2,3,4")
    assert result.returncode == 0, result.stderr
    second = [c for c in log.read_text().splitlines() if "grid_point=" in c]
    assert len(second) == 1 and "seed=2,3,4 grid_point=adam_lr1e-3,yellowfin" in second[0]


def _claims_python(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in python for the claims targets: it logs its arguments and names tuned
    points (the lr-robustness grid lacks seeds 2 and 3 at two points, seed 4 at a third)."""
    return _fake_python(
        tmp_path,
        {
            "yfbench.analysis tuned": "echo adam_lr1e-2,yellowfin_open_loop,yellowfin_closed_loop",
            "yfbench.analysis.lr_robustness missing": (
                '[ "$6" = 2,3,4 ] && printf "2,3 adam_lr1e-2,yellowfin\\n4 adam_lr1e-3\\n"'
            ),
            "yfbench.analysis.adaptive_clipping tuned": (
                'echo "grid_point=momentum_sgd_lr1e-1 task.grad_clip_norm=1.0"'
            ),
        },
    )


@needs_make
def test_the_claims_tune_on_seed_1_and_evaluate_on_claim_seeds_only(tmp_path):
    fake, log = _claims_python(tmp_path)
    targets = ["asynchrony-noisy_quadratic", "lr-robustness-ptb", "clipping"]
    result = _make(*targets, f"PY={fake}", "SCALE=testscale")
    assert result.returncode == 0, result.stderr
    sweeps = [c for c in log.read_text().splitlines() if c.startswith("-m yfbench -m")]

    def of(experiment: str) -> list[str]:
        return [c for c in sweeps if f"experiment={experiment} " in c]

    grid, tuned, sync = of("asynchrony_noisy_quadratic")
    assert " seed=1 " in grid and "grid_point" not in grid  # every grid point, seed 1
    assert "seed=2,3,4 " in tuned
    assert "grid_point=adam_lr1e-2,yellowfin_open_loop,yellowfin_closed_loop" in tuned
    assert "seed=1,2,3,4 grid_point=yellowfin trainer.staleness=0" in sync
    # lr robustness: the new points and the grid's points lacking a seed, on 2,3,4 only.
    new, lacking_two, lacking_one = of("lr_robustness_ptb")
    assert "seed=2,3,4 " in new and "grid_point" not in new
    assert "seed=2,3 " in lacking_two and "grid_point=adam_lr1e-2,yellowfin" in lacking_two
    assert "seed=4 " in lacking_one and "grid_point=adam_lr1e-3" in lacking_one
    grid, tuned, yellowfin = of("clipping_pixel_lstm")
    assert " seed=1 " in grid and "grid_point" not in grid
    assert (
        "seed=2,3,4 " in tuned and "grid_point=momentum_sgd_lr1e-1 task.grad_clip_norm=1.0" in tuned
    )
    assert (
        "seed=1,2,3,4 " in yellowfin
        and "grid_point=yellowfin,yellowfin_no_adaptive_clip" in yellowfin
    )


@needs_make
def test_the_bracket_check_probes_on_seed_1_and_runs_lower_probes_on_the_peer_seeds(tmp_path):
    fake, log = _fake_python(
        tmp_path,
        {
            "yfbench.analysis tuned": "echo adam_lr1e-2,yellowfin",
            "yfbench.analysis.bracket probes": "echo adam_lr3e-3,adam_lr3e-2,momo_lr30",
            "yfbench.analysis.bracket lower": "echo adam_lr3e-3",
        },
    )
    result = _make("peers-bracket-ptb", f"PY={fake}", "SCALE=testscale", "PEER_SEEDS=2,3,4")
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    probes = [c for c in calls if "bracket_runs/ptb_lstm/testscale" in c and "-m yfbench -m" in c]
    assert len(probes) == 2
    assert "seed=1 grid_point=adam_lr3e-3,adam_lr3e-2,momo_lr30" in probes[0]
    assert "seed=2,3,4 grid_point=adam_lr3e-3" in probes[1]
    [table] = [c for c in calls if c.startswith("-m yfbench.analysis.bracket results/")]
    assert "--probe-runs results/peers/bracket_runs --out results/peers" in table


@needs_make
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("SEEDS=2;touch pwned", "SEEDS must be comma-separated seeds"),
        ("CLAIM_SEEDS=2;touch pwned", "CLAIM_SEEDS must be comma-separated seeds"),
        ("SEEDS=2 3", "SEEDS must be comma-separated seeds"),
        ("JOBS=0", "JOBS must be a positive integer"),
        ("JOBS=$(id)", "JOBS must be a positive integer"),
        ("THREADS=2 hydra.x=1", "THREADS must be a positive integer"),
    ],
)
def test_bad_make_variables_are_refused_before_any_recipe(tmp_path, setting, message):
    fake, log = _fake_python(tmp_path, {})
    result = _make("reproduce-ptb", f"PY={fake}", setting)
    assert result.returncode != 0 and message in result.stderr
    assert not log.exists() and not (REPO_ROOT / "pwned").exists()


def test_gpu_check_fails_when_the_cuda_tests_fail(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1" = -c ]; then echo Fake_GPU; exit 0; fi\n'  # the device query
        'if [ "$2" = pytest ]; then echo "1 failed"; exit 1; fi\n'  # the CUDA tests
        "exit 0\n"  # the benchmarks
    )
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", "scripts/gpu_check.sh"],
        cwd=REPO_ROOT,
        env={**os.environ, "PY": str(fake), "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "gpu_check: FAILED: cuda_tests" in result.stderr
    assert "1 failed" in (tmp_path / "results/perf/cuda_Fake_GPU_tests.txt").read_text()


# ---------------------------------------------------------------- the CLI
@pytest.mark.parametrize("seed", [2**63, 2**32, -1])
def test_a_seed_out_of_range_is_one_message(seed, tmp_path):
    with pytest.raises(UserError, match="seed must be an integer"):
        run(compose_config(["task=noisy_quadratic", f"seed={seed}"]), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"


def test_a_huge_seed_on_the_command_line_is_one_message(tmp_path, run_main):
    result = run_main(["task=noisy_quadratic", f"seed={2**63}", f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "seed must be an integer" in result.stderr


def test_a_full_disk_under_the_log_file_prints_no_logging_traceback(tmp_path):
    """/dev/full fails every write with ENOSPC, as the run's log file does on a full disk;
    a real process, since logging flushes the file again at the interpreter's exit."""
    result = run_cli(
        [
            "task=noisy_quadratic",
            "trainer.max_steps=12",
            "hydra.job_logging.handlers.file.filename=/dev/full",
            f"hydra.run.dir={tmp_path}",
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "Logging error" not in result.stderr and "Traceback" not in result.stderr


def test_a_sweep_status_file_on_a_full_disk_is_one_logged_line(monkeypatch, caplog):
    from yfbench.hydra_callbacks import STATUS_ENV, report_to_sweep

    monkeypatch.setenv(STATUS_ENV, "/dev/full")  # every write fails with ENOSPC
    report_to_sweep(Path("runs/x"), "completed", None)  # no traceback: one line
    assert "cannot record this run's outcome in /dev/full" in caplog.text
