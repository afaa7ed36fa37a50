"""metrics.jsonl: one JSON object per line; the source of truth of every analysis.

The sink counts its records and hashes its bytes as it writes, so a checkpoint can say
exactly which file prefix it belongs to, and a resume can prove the file on disk is that
prefix before it cuts the records written after the checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from yfbench.errors import UserError
from yfbench.run_contract import CHECKPOINT_FILE, METRICS_FILE, json_safe


@dataclass(frozen=True)
class MetricsPosition:
    """A prefix of metrics.jsonl: its size, its record count and its sha256."""

    bytes: int = 0
    records: int = 0
    sha256: str = hashlib.sha256().hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class JsonlSink:
    """Appends records to a new metrics.jsonl, or continues a verified prefix of one."""

    def __init__(self, path: Path, resume_from: MetricsPosition | None = None) -> None:
        self.path = Path(path)
        position = resume_from or MetricsPosition()
        if resume_from is not None:
            verify_prefix(self.path, resume_from)
        self._file = _open_plain(self.path)
        self._file.truncate(position.bytes)  # drop records newer than the checkpoint
        self._file.seek(position.bytes)
        self._records = position.records
        self._hash = _hash_of(self.path, position.bytes) if resume_from else hashlib.sha256()

    def log(self, record: dict[str, Any]) -> None:
        self.log_many([record])

    def log_many(self, records: list[dict[str, Any]]) -> None:
        """Append records with one write and one flush (a crash loses no flushed record)."""
        if not records:
            return
        data = "".join(json.dumps(json_safe(r)) + "\n" for r in records).encode()
        self._file.write(data)
        self._file.flush()
        self._hash.update(data)
        self._records += len(records)

    def position(self) -> MetricsPosition:
        """Where the file ends now (stored in checkpoints)."""
        self._file.flush()
        return MetricsPosition(self._file.tell(), self._records, self._hash.hexdigest())

    def close(self) -> None:
        self._file.close()


def _open_plain(path: Path) -> io.BufferedWriter:
    """``path`` for writing, never through a symlink and only if it is a plain file."""
    fix = "it must be the run's own plain file: move it away and rerun"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        raise UserError(f"cannot open {path} for writing ({error.strerror}); {fix}") from error
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path} is not a plain file; {fix}")
    return open(fd, "wb")  # closed in JsonlSink.close()


def verify_prefix(path: Path, position: MetricsPosition) -> None:
    """Refuse to resume unless ``path`` starts with exactly the checkpointed records."""
    fix = (
        f"restore the run's own {METRICS_FILE}, or delete {CHECKPOINT_FILE} and {METRICS_FILE} to "
        "restart the run from step 0"
    )
    if not path.is_file():
        raise UserError(
            f"{path} is missing but {CHECKPOINT_FILE} holds {position.records} records of it: "
            f"resuming would lose them; {fix}"
        )
    size = path.stat().st_size
    if size < position.bytes:
        raise UserError(
            f"{path} has {size} bytes but {CHECKPOINT_FILE} was saved after {position.bytes}: the "
            f"file was cut; {fix}"
        )
    if _hash_of(path, position.bytes).hexdigest() != position.sha256:
        raise UserError(
            f"the first {position.records} records of {path} are not the ones {CHECKPOINT_FILE} "
            f"was saved with (edited, or another run's file); {fix}"
        )


def _hash_of(path: Path, size: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        remaining = size
        while remaining:
            chunk = handle.read(min(remaining, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest
