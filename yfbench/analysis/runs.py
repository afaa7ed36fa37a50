"""Load run directories (the run record contract) into one tidy pandas frame.

A run directory is any folder holding ``run_config.json``, beside ``summary.json`` and
``metrics.jsonl`` (or ``metrics.jsonl.gz``, the committed, compressed copy): the run
contract of :mod:`yfbench.run_contract`. A run is identified by its ``run_config.json``,
never by its path: its grid point is (optimizer name, optimizer node minus ``name``) and
its *setting* is the config minus ``optimizer`` and ``seed``. Runs are compared only
within one (task, scale, setting), so e.g. runs with ``trainer.staleness=15`` never mix
with synchronous ones. The ``setting`` column names the config keys that differ between
the settings of one task and scale (``"trainer.staleness=15"``), or ``"default"`` when
that task and scale has one setting.

Every error names the file at fault and says what to do about it.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from yfbench.analysis.verify import verify_run
from yfbench.errors import DataError, UserError
from yfbench.fingerprint import fingerprint
from yfbench.run_contract import (
    METRICS_FILE,
    METRICS_GZ_FILE,
    RUN_CONFIG_FILE,
    SUMMARY_FILE,
    from_json_safe,
    read_json_object,
)

# Status of a run whose summary.json is missing (still running, or killed hard).
NO_SUMMARY = "incomplete"
# Label of the only setting of a task and scale.
DEFAULT_SETTING = "default"
# Config keys that are not part of a run's setting: the grid point and the seed.
NOT_SETTING = ("optimizer", "seed")
# Prefix of the per-hyperparameter columns (one per key of the config's optimizer node).
HPARAM_PREFIX = "opt."
RUN_COLUMNS = [
    "run_dir",
    "task",
    "scale",
    "setting",
    "optimizer",
    "hparams",
    "grid_point",
    "seed",
    "status",
    "steps",
    "diverged_step",
    "device",
    "data_source",
    "target_metric",
    "target_direction",
    "window",
    "max_steps",
    "paper_max_steps",
    "error",
    "grad_clip_norm",
    "config_hash",
    "git_commit",
    "git_dirty",
    "torch",
    "flat_config",
]


@dataclass
class LoadedRun:
    """One run as read from disk: identity columns, flat setting and logged records."""

    info: dict[str, Any]
    setting: dict[str, str]
    records: list[dict[str, Any]]


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every directory at or below ``paths`` that holds a ``run_config.json``.

    Symlinked directories are followed (each real directory once, so a link loop ends and
    a run reached by two paths counts once, under the first path found in sorted order).
    """
    found: dict[Path, Path] = {}
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise UserError(f"run directory {root} does not exist; pass the folder of your runs")
        for directory in _walk(root, set()):
            if (directory / RUN_CONFIG_FILE).is_file():
                found.setdefault(directory.resolve(), directory)
    return sorted(found.values())


def _walk(directory: Path, seen: set[Path]) -> Iterator[Path]:
    """``directory`` and every directory below it, symlinks followed, each real one once."""
    real = directory.resolve()
    if real in seen or not directory.is_dir():
        return
    seen.add(real)
    yield directory
    try:
        children = sorted(directory.iterdir())
    except OSError as error:
        raise UserError(
            f"cannot list {directory} ({error.strerror}); check its permissions"
        ) from error
    for child in children:
        if child.is_dir():
            yield from _walk(child, seen)


def hparams_key(optimizer_node: dict[str, Any]) -> str:
    """Canonical text of a grid point's hyperparameters: the optimizer node minus ``name``."""
    items = {k: v for k, v in optimizer_node.items() if k != "name"}
    return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(items.items()))


def format_value(value: Any) -> str:
    """Short, stable text of a config value (lists bracketed): floats as %g where that is
    exact, else in full, so two values differing in any digit never share a text."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(float(value))  # not np.float64(...)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"trainer": {"staleness": 15}}`` -> ``{"trainer.staleness": "15"}``."""
    flat: dict[str, str] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = format_value(value)
    return flat


