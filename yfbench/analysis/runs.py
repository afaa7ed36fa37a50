"""Load run directories (DESIGN.md run contract) into one tidy pandas frame.

The analysis reads run directories only, so it works on any optimizer a user adds:
a run is identified by its resolved ``.hydra/config.yaml``, never by its path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from yfbench.errors import DataError, UserError

CONFIG_FILE = Path(".hydra") / "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
NON_FINITE = ("nan", "inf", "-inf")
# Status of a run whose summary.json is missing (still running, or killed hard).
NO_SUMMARY = "incomplete"
# Prefix of the per-hyperparameter columns (one per key of the config's optimizer node).
HPARAM_PREFIX = "opt."
RUN_COLUMNS = [
    "run_dir",
    "task",
    "scale",
    "optimizer",
    "hparams",
    "seed",
    "status",
    "device",
    "data_source",
    "window",
    "error",
]


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every directory at or below ``paths`` that holds a ``.hydra/config.yaml``."""
    found: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise UserError(f"run directory {root} does not exist; pass the folder of your runs")
        if (root / CONFIG_FILE).is_file():
            found.add(root)
        found.update(
            p.parent.parent for p in root.rglob("config.yaml") if p.parent.name == ".hydra"
        )
    return sorted(found)


def hparams_key(optimizer_node: dict[str, Any]) -> str:
    """Canonical text of a grid point's hyperparameters: the optimizer node minus ``name``."""
    items = {k: v for k, v in optimizer_node.items() if k != "name"}
    return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(items.items()))


def format_value(value: Any) -> str:
    """Short, stable text of a config value (floats as %g, lists bracketed)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's identity (one dict) and its logged records (a list of dicts)."""
    config = _read_config(run_dir)
    summary = _read_summary(run_dir)
    optimizer = config.get("optimizer") or {}
    if "name" not in optimizer:
        raise DataError(f"{run_dir / CONFIG_FILE} has no optimizer.name; is it a yfbench run?")
    info = {
        "run_dir": str(run_dir),
        "task": (config.get("task") or {}).get("name"),
        "scale": (config.get("scale") or {}).get("name"),
        "optimizer": optimizer["name"],
        "hparams": hparams_key(optimizer),
        "seed": config.get("seed"),
        "status": summary.get("status", NO_SUMMARY),
        "device": summary.get("device"),
        "data_source": summary.get("data_source"),
        "window": (config.get("analysis") or {}).get("window"),
        "error": summary.get("error"),
    }
    info.update({HPARAM_PREFIX + k: v for k, v in optimizer.items() if k != "name"})
    return info, _read_metrics(run_dir)


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per logged record of every run under ``paths``, with the run's identity.

    A run that logged nothing (e.g. failed at start-up) still gets one row, with
    ``split``/``step`` missing, so that failed and diverged runs are never dropped.
    """
    paths = list(paths)
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        joined = ", ".join(str(p) for p in paths)
        raise UserError(f"no run directories (with {CONFIG_FILE}) found under {joined}")
    frames = []
    for run_dir in run_dirs:
        info, records = read_run(run_dir)
        frame = pd.DataFrame(records or [{}])
        for key, value in info.items():
            frame[key] = [value] * len(frame)
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    for column in ("step", "split", "loss"):
        if column not in frame:
            frame[column] = math.nan
    leading = RUN_COLUMNS + sorted(c for c in frame if c.startswith(HPARAM_PREFIX))
    leading += ["split", "step", "loss"]
    return frame[leading + [c for c in frame if c not in leading]]


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run (its identity columns), from a frame made by :func:`load_runs`."""
    columns = RUN_COLUMNS + [c for c in frame if c.startswith(HPARAM_PREFIX)]
    return frame[columns].drop_duplicates("run_dir").reset_index(drop=True)


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise DataError(f"cannot parse {path}: {error}") from error
    if not isinstance(config, dict):
        raise DataError(f"{path} is not a mapping; is it a yfbench run's resolved config?")
    return config


def _read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"cannot parse {path}: {error}") from error


def _number(value: Any) -> Any:
    """metrics.jsonl writes non-finite floats as "nan", "inf" and "-inf" (JSON has none)."""
    return float(value) if value in NON_FINITE else value


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Records of metrics.jsonl; a truncated last line (a run killed mid-write) is skipped."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append({k: _number(v) for k, v in json.loads(line).items()})
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise DataError(f"{path}:{number} is not valid JSON: {error}") from error
    return records
