"""Check a run's files against each other before any number is computed from them.

A run directory can be cut, appended to, copied and edited by hand; the analysis refuses
a run whose files disagree, with one message naming the file, instead of computing a
table from it. Checked for every run:

- ``run_config.json``: its ``config_hash`` is the hash of its ``config`` (a copy of a run
  with ``seed`` edited would otherwise count as a second seed);
- every logged ``loss`` (and validation metric, lr, momentum) is a number or a non-finite
  marker (``"nan"``, ``"inf"``), never text, ``null`` or ``true``;
- steps: ``summary.json``'s ``steps`` is an integer within ``trainer.max_steps`` and no
  record is past it.

And for a finished run (completed or diverged):

- the metrics file matches the summary's fingerprint (record count, last step, sha256 of
  the uncompressed bytes), where the summary has one (runs made before it was added have
  none: for those the step checks below are what can be verified);
- a completed run logged its last step; its training losses are
  finite, and, where step 1 is logged, none is larger in size than ``loss_factor x
  smoothing_steps`` times the first: a larger positive loss would have tripped the
  divergence rule (its moving average would exceed ``loss_factor`` times the first loss),
  and a larger negative one is no loss these tasks can produce at that scale.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from yfbench.errors import DataError
from yfbench.fingerprint import differences
from yfbench.run_contract import METRICS_FILE, RUN_CONFIG_FILE, SUMMARY_FILE, config_hash

FINISHED = ("completed", "diverged")
# Fields of a record that must hold numbers (or the non-finite markers).
NUMERIC = ("loss", "perplexity", "accuracy", "f1", "lr", "momentum")
# trainer.divergence's defaults, for records that predate the key.
DIVERGENCE_DEFAULTS = {"loss_factor": 10.0, "smoothing_steps": 50}
FIX = "restore the run's files (e.g. from git) or rerun the run, or leave it out of the inputs"


def verify_run(
    run_dir: Path,
    record: dict[str, Any],
    summary: dict[str, Any],
    records: list[dict[str, Any]],
    metrics: tuple[Path, dict[str, Any]] | None,
) -> None:
    """Raise a DataError naming the file when ``run_dir``'s files disagree."""
    config = record["config"]
    if record.get("config_hash") != config_hash(config):
        raise DataError(
            f"{run_dir / RUN_CONFIG_FILE}: its config_hash does not match its config (the "
            f"file was edited after the run, e.g. a copy with another seed); {FIX}"
        )
    where = metrics[0] if metrics else run_dir / METRICS_FILE
    _check_numbers(where, records)
    status = summary.get("status")
    trainer = config.get("trainer") or {}
    _check_steps(run_dir, where, summary, records, trainer.get("max_steps"))
    if status not in FINISHED:
        return
    recorded = summary.get("metrics_file")
    if isinstance(recorded, dict):
        if metrics is None:
            raise DataError(f"{where} is missing but summary.json describes it; {FIX}")
        changed = differences(recorded, metrics[1])
        if changed:
            raise DataError(
                f"{where} does not match the run's summary.json ({'; '.join(changed)}): the "
                f"file was cut, appended to or edited; {FIX}"
            )
    if status == "completed":
        _check_completed(where, summary, records, trainer)


def _check_numbers(where: Path, records: list[dict[str, Any]]) -> None:
    for record in records:
        for key in NUMERIC:
            value = record.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DataError(
                    f"{where}: the record of step {record.get('step')} has {key}={value!r}, "
                    f"not a number; {FIX}"
                )


def _check_steps(
    run_dir: Path,
    where: Path,
    summary: dict[str, Any],
    records: list[dict[str, Any]],
    max_steps: Any,
) -> None:
    steps = summary.get("steps")
    path = run_dir / SUMMARY_FILE
    if "steps" in summary and (
        isinstance(steps, bool)
        or not isinstance(steps, int)
        or steps < 0
        or (isinstance(max_steps, int) and steps > max_steps)
    ):
        raise DataError(
            f"{path} says steps={steps!r}, which a run of trainer.max_steps={max_steps} cannot "
            f"have; {FIX}"
        )
    limit = steps if summary.get("status") in FINISHED and isinstance(steps, int) else max_steps
    last = max((r["step"] for r in records if isinstance(r.get("step"), int)), default=None)
    if last is not None and isinstance(limit, int) and last > limit:
        raise DataError(
            f"{where} has records up to step {last}, past the run's {limit} steps "
            f"({path}, run_config.json): records were appended; {FIX}"
        )


def _check_completed(
    where: Path, summary: dict[str, Any], records: list[dict[str, Any]], trainer: dict[str, Any]
) -> None:
    """The last step logged, finite losses of a size the divergence rule allows."""
    steps = summary.get("steps")
    train = [r for r in records if r.get("split") == "train"]
    if train and train[-1].get("step") != steps:
        raise DataError(
            f"{where} ends at step {train[-1].get('step')} but the run completed {steps} "
            f"steps: the file was cut; {FIX}"
        )
    bad = next((r for r in train if not math.isfinite(r["loss"])), None)
    if bad is not None:
        raise DataError(
            f"{where}: a completed run with a non-finite loss at step {bad['step']} (the "
            f"divergence rule would have stopped it): the file was edited; {FIX}"
        )
    if not train or train[0].get("step") != 1 or summary.get("processes", 1) != 1:
        return
    settings = {**DIVERGENCE_DEFAULTS, **(trainer.get("divergence") or {})}
    bound = settings["loss_factor"] * settings["smoothing_steps"] * abs(train[0]["loss"])
    absurd = next((r for r in train if abs(r["loss"]) > bound), None)
    if absurd is not None:
        raise DataError(
            f"{where}: loss {absurd['loss']!r} at step {absurd['step']} of a completed run "
            f"is beyond what the divergence rule allows (|loss| <= {bound:.4g}): the file was "
            f"edited; {FIX}"
        )
