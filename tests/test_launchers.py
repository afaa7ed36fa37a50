"""Sweeps through Hydra's launchers: the SLURM config, submitit (local and a stand-in
SLURM), and joblib.

A launcher only decides where each run's process runs. Whichever it is, every run must
write its run contract into the run directory a plain sweep would use, and the sweep must
end with yfbench's summary line, exiting non-zero when a run failed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf.errors import InterpolationValidationError

from tests.helpers import compose_with_hydra, records, run_cli, run_config, summary, sweep_runs

# A grid point takes about a second; the rest is each job's interpreter importing torch
# on two shared cores.
SWEEP_TIMEOUT_S = 300
STEPS = 20
GRID = ["task=noisy_quadratic", "optimizer=sgd", f"trainer.max_steps={STEPS}"]
LRS = ("0.01", "0.1")
RUNS = {f"sgd/lr{lr}-seed1" for lr in LRS}
SUMMARY_LINE = "[yfbench] sweep finished: 2 runs: 2 completed"
LOCAL_LAUNCHERS = {
    "submitit_local": ["hydra/launcher=submitit_local"],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}
# Module-scoped sweeps start before conftest's per-test environment, so they pass it.
QUIET_ENV = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
SLURM_ENV = {
    "YFBENCH_SLURM_PARTITION": "gpu-long",
    "YFBENCH_SLURM_ACCOUNT": "yellowfin",
    "YFBENCH_SLURM_QOS": "normal",
    "YFBENCH_SLURM_TIME_MIN": "90",
    "YFBENCH_SLURM_GPUS": "2",
    "YFBENCH_SLURM_CPUS": "8",
    "YFBENCH_SLURM_MEM_GB": "48",
    "YFBENCH_SLURM_ARRAY_PARALLELISM": "1",
}
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


@dataclass
class Sweep:
    """One ``python -m yfbench -m ...`` sweep: its process and its directory."""

    launcher: str
    result: subprocess.CompletedProcess[str]
    sweep_dir: Path


def run_sweep(
    sweep_dir: Path, lrs: tuple[str, ...], launcher: list[str], env: dict[str, str] | None = None
) -> Sweep:
    """The sgd grid over ``lrs`` through ``launcher`` into ``sweep_dir``."""
    args = ["-m", *GRID, f"optimizer.lr={','.join(lrs)}", *launcher]
    result = run_cli(
        [*args, f"hydra.sweep.dir={sweep_dir}"],
        env={**QUIET_ENV, **(env or {})},
        timeout=SWEEP_TIMEOUT_S,
    )
    return Sweep(launcher[0].split("=")[1], result, sweep_dir)


def assert_run_contract(run_dir: Path, lr: float) -> None:
    """run_config.json with this point's lr, one train record a step, a completed summary."""
    assert run_config(run_dir)["optimizer"]["lr"] == lr
    train = [row for row in records(run_dir) if row["split"] == "train"]
    assert [row["step"] for row in train] == list(range(1, STEPS + 1))
    result = summary(run_dir)
    assert (result["status"], result["steps"]) == ("completed", STEPS), result


def assert_grid_completed(sweep: Sweep) -> None:
    """Every point of the 2-point grid ran in its usual run directory, and was reported."""
    assert sweep.result.returncode == 0, sweep.result.stdout + sweep.result.stderr
    runs = sweep_runs(sweep.sweep_dir)
    assert set(runs) == RUNS
    for lr in LRS:
        assert_run_contract(runs[f"sgd/lr{lr}-seed1"], float(lr))
    assert SUMMARY_LINE in sweep.result.stdout.splitlines(), sweep.result.stdout


# ---------------------------------------------------------------- the SLURM launcher config
def test_plugin_slurm_launcher_composes():
    launcher = compose_with_hydra(["hydra/launcher=submitit_slurm"]).hydra.launcher
    assert launcher._target_ == SLURM_LAUNCHER
    assert launcher.submitit_folder == "runs/tinyshakespeare_lstm/cpu/.submitit/%j"


def test_yfbench_slurm_defaults(monkeypatch):
    for name in SLURM_ENV:
        monkeypatch.delenv(name, raising=False)
    cfg = compose_with_hydra(
        ["experiment=tinyshakespeare_speedup", "scale=paper", "hydra/launcher=yfbench_slurm"]
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == SLURM_LAUNCHER
    expected = {
        "partition": None,
        "account": None,
        "qos": None,
        "timeout_min": 1440,
        "gpus_per_node": 1,
        "cpus_per_task": 4,
        "mem_gb": 32,
        "array_parallelism": 32,
        "tasks_per_node": 1,
        "nodes": 1,
        "name": "yfbench_tinyshakespeare_lstm_paper",
        "submitit_folder": "runs/tinyshakespeare_lstm/paper/.submitit/%j",
    }
    assert {key: launcher[key] for key in expected} == expected


def test_yfbench_slurm_reads_the_environment(monkeypatch):
    for name, value in SLURM_ENV.items():
        monkeypatch.setenv(name, value)
    launcher = compose_with_hydra(["hydra/launcher=yfbench_slurm"]).hydra.launcher
    got = {key: launcher[key] for key in ("partition", "account", "qos")}
    assert got == {"partition": "gpu-long", "account": "yellowfin", "qos": "normal"}
    numbers = ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "array_parallelism")
    assert [launcher[key] for key in numbers] == [90, 2, 8, 48, 1]


def test_yfbench_slurm_null_gpus_requests_none(monkeypatch):
    """A CPU-only run: no GPU request at all (``--gpus-per-node=0`` is not portable)."""
    monkeypatch.setenv("YFBENCH_SLURM_GPUS", "null")
    launcher = compose_with_hydra(["hydra/launcher=yfbench_slurm"]).hydra.launcher
    assert launcher.gpus_per_node is None


def test_yfbench_slurm_command_line_beats_environment(monkeypatch):
    monkeypatch.setenv("YFBENCH_SLURM_PARTITION", "from-env")
    overrides = ["hydra/launcher=yfbench_slurm", "hydra.launcher.partition=from-cli"]
    assert compose_with_hydra(overrides).hydra.launcher.partition == "from-cli"


def test_yfbench_slurm_bad_number_names_the_key(monkeypatch):
    monkeypatch.setenv("YFBENCH_SLURM_CPUS", "four")
    launcher = compose_with_hydra(["hydra/launcher=yfbench_slurm"]).hydra.launcher
    with pytest.raises(InterpolationValidationError, match="cpus_per_task"):
        _ = launcher.cpus_per_task


@pytest.mark.parametrize("launcher", ["submitit_local", "submitit_slurm", "yfbench_slurm"])
def test_launchers_keep_the_run_directories(launcher):
    """Results of a cluster sweep land where a local sweep's would: sweep dir and subdir."""
    overrides = ["experiment=ptb_speedup", "scale=paper", "grid_point=adam_lr1e-3"]
    plain = compose_with_hydra(overrides).hydra.sweep
    launched = compose_with_hydra([*overrides, f"hydra/launcher={launcher}"]).hydra.sweep
    assert (launched.dir, launched.subdir) == (plain.dir, plain.subdir)
    assert (plain.dir, plain.subdir) == ("runs/ptb_lstm/paper", "adam/lr0.001-seed1")


# ---------------------------------------------------------------- real local grids
@pytest.fixture(
    scope="module",
    # submitit's local launcher is slow; the stand-in SLURM below runs submitit in make test.
    params=[pytest.param("submitit_local", marks=pytest.mark.slow), "joblib"],
)
def grid(request, tmp_path_factory) -> Sweep:
    """The 2-point grid plus a point that fails (lr -1) through each local launcher, once
    for the tests below: one sweep shows both the runs' contract and the failure's report."""
    sweep_dir = tmp_path_factory.mktemp(request.param) / "sweep"
    return run_sweep(sweep_dir, (*LRS, "-1"), LOCAL_LAUNCHERS[request.param])


def test_grid_runs_write_their_run_contract(grid: Sweep):
    runs = sweep_runs(grid.sweep_dir)
    assert set(runs) == {*RUNS, "sgd/lr-1-seed1"}
    for lr in LRS:
        assert_run_contract(runs[f"sgd/lr{lr}-seed1"], float(lr))


def test_grid_runs_record_a_yfbench_command(grid: Sweep):
    """summary.json's ``command`` says how to rerun, even where a job's argv is submitit's."""
    for run_dir in sweep_runs(grid.sweep_dir).values():
        assert summary(run_dir)["command"].startswith("python -m yfbench"), run_dir


def test_a_failed_point_fails_the_sweep_and_is_listed(grid: Sweep):
    """Under every local launcher a failed point makes the sweep exit 1 and is listed with
    its error, beside the completed points."""
    output = grid.result.stdout
    assert grid.result.returncode == 1, output + grid.result.stderr
    lines = output.splitlines()
    assert "[yfbench] sweep finished: 3 runs: 2 completed, 1 failed" in lines, output
    failed = [line for line in lines if line.startswith("[yfbench]   failed: ")]
    assert failed == [
        f"[yfbench]   failed: {grid.sweep_dir}/sgd/lr-1-seed1: bad optimizer settings for "
        "'sgd': Invalid learning rate: -1"
    ]
    assert summary(sweep_runs(grid.sweep_dir)["sgd/lr-1-seed1"])["status"] == "failed"


# ---------------------------------------------------------------- a stand-in SLURM
# sbatch keeps the batch script, answers with a job id and runs the array's tasks one
# after another in the background, with the variables SLURM sets; srun runs its command.
# submitit moves each task's pickle into place only after sbatch has answered, so the
# tasks must not run before it returns (they wait up to 60 s for the pickle).
FAKE_SBATCH = """#!{python}
import os, re, subprocess, sys
from pathlib import Path

STATE = Path(os.environ["FAKE_SLURM_DIR"])


def submit(script):
    job_id = str(os.getpid())
    kept = STATE / f"{{job_id}}.sbatch"
    kept.write_text(Path(script).read_text())
    log = open(STATE / f"{{job_id}}.runner.log", "w")
    subprocess.Popen([sys.executable, __file__, "--run", str(kept), job_id],
                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                     start_new_session=True)
    print(f"Submitted batch job {{job_id}}")


def run(script, job_id):
    array = re.search(r"^#SBATCH --array=0-([0-9]+)", Path(script).read_text(), re.M)
    for task in range(int(array.group(1)) + 1 if array else 1):
        env = dict(os.environ, SLURM_JOB_ID=f"{{job_id}}{{task}}", SLURM_ARRAY_JOB_ID=job_id,
                   SLURM_ARRAY_TASK_ID=str(task), SLURM_NTASKS="1", SLURM_JOB_NUM_NODES="1",
                   SLURM_NODEID="0", SLURM_PROCID="0", SLURM_LOCALID="0",
                   SLURM_JOB_NODELIST="localhost")
        with open(STATE / f"{{job_id}}_{{task}}.out", "w") as out:
            code = subprocess.call(["bash", script], env=env, stdout=out, stderr=out)
        with open(STATE / "sacct", "a") as sacct:
            state = "COMPLETED" if code == 0 else "FAILED"
            sacct.write(f"{{job_id}}_{{task}}|{{state}}|localhost\\n")


if sys.argv[1] == "--run":
    run(sys.argv[2], sys.argv[3])
else:
    submit(sys.argv[-1])
"""
FAKE_SRUN = """#!/bin/bash
while [[ $1 == --* ]]; do
  case $1 in --output|--error) shift 2 ;; *) shift ;; esac
done
exec "$@"
"""
FAKE_SACCT = """#!/bin/bash
echo "JobID|State|NodeList"
cat "$FAKE_SLURM_DIR/sacct" 2>/dev/null || true
"""


def install_fake_slurm(state_dir: Path) -> dict[str, str]:
    """sbatch, srun and sacct stand-ins on PATH; returns the environment that uses them."""
    bin_dir = state_dir / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "sbatch": FAKE_SBATCH.format(python=sys.executable),
        "srun": FAKE_SRUN,
        "sacct": FAKE_SACCT,
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_DIR": str(state_dir)}


def sbatch_flags(script: str) -> dict[str, str]:
    """``#SBATCH --key=value`` lines of a batch script as {key: value}."""
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", script, re.M))


def fake_slurm_logs(state_dir: Path) -> str:
    """The stand-in's task outputs, for a failing assertion's message."""
    return "\n".join(f"== {p.name}\n{p.read_text()}" for p in sorted(state_dir.glob("*.out")))


def test_yfbench_slurm_sweep_submits_one_array_and_fills_the_run_dirs(tmp_path: Path):
    state_dir = tmp_path / "slurm"
    env = {**install_fake_slurm(state_dir), **SLURM_ENV, "YFBENCH_SLURM_GPUS": "null"}
    sweep = run_sweep(tmp_path / "sweep", LRS, ["hydra/launcher=yfbench_slurm"], env=env)
    assert sweep.result.returncode == 0, sweep.result.stderr + fake_slurm_logs(state_dir)

    [script] = [path.read_text() for path in state_dir.glob("*.sbatch")]
    flags = sbatch_flags(script)
    expected = {
        "partition": "gpu-long",
        "account": "yellowfin",
        "qos": "normal",
        "time": "90",
        "cpus-per-task": "8",
        "mem": "48GB",
        "array": "0-1%1",  # 2 points, YFBENCH_SLURM_ARRAY_PARALLELISM at once
        "job-name": "yfbench_noisy_quadratic_cpu",
    }
    assert {key: flags.get(key) for key in expected} == expected, script
    assert "gpus-per-node" not in flags
    assert flags["output"].startswith(f"{sweep.sweep_dir}/.submitit/")
    assert sys.executable in script  # jobs start with the sweep's interpreter
    assert_grid_completed(sweep)
