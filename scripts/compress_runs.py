"""Compress the metrics of finished runs for committing: metrics.jsonl -> metrics.jsonl.gz.

Only completed and diverged runs are compressed (an interrupted or failed run is resumed
or rerun by the next sweep and must keep its plain file); their checkpoints, which the
repository never commits, stay where they are. The analysis reads either form.

    python scripts/compress_runs.py results/runs/ptb_lstm/cpu
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
from pathlib import Path

from yfbench.run_contract import (
    FINISHED,
    METRICS_FILE,
    METRICS_GZ_FILE,
    RUN_CONFIG_FILE,
    SUMMARY_FILE,
)


def compress(run_dir: Path) -> int:
    """gzip one finished run's metrics.jsonl in place; returns the bytes saved."""
    plain, packed = run_dir / METRICS_FILE, run_dir / METRICS_GZ_FILE
    if not plain.is_file():
        return 0
    summary = run_dir / SUMMARY_FILE
    if not summary.is_file() or json.loads(summary.read_text()).get("status") not in FINISHED:
        return 0
    tmp = packed.with_name(packed.name + ".tmp")
    # mtime=0: the same metrics always give the same bytes (no spurious diffs).
    with open(plain, "rb") as source, gzip.GzipFile(tmp, "wb", compresslevel=9, mtime=0) as out:
        shutil.copyfileobj(source, out)
    os.replace(tmp, packed)
    saved = plain.stat().st_size - packed.stat().st_size
    plain.unlink()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    args = parser.parse_args()
    runs = [p.parent for root in args.roots for p in root.rglob(RUN_CONFIG_FILE)]
    saved = sum(compress(run_dir) for run_dir in sorted(runs))
    roots = ", ".join(map(str, args.roots))
    print(f"compressed finished runs under {roots}: {saved / 1e6:.1f} MB saved")


if __name__ == "__main__":
    main()
