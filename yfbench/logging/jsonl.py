"""metrics.jsonl: one JSON object per line, flushed per record so a crash loses nothing."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def json_safe(value: Any) -> Any:
    """JSON has no NaN/inf: non-finite floats become strings ("nan", "inf"), recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class JsonlSink:
    """Appends records; :meth:`position`/:meth:`truncate` let a resumed run drop stale lines."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def log(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(json_safe(record)) + "\n")
        self._file.flush()

    def position(self) -> int:
        """Byte offset after the last record (stored in checkpoints)."""
        self._file.flush()
        return self._file.tell()

    def truncate(self, position: int) -> None:
        """Drop everything logged after ``position`` (records newer than the checkpoint)."""
        self._file.flush()
        os.truncate(self.path, position)
        self._file.seek(position)

    def close(self) -> None:
        self._file.close()
