"""Signals reach every process of a sweep: a SIGTERM to a joblib sweep's main process
stops its workers with a checkpoint (no orphans); a sweep never lists a value twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, run_cli, summary
from yfbench import sweep_signals


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_the_main_process_passes_a_stop_on_to_its_registered_workers_only(tmp_path, monkeypatch):
    for key in (sweep_signals.STOP_ENV, sweep_signals.MAIN_ENV):
        monkeypatch.delenv(key, raising=False)
    worker, helper = _sleeper(), _sleeper()
    try:
        sweep_signals.install(tmp_path)
        assert set(sweep_signals.descendants(os.getpid())) >= {worker.pid, helper.pid}
        stop_file = Path(os.environ[sweep_signals.STOP_ENV])
        (stop_file.with_name(stop_file.name + ".workers") / str(worker.pid)).touch()
        assert not sweep_signals.stopped()
        os.kill(os.getpid(), signal.SIGTERM)  # handled: this process goes on
        assert worker.wait(10) == -signal.SIGUSR2  # a different stop signal, passed on
        assert helper.poll() is None  # not a worker (e.g. loky's resource tracker): untouched
        assert sweep_signals.stopped()  # jobs that have not started will not start
    finally:
        assert sweep_signals.finish()
        helper.kill()
        worker.kill()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert not list(tmp_path.iterdir())  # the stop file and worker registry are gone


def test_a_value_listed_twice_in_a_sweep_is_one_message(tmp_path):
    result = run_cli(
        [
            "-m",
            "task=noisy_quadratic",
            "trainer.max_steps=5",
            "optimizer=adam",
            "optimizer.lr=0.001,1e-3",
            f"hydra.sweep.dir={tmp_path}",
        ]
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "lists optimizer.lr=0.001 twice" in result.stderr
    assert not list(tmp_path.rglob("run_config.json"))


def _group_alive(pgid: int, grace_s: float = 0.0) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, after up to ``grace_s``."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[3]) == pgid:
                alive.append(int(entry.name))
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


@pytest.mark.slow
def test_sigterm_to_a_joblib_sweep_stops_every_worker_with_a_checkpoint(tmp_path):
    command = [
        sys.executable, "-m", "yfbench", "-m", "task=noisy_quadratic",
        "trainer.max_steps=1000000", "trainer.flush_every=50", "seed=1,2,3",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.threads=1",
        f"hydra.sweep.dir={tmp_path}",
    ]  # fmt: skip
    out_path, err_path = tmp_path.parent / "sweep.out", tmp_path.parent / "sweep.err"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        sweep = subprocess.Popen(
            command, cwd=REPO_ROOT, start_new_session=True, stdout=out_file, stderr=err_file
        )
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob(".sweep-stop-*.workers/*"))) < 2:  # both jobs started
            assert sweep.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.5)
        time.sleep(1)
        sweep.send_signal(signal.SIGTERM)
        sweep.wait(timeout=120)
        out, err = out_path.read_text(), err_path.read_text()
        assert sweep.returncode == 130, err
        assert "Traceback" not in err, err
        assert not _group_alive(sweep.pid, grace_s=15), "orphaned workers"
        runs = sorted(p.parent for p in tmp_path.rglob("run_config.json"))
        assert len(runs) == 2  # the third run never started
        assert "the sweep was stopped before this run started" in out
        for run_dir in runs:
            assert summary(run_dir)["status"] == "interrupted"
            assert (run_dir / "checkpoint.pt").is_file()
        assert "3 runs: 3 interrupted" in out
    finally:
        if sweep.poll() is None or _group_alive(sweep.pid):
            os.killpg(sweep.pid, signal.SIGKILL)
