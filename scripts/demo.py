"""`make demo`: YellowFin vs Adam vs momentum SGD on Tiny Shakespeare (real text), CPU-sized.

Trains the char-LSTM at mini scale with each optimizer (one Hydra multirun), then writes
the paper's speedup table over Adam and the convergence plots, and prints where they are.
Rerunning resumes or skips finished runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# One fixed learning rate per baseline from the paper's Tiny Shakespeare grids (not a sweep:
# `make reproduce-tinyshakespeare` tunes them over the full grid).
GRID_POINTS = "yellowfin,adam_lr5e-3,momentum_sgd_lr5e-1"


def _run(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300, help="iterations per optimizer")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    args = parser.parse_args()
    runs, report = args.out / "runs", args.out / "report"
    python = sys.executable
    _run(
        [
            python,
            "-m",
            "yfbench",
            "-m",
            "task=tinyshakespeare_lstm",
            "scale=mini",
            f"grid_point={GRID_POINTS}",
            f"trainer.max_steps={args.steps}",
            f"trainer.eval_every={max(args.steps // 3, 1)}",
            f"hydra.sweep.dir={runs}",
        ]
    )
    window = max(args.steps // 20, 2)
    _run(
        [
            python,
            "-m",
            "yfbench.analysis",
            "speedup",
            str(runs),
            "--baseline",
            "adam",
            "--window",
            str(window),
            "--out",
            str(report / "speedup.csv"),
        ]
    )
    _run([python, "-m", "yfbench.analysis", "plot", str(runs), "--out", str(report)])
    print(f"\nSpeedup table: {report / 'speedup.md'} (and .csv)")
    for plot in sorted(report.glob("*.png")):
        print(f"Plot: {plot}")


if __name__ == "__main__":
    main()