def read_run(run_dir: Path) -> LoadedRun:
    """Read one run directory; a missing summary.json means the run is incomplete."""
    path = run_dir / RUN_CONFIG_FILE
    record = read_json_object(path, "re-run the run, or leave its directory out of the inputs")
    config = record.get("config")
    if not isinstance(config, dict):
        raise DataError(
            f"{path} has no 'config' object; it predates the run record contract "
            "(config_hash, config, analysis, overrides): re-run the run with this yfbench"
        )
    optimizer = _node(config, "optimizer", path)
    seed = config.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(f"{path}: config.seed must be an integer, got {seed!r}; re-run the run")
    summary = _read_summary(run_dir)
    metrics = _read_metrics(run_dir)
    verify_run(run_dir, record, summary, metrics[0], metrics[1])
    info = {
        "run_dir": str(run_dir),
        "task": _node(config, "task", path)["name"],
        "scale": _node(config, "scale", path)["name"],
        "optimizer": optimizer["name"],
        "hparams": hparams_key(optimizer),
        # The grid_point config a sweep chose (a second stage re-runs it with more seeds).
        "grid_point": (record.get("choices") or {}).get("grid_point"),
        "seed": seed,
        "status": summary.get("status", NO_SUMMARY),
        "steps": summary.get("steps"),
        "diverged_step": summary.get("diverged_step"),
        "device": summary.get("device"),
        "data_source": summary.get("data_source"),
        # The task's declared headline metric and its direction, "min" or "max"
        # (summary.json; absent in older runs; yfbench.analysis.headline reads them).
        "target_metric": summary.get("target_metric"),
        "target_direction": (summary.get("metrics") or {}).get(summary.get("target_metric")),
        "window": (record.get("analysis") or {}).get("window"),
        "max_steps": (config.get("trainer") or {}).get("max_steps"),
        "paper_max_steps": _node(config, "task", path).get("paper_max_steps"),
        "error": summary.get("error"),
        "grad_clip_norm": _node(config, "task", path).get("grad_clip_norm"),
        "config_hash": record.get("config_hash"),
        "git_commit": (summary.get("git") or {}).get("commit"),
        "git_dirty": (summary.get("git") or {}).get("dirty"),
        "torch": (summary.get("versions") or {}).get("torch"),
        # The whole resolved config, flat ("task.model.num_layers" -> "2"), for the report's
        # list of differences from the paper's setup.
        "flat_config": flatten(config),
    }
    info.update({HPARAM_PREFIX + k: v for k, v in optimizer.items() if k != "name"})
    setting = flatten({k: v for k, v in config.items() if k not in NOT_SETTING})
    return LoadedRun(info, setting, metrics[0])


