"""What summary.json says about its metrics file, so a reader can verify the file.

``{"records": N, "last_step": S, "sha256": H}`` of the *uncompressed* bytes of
metrics.jsonl: the trainer writes it into every summary; the analysis recomputes it from
metrics.jsonl or metrics.jsonl.gz (every gzip member) and refuses a finished run whose
file was cut, appended to or edited. Torch-free, for the analysis.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

KEYS = ("records", "last_step", "sha256")


def fingerprint(data: bytes) -> dict[str, Any]:
    """Records (complete lines), the last complete record's step, and the bytes' sha256."""
    complete = data[: data.rfind(b"\n") + 1]
    last_step = None
    for line in reversed(complete.splitlines()):
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError:
                break
            last_step = record.get("step") if isinstance(record, dict) else None
            break
    return {
        "records": sum(1 for line in complete.splitlines() if line.strip()),
        "last_step": last_step,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def file_fingerprint(path: Path) -> dict[str, Any] | None:
    """The fingerprint of a plain metrics file, or None when there is none."""
    path = Path(path)
    return fingerprint(path.read_bytes()) if path.is_file() else None


def differences(recorded: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Which of the fingerprint's keys differ, in words (empty when the file matches)."""
    return [
        f"{key} {actual.get(key)!r} where summary.json says {recorded.get(key)!r}"
        for key in KEYS
        if key in recorded and recorded.get(key) != actual.get(key)
    ]
