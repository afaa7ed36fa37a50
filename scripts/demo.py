"""`make demo`: YellowFin vs Adam vs momentum SGD on Tiny Shakespeare (real text), on a CPU.

Trains the paper's char-LSTM with the three optimizers side by side (Hydra's joblib
launcher, two at a time, one thread each) for 1,500 iterations: 7.5 times YellowFin's
200-iteration slow start, about 4 minutes on 2 cores. Then it writes the speedup table
over Adam (both conventions), the speedup curve and the plots, and prints what they
show in sentences computed from the table. Rerunning skips finished runs.

Adam and momentum SGD use the learning rates the committed CPU-scale grid tuned
(`make reproduce-tinyshakespeare`, read from results/runs/tinyshakespeare_lstm/cpu by the
same rule as its second stage); the demo itself does not tune them, so it is a
demonstration, not a reproduction.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# The committed CPU-scale grid (3,000 iterations; its seed 1 chose the tuned points).
TUNING_GRID = Path(__file__).resolve().parent.parent / "results/runs/tinyshakespeare_lstm/cpu"


def tuned_grid_points() -> str:
    """``adam_lr5e-3,momentum_sgd_lr1,yellowfin``, read from the committed grid."""
    from yfbench.analysis.runs import load_runs
    from yfbench.analysis.speedup import tuned_grid_point_names

    return ",".join(tuned_grid_point_names(load_runs([TUNING_GRID])))


def _run(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="iterations per optimizer")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side")
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
            f"grid_point={tuned_grid_points()}",
            f"trainer.max_steps={args.steps}",
            f"trainer.eval_every={max(args.steps // 3, 1)}",
            "trainer.threads=1",
            "hydra/launcher=joblib",
            f"hydra.launcher.n_jobs={args.jobs}",
            f"hydra.sweep.dir={runs}",
        ]
    )
    speedup = report / "speedup.csv"
    analysis = [python, "-m", "yfbench.analysis"]
    _run([*analysis, "speedup", str(runs), "--baseline", "adam", "--out", str(speedup)])
    _run([*analysis, "plot", str(runs), "--out", str(report)])
    print("\nWhat this run shows (computed from the table):")
    for line in _sentences(speedup):
        print(f"- {line}")
    print(f"\nSpeedup table: {report / 'speedup.md'} (and .csv, per seed and per curve rung)")
    for plot in sorted(report.glob("*.png")):
        print(f"Plot: {plot}")


def _sentences(speedup_csv: Path) -> list[str]:
    import pandas as pd

    from yfbench.analysis.paper import paper_numbers
    from yfbench.analysis.report import sentence

    table = pd.read_csv(speedup_csv, keep_default_na=False, na_values=[""])
    # A 1,500-iteration demo is not the paper's experiment: keep its labels, not its numbers.
    labels = {task: {"label": v.get("label", task)} for task, v in paper_numbers()["tasks"].items()}
    paper = {"tasks": labels}
    return [sentence(row, paper) for _, row in table.iterrows() if row["baseline"] == "adam"]


if __name__ == "__main__":
    main()
