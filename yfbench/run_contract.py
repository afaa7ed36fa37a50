"""The run contract: the files of a run directory and what they hold (torch-free).

The engine writes these files (:mod:`yfbench.engine.run_dir`, :mod:`yfbench.sinks`), the
analysis reads them (:mod:`yfbench.analysis.runs`); their names, the identity's schema
and the JSON conventions are defined here and nowhere else.

A run directory holds

- ``run_config.json``: the run's :class:`RunIdentity`, written once when it starts;
- ``metrics.jsonl``: one JSON record per line, ``{"step": <int>, "split": "train" |
  "valid", ...}`` (train: ``loss``, ``lr``, ``momentum``, ``time_s`` and the optimizer's
  statistics; valid: ``epoch``, the task's declared metrics and ``time_s``); a finished
  run's committed copy is gzip-compressed as ``metrics.jsonl.gz``;
- ``summary.json``: how the run ended, written when a session ends: ``status`` (one of
  :data:`STATUSES`), ``steps``, ``wall_time_s``, ``final`` and ``best`` metrics,
  ``error``, ``diverged_step``, ``steps_per_s``, ``processes``, ``task``, ``scale``,
  ``optimizer``, ``seed``, ``data_source``, the task's declared ``metrics`` (name ->
  ``"min"`` or ``"max"``) and ``target_metric`` (runs made before they were declared lack
  both), ``device``, ``git``, ``versions`` and ``command``;
- ``checkpoint.pt``: the state a rerun resumes from (:mod:`yfbench.engine.checkpoint`).

JSON has no NaN or infinity: :func:`json_safe` writes them as the strings ``"nan"``,
``"inf"`` and ``"-inf"``, and :func:`from_json_safe` reads them back.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yfbench.errors import DataError

RUN_CONFIG_FILE = "run_config.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
METRICS_GZ_FILE = "metrics.jsonl.gz"
CHECKPOINT_FILE = "checkpoint.pt"
# A run's status in summary.json; a finished run is never rerun, relabelled or padded.
STATUSES = ("completed", "diverged", "interrupted", "failed")
FINISHED = ("completed", "diverged")
NON_FINITE = ("nan", "inf", "-inf")


@dataclass(frozen=True)
class RunIdentity:
    """What identifies a run (``run_config.json``): its semantic config and that config's
    hash, the analysis settings, and the Hydra overrides and group choices that made it."""

    config_hash: str
    config: dict[str, Any]
    analysis: dict[str, Any]
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, Any] = field(default_factory=dict)


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a semantic config: equal configs, equal hashes."""
    text = json.dumps(json_safe(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def json_safe(value: Any) -> Any:
    """JSON has no NaN/inf: non-finite floats become strings ("nan", "inf"), recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def from_json_safe(value: Any) -> Any:
    """A value as :func:`json_safe` wrote it, with "nan", "inf" and "-inf" floats again."""
    return float(value) if isinstance(value, str) and value in NON_FINITE else value


def read_json_object(path: Path, fix: str) -> dict[str, Any]:
    """A JSON object from ``path``, or a DataError that names the file and ``fix``."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(
            f"cannot read {path} ({error}): it was cut or edited (a run killed while writing "
            f"it leaves it truncated); {fix}"
        ) from error
    if not isinstance(value, dict):
        raise DataError(f"{path} is not a JSON object (it was edited); {fix}")
    return value
