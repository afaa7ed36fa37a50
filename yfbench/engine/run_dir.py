"""A run's directory: claimed (writable, locked), identified once, never relabelled.

The identity of a run is ``run_config.json``, written once when the run starts: its
resolved config (minus keys that do not change results), that config's hash, and the
Hydra overrides and choices that made it. A rerun in the same directory is compared with
it and refused when it differs while the directory holds something worth keeping (a
checkpoint or a finished run), so no rerun can relabel, mix or pad a finished run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from yfbench import atomic
from yfbench.config import semantic_config
from yfbench.errors import UserError
from yfbench.run_contract import (
    CHECKPOINT_FILE,
    FINISHED,
    METRICS_FILE,
    METRICS_GZ_FILE,
    RUN_CONFIG_FILE,
    SUMMARY_FILE,
    RunIdentity,
    config_hash,
    json_safe,
    read_json_object,
)

log = logging.getLogger(__name__)

# Files of the run contract: found without a run_config.json, they are another tool's or
# another run's, and a run started there would overwrite them.
CONTRACT_FILES = (SUMMARY_FILE, CHECKPOINT_FILE, METRICS_FILE, METRICS_GZ_FILE)


def identity_of(
    cfg: DictConfig, overrides: list[str] = (), choices: dict[str, Any] | None = None
) -> RunIdentity:
    """The identity of the run ``cfg`` configures: its semantic config and that config's hash."""
    config = semantic_config(cfg)
    analysis = OmegaConf.to_container(cfg.analysis, resolve=True) if "analysis" in cfg else {}
    return RunIdentity(config_hash(config), config, analysis, list(overrides), dict(choices or {}))


def write_atomic(path: Path, data: bytes) -> None:
    """Write a new temporary file beside ``path``, fsync, rename (:mod:`yfbench.atomic`): a
    crash never leaves half a file, and a planted ``*.tmp`` symlink is never followed.

    A failed write (disk full, say) removes its temporary file and raises a UserError
    that names the file.
    """
    try:
        atomic.write_bytes(Path(path), data)
    except OSError as error:
        raise write_error(Path(path), error) from error


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(json_safe(payload), indent=2) + "\n").encode())


def write_error(path: Path, error: OSError) -> UserError:
    """A UserError for a failed write, with the fix for the common causes."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(
            f"no space left on the device while writing {path}: free some space and rerun "
            "the same command (the run resumes from its last checkpoint)"
        )
    return UserError(f"cannot write {path} ({error}); check the directory's permissions")


class RunDirectory:
    """The directory of one run and the files of the run contract in it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.identity_path = self.path / RUN_CONFIG_FILE
        self.summary_path = self.path / SUMMARY_FILE
        self.checkpoint_path = self.path / CHECKPOINT_FILE
        self.metrics_path = self.path / METRICS_FILE

    # ---------------------------------------------------------------- claiming
    @contextmanager
    def claimed(self) -> Iterator[RunDirectory]:
        """Writable (checked before anything is written) and locked against other processes."""
        ensure_writable(self.path)
        with _lock_file(self.path / ".lock") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                raise UserError(
                    f"{self.path} is in use by another yfbench process; wait for it to finish "
                    "(or stop it) before running this command again"
                ) from error
            yield self

    # ---------------------------------------------------------------- what is there
    def previous_summary(self) -> dict[str, Any] | None:
        if not self.summary_path.exists():
            return None
        return read_json_object(
            self.summary_path,
            "delete it and rerun the same command (a checkpoint, if any, is resumed)",
        )

    def finished_summary(self) -> dict[str, Any] | None:
        """The summary of a completed or diverged run in this directory, if it holds one."""
        summary = self.previous_summary()
        return summary if summary and summary.get("status") in FINISHED else None

    def holds_a_run(self) -> bool:
        """A checkpoint or a finished run: something a rerun must not relabel or mix."""
        return self.checkpoint_path.exists() or self.finished_summary() is not None

    # ---------------------------------------------------------------- identity
    def identify(self, identity: RunIdentity) -> None:
        """Write the run's record, or check it against the one already there.

        Refuses a config that differs from the recorded one when the directory holds a
        checkpoint or a finished run; otherwise (nothing worth keeping) the new record
        replaces the old one, so a corrected command can reuse the directory.
        """
        self.refuse_foreign_files()
        if not self.holds_a_run():
            write_json_atomic(self.identity_path, asdict(identity))
            return
        if not self.identity_path.exists():
            raise UserError(
                f"{self.path} holds a run but no {RUN_CONFIG_FILE}, so nothing says which config "
                "made it: restore the file, or delete the directory to start over"
            )
        recorded = read_json_object(
            self.identity_path, "restore it, or delete the directory to start the run over"
        )
        if recorded.get("config_hash") != identity.config_hash:
            changed = _differences(recorded.get("config", {}), identity.config)
            raise UserError(
                f"{self.path} already holds a run with a different config (differs in: "
                f"{', '.join(changed) or 'the config hash'}). Continuing it would mix two runs: "
                "use another hydra.run.dir=... (or hydra.sweep.dir=...), or delete that "
                "directory."
            )

    def refuse_foreign_files(self) -> None:
        """Run-contract files with no ``run_config.json`` belong to something else: refuse."""
        if self.identity_path.is_file():
            return
        found = [name for name in CONTRACT_FILES if os.path.lexists(self.path / name)]
        if found:
            raise UserError(
                f"{self.path} holds {', '.join(found)} but no {RUN_CONFIG_FILE}: they are not this "
                "run's, and a run there would overwrite them. Use another hydra.run.dir=... "
                "(or hydra.sweep.dir=...), or move those files away"
            )

    # ---------------------------------------------------------------- outcome
    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)

    def record_failure(self, error: str, identity: RunIdentity | None) -> None:
        """A failed run before training: recorded only where nothing would be overwritten."""
        try:
            if self.holds_a_run() or os.path.lexists(self.summary_path):
                return
            if not self.identity_path.is_file() and any(
                os.path.lexists(self.path / name) for name in CONTRACT_FILES
            ):
                return  # another run's or tool's files: add nothing beside them
            if identity is not None:
                write_json_atomic(self.identity_path, asdict(identity))
            self.write_summary({"status": "failed", "steps": 0, "error": error})
        except UserError as failure:  # e.g. a corrupt summary or a full disk: say so, go on
            log.warning("could not record the failure in %s: %s", self.path, failure)


def ensure_writable(path: Path) -> None:
    """Create ``path`` if needed and prove it writable, or raise one UserError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test-", dir=path)  # O_EXCL: nothing followed
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise UserError(
            f"cannot write to the run directory {path} ({error.strerror or error}); pick a "
            "writable one with hydra.run.dir=... (or hydra.sweep.dir=... with -m)"
        ) from error


@contextmanager
def _lock_file(path: Path) -> Iterator[int]:
    """The lock file's descriptor, opened without following a symlink or truncating."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        raise UserError(
            f"cannot open the lock file {path} ({error.strerror or error}): it must be a plain "
            "file (a symlink there is never followed); remove it and rerun"
        ) from error
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"{path} is not a plain file; remove it and rerun")
        yield fd
    finally:
        os.close(fd)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]
