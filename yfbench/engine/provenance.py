"""What changes a run's numbers without being its config: threads, device, data, code.

``run_config.json`` identifies a run by its semantic config, and committed runs keep
their config hashes, so the facts below live in a separate *provenance* record, written
into every checkpoint and summary and checked when a run resumes:

- ``threads``: torch's intra-op thread count (another count reorders float sums);
- ``device``: the device type actually used (``device=auto`` may find a GPU or not);
- ``data_source``: the data actually read (CIFAR's ``source=auto`` picks a copy);
- ``code``: segments ``{from_step, to_step, code_hash, commit, dirty}`` saying which
  training code made which steps. The code hash covers the sources that compute the
  numbers (:data:`CODE_PARTS`), not the analysis or scripts.

A resume with another thread count, device type or data source is refused with one
message naming the value and the command that resumes. A resume across a change of the
training code is refused unless ``YFBENCH_RESUME_ACROSS_CODE_CHANGE=1`` is set; then the
run continues and a new code segment starts at the resumed step. A checkpoint from before
this record existed is refused the same way; with the opt-in its steps are recorded as
made by unknown code (``code_hash: null``), since nothing says which code made them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from yfbench.engine import environment
from yfbench.errors import UserError

PACKAGE = Path(__file__).resolve().parents[1]
# The sources that compute a run's numbers (paths relative to the yfbench package).
CODE_PARTS = ("engine", "tasks", "models", "optim", "data", "config.py")
ALLOW_CODE_CHANGE = "YFBENCH_RESUME_ACROSS_CODE_CHANGE"
RESTART = "or delete checkpoint.pt (and metrics.jsonl) to restart the run from step 0"


@cache
def code_hash() -> str:
    """The hash of this checkout's training code (:func:`hash_code` of the package)."""
    return hash_code(PACKAGE)


def hash_code(package: Path) -> str:
    """sha256 over the files of :data:`CODE_PARTS` under ``package`` (path and bytes)."""
    files: list[Path] = []
    for part in CODE_PARTS:
        path = package / part
        files += path.rglob("*.py") if path.is_dir() else [path]
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def code_change_allowed() -> bool:
    return os.environ.get(ALLOW_CODE_CHANGE, "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Provenance:
    """The non-config facts of one session that must not change within a run."""

    threads: int
    device: str
    data_source: str | None

    @classmethod
    def of(cls, device: torch.device, data_source: str | None) -> Provenance:
        return cls(torch.get_num_threads(), device.type, data_source)


def code_segment(from_step: int) -> dict[str, Any]:
    """This checkout's code, making the steps from ``from_step`` on."""
    git = environment.git_state()
    return {
        "from_step": from_step,
        "to_step": None,
        "code_hash": code_hash(),
        "commit": git["commit"],
        "dirty": git["dirty"],
    }


def start(current: Provenance) -> dict[str, Any]:
    """The record of a run started from step 0 in this session."""
    return {**asdict(current), "code": [code_segment(1)]}


def up_to(record: dict[str, Any], step: int) -> dict[str, Any]:
    """``record`` with its last code segment closed at ``step`` (for checkpoints, summaries)."""
    code = [dict(segment) for segment in record["code"]]
    code[-1]["to_step"] = step
    return {**record, "code": code}


def resume(
    saved: dict[str, Any] | None, current: Provenance, step: int, path: Path
) -> dict[str, Any]:
    """The record to continue with after resuming at ``step``, or a UserError saying why not.

    Checked before anything is written, so a refused resume leaves the run as it was.
    """
    if saved is None:
        if not code_change_allowed():
            raise UserError(
                f"checkpoint {path} predates yfbench's provenance record: nothing says which "
                f"code, thread count, device or data made its {step} steps. To continue it "
                f"anyway (those steps recorded as made by unknown code), rerun with "
                f"{ALLOW_CODE_CHANGE}=1; {RESTART}"
            )
        unknown = {"from_step": 1, "to_step": step, "code_hash": None, "commit": None}
        return {**asdict(current), "code": [{**unknown, "dirty": None}, code_segment(step + 1)]}
    _refuse_other_session(saved, current, path)
    segments = [dict(segment) for segment in saved["code"]]
    if segments[-1]["code_hash"] == code_hash():
        segments[-1]["to_step"] = None
        return {**asdict(current), "code": segments}
    if not code_change_allowed():
        made_by = segments[-1]
        raise UserError(
            f"checkpoint {path} was saved by other training code (commit "
            f"{made_by['commit'] or 'unknown'}, code hash {str(made_by['code_hash'])[:12]}) "
            f"than this checkout's (commit {environment.git_state()['commit'] or 'unknown'}, "
            f"code hash {code_hash()[:12]}): resuming would mix two versions of the code in "
            f"one run. Check out that commit to resume; or rerun with {ALLOW_CODE_CHANGE}=1 to "
            f"continue with this code (the summary then records which code made which steps); "
            f"{RESTART}"
        )
    return {**asdict(current), "code": [*segments, code_segment(step + 1)]}


# Per value: how to resume with the saved value.
_FIXES = {
    "threads": "rerun with trainer.threads={saved}",
    "device": "rerun on a machine with that device, with trainer.device={saved}",
    "data_source": "make that data source available again (task.source={saved} for CIFAR-10)",
}


def _refuse_other_session(saved: dict[str, Any], current: Provenance, path: Path) -> None:
    for key, value in asdict(current).items():
        if key in saved and saved[key] != value:
            fix = _FIXES[key].format(saved=saved[key])
            raise UserError(
                f"checkpoint {path} was saved with {key}={saved[key]} and this session has "
                f"{key}={value}, which changes the numbers: resuming would mix two runs. To "
                f"resume, {fix}; {RESTART}"
            )
