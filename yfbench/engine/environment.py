"""What made a run: code version (git commit, dirty tree), library versions and device.

Recorded in every summary.json so a number in results/ can be traced to the code and
machine that produced it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


@cache
def git_state() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the yfbench checkout."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _git(*args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout.strip()


@cache
# torch is imported where it is used: the sweep callbacks import this module for the
# command line, and a mistyped command must answer before torch's seconds of import.
def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "hydra": installed("hydra-core"),
        "yfbench": installed("yfbench"),
    }


def describe_device(device: torch.device) -> str:
    """The device in words, with the same detail on every device type."""
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}, torch {torch.__version__})"
    cpu = _cpu_model()
    threads = torch.get_num_threads()
    return f"cpu ({os.cpu_count()} cores, {threads} threads, {cpu}, torch {torch.__version__})"


@cache
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


COMMAND_ENV = "YFBENCH_COMMAND"


def command_line() -> str:
    """The command that started this run (``python -m yfbench ...`` for the CLI).

    Launchers that run jobs in other processes (submitit, SLURM) start them with their
    own command; a sweep records its command in ``YFBENCH_COMMAND`` for them.
    """
    if os.environ.get(COMMAND_ENV):
        return os.environ[COMMAND_ENV]
    program = sys.argv[0]
    if Path(program).parts[-2:] == ("yfbench", "__main__.py"):
        program = "-m yfbench"
    # Paths below the working directory are recorded relative to it: committed records
    # must not carry one machine's absolute paths.
    here = os.getcwd().rstrip("/") + "/"
    return " ".join(["python", program, *(arg.replace(here, "") for arg in sys.argv[1:])])
