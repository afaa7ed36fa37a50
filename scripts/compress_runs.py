"""Compress the metrics of finished runs for committing: metrics.jsonl -> metrics.jsonl.gz.

Only completed and diverged runs are compressed (an interrupted or failed run is resumed
or rerun by the next sweep and must keep its plain file); their checkpoints, which the
repository never commits, stay where they are. The analysis reads either form.

Each run is compressed under its run directory's lock (a training run, or a second
compress_runs.py, holding it is skipped), into a new temporary file renamed over the
destination, so a full disk or a kill leaves the plain file as it was. Symlinked
directories are followed. A run whose summary.json cannot be read is named and skipped
(the others are compressed) and the exit status is 1.

    python scripts/compress_runs.py results/runs/ptb_lstm/cpu
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path

from yfbench import atomic
from yfbench.analysis.runs import find_run_dirs
from yfbench.engine.run_dir import RunDirectory
from yfbench.errors import UserError
from yfbench.run_contract import FINISHED, METRICS_FILE, METRICS_GZ_FILE, SUMMARY_FILE


def compress(run_dir: Path) -> int:
    """gzip one finished run's metrics.jsonl in place; returns the bytes saved."""
    plain, packed = run_dir / METRICS_FILE, run_dir / METRICS_GZ_FILE
    with RunDirectory(run_dir).claimed():
        if not plain.is_file() or _status(run_dir / SUMMARY_FILE) not in FINISHED:
            return 0
        try:
            # mtime=0: the same metrics always give the same bytes (no spurious diffs).
            with open(plain, "rb") as source, atomic.replaced(packed) as target:
                with gzip.GzipFile(fileobj=target, mode="wb", compresslevel=9, mtime=0) as out:
                    shutil.copyfileobj(source, out)
        except OSError as error:
            raise UserError(
                f"cannot write {packed} ({error.strerror}); {plain} is unchanged: free some "
                "space and rerun"
            ) from error
        saved = plain.stat().st_size - packed.stat().st_size
        plain.unlink()
    return saved


def _status(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(
            f"{path} cannot be read ({error}): rerun the run, or delete the file to leave the "
            "run uncompressed"
        ) from error
    return summary.get("status") if isinstance(summary, dict) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    args = parser.parse_args(argv)
    saved, skipped = 0, []
    try:
        run_dirs = find_run_dirs(args.roots)
    except UserError as error:
        print(f"compress_runs: error: {error}", file=sys.stderr)
        return 2
    for run_dir in run_dirs:
        try:
            saved += compress(run_dir)
        except UserError as error:
            skipped.append(str(error))
            print(f"compress_runs: skipped: {error}", file=sys.stderr)
    roots = ", ".join(map(str, args.roots))
    print(f"compressed finished runs under {roots}: {saved / 1e6:.1f} MB saved")
    if skipped:
        print(f"compress_runs: {len(skipped)} run(s) skipped (see above)", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