def setting_labels(settings: list[dict[str, str]]) -> list[str]:
    """A short label per setting: the keys whose values differ between ``settings``.

    ``settings`` are the flat settings of one task and scale; a key missing from one of
    them shows as ``unset``. One distinct setting is labelled ``default``.
    """
    keys = sorted({k for s in settings for k in s})
    varying = [k for k in keys if len({s.get(k) for s in settings}) > 1]
    if not varying:
        return [DEFAULT_SETTING] * len(settings)
    return [", ".join(f"{k}={s.get(k, 'unset')}" for k in varying) for s in settings]


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per logged record of every run under ``paths``, with the run's identity.

    A run that logged nothing (e.g. failed at start-up) still gets one row, with
    ``split``/``step`` missing, so that failed and diverged runs are never dropped.
    """
    paths = list(paths)
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        joined = ", ".join(str(p) for p in paths)
        raise UserError(
            f"no run directories (folders with {RUN_CONFIG_FILE}) found under {joined}; "
            "pass the folder your runs were written to, e.g. results/runs/ptb_lstm/mini"
        )
    runs = [read_run(run_dir) for run_dir in run_dirs]
    _label_settings(runs)
    frames = []
    for run in runs:
        frame = pd.DataFrame(run.records or [{}])
        for key, value in run.info.items():
            frame[key] = [value] * len(frame)
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    for column in ("step", "split", "loss"):
        if column not in frame:
            frame[column] = math.nan
    leading = RUN_COLUMNS + sorted(c for c in frame if c.startswith(HPARAM_PREFIX))
    leading += ["split", "step", "loss"]
    return frame[leading + [c for c in frame if c not in leading]]


def load_folder(path: Path) -> pd.DataFrame:
    """:func:`load_runs` of one folder: the loader that findings take, so that a caller
    reading one folder for several tables can pass a cached one."""
    return load_runs([path])


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run (its identity columns), from a frame made by :func:`load_runs`."""
    columns = RUN_COLUMNS + [c for c in frame if c.startswith(HPARAM_PREFIX)]
    return frame[columns].drop_duplicates("run_dir").reset_index(drop=True)


def _label_settings(runs: list[LoadedRun]) -> None:
    """Fill each run's ``setting`` column, labelled within its (task, scale)."""
    groups: dict[tuple[str, str], list[LoadedRun]] = {}
    for run in runs:
        groups.setdefault((run.info["task"], run.info["scale"]), []).append(run)
    for group in groups.values():
        distinct = {json.dumps(r.setting, sort_keys=True): r.setting for r in group}
        labels = dict(zip(distinct, setting_labels(list(distinct.values())), strict=True))
        for run in group:
            run.info["setting"] = labels[json.dumps(run.setting, sort_keys=True)]


def _node(config: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """``config[name]``, which must be a mapping with a ``name``."""
    node = config.get(name)
    if not isinstance(node, dict) or not isinstance(node.get("name"), str):
        raise DataError(
            f"{path}: config.{name}.name is missing; is this a yfbench run? Re-run the run"
        )
    return node


def _read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        return {}
    return read_json_object(
        path, "re-run the run, or delete the file to count the run as incomplete"
    )


def metrics_path(run_dir: Path) -> Path | None:
    """``metrics.jsonl`` or ``metrics.jsonl.gz``, whichever exists (both is an error)."""
    plain, packed = run_dir / METRICS_FILE, run_dir / METRICS_GZ_FILE
    if plain.is_file() and packed.is_file():
        raise DataError(
            f"both {plain} and {packed} exist; keep one of them (the .gz is the committed "
            "copy of a finished run, the plain file a live run's)"
        )
    return next((p for p in (plain, packed) if p.is_file()), None)


def _content(path: Path) -> bytes:
    """The uncompressed bytes of a metrics file (every member of a .gz)."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError) as error:
        raise DataError(
            f"cannot read {path} ({error}); the file is damaged: restore it from git "
            "or re-run the run"
        ) from error


def _read_metrics(
    run_dir: Path,
) -> tuple[list[dict[str, Any]], tuple[Path, dict[str, Any]] | None]:
    """Records of the metrics file, and the file with its fingerprint (None if there is no
    file); a truncated last line (a run killed mid-write) is skipped."""
    path = metrics_path(run_dir)
    if path is None:
        return [], None
    data = _content(path)
    try:
        lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error}); the file is damaged") from error
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise DataError(
                f"{path}:{number} is not valid JSON ({error}); the file is corrupt: "
                "re-run the run, or delete that line if you know why it is there"
            ) from error
        step = record.get("step") if isinstance(record, dict) else None
        if not isinstance(record, dict) or not (step is None or isinstance(step, int)):
            raise DataError(
                f"{path}:{number} is not a metrics record (an object with an integer "
                "'step'); re-run the run"
            )
        records.append({k: from_json_safe(v) for k, v in record.items()})
    return records, (path, fingerprint(data))
