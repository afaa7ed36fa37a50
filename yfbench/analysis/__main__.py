"""Command line: ``python -m yfbench.analysis {speedup,plot,seeds,tuned,tables,synthetic,
report,leaderboard} ...``.

Bad input (missing or damaged run files, mixed windows, no baseline) ends with exit
status 2 and one line that names the file and what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from yfbench import atomic
from yfbench.errors import UserError


def _pair(text: str) -> tuple[str, str]:
    method, sep, baseline = text.partition(":")
    if not sep or not method or not baseline:
        raise argparse.ArgumentTypeError(f"expected METHOD:BASELINE, got {text!r}")
    return method, baseline


def _ladder(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected fractions like 0.25,0.5,1, got {text!r}"
        ) from error


def _add_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--window", type=int, help="smoothing window (default: analysis.window)")


def build_parser() -> argparse.ArgumentParser:
    from yfbench.analysis.seeds import DETREND_WINDOW
    from yfbench.analysis.speedup import DEFAULT_LADDER

    parser = argparse.ArgumentParser(
        prog="python -m yfbench.analysis",
        description="Speedup tables, plots and the paper-vs-ours report, from run directories.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ladder = ",".join(f"{f:g}" for f in DEFAULT_LADDER)

    speedup = commands.add_parser("speedup", help="speedup table and curve over a tuned baseline")
    _add_runs(speedup)
    speedup.add_argument("--baseline", default="adam", help="optimizer name (default: adam)")
    speedup.add_argument(
        "--pair",
        action="append",
        type=_pair,
        metavar="METHOD:BASELINE",
        help="extra comparison (default: yellowfin:momentum_sgd, when both were run)",
    )
    speedup.add_argument(
        "--ladder", type=_ladder, default=DEFAULT_LADDER, help=f"curve rungs (default: {ladder})"
    )
    speedup.add_argument(
        "--out",
        type=Path,
        help="X.csv: writes X.csv (per comparison), X_seeds.csv (per seed), X_curve.csv "
        "(per seed and rung) and X.md",
    )

    plot = commands.add_parser("plot", help="training loss, validation, YellowFin, speedup curve")
    _add_runs(plot)
    plot.add_argument("--baseline", default="adam", help="curve baseline (default: adam)")
    plot.add_argument(
        "--ladder", type=_ladder, default=DEFAULT_LADDER, help=f"curve rungs (default: {ladder})"
    )
    plot.add_argument("--out", type=Path, required=True, help="folder for the PNG and SVG files")

    seeds = commands.add_parser("seeds", help="are the seeds independent? (detrended loss r)")
    seeds.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    seeds.add_argument(
        "--detrend",
        type=int,
        default=DETREND_WINDOW,
        help=f"centred moving-average window, odd (default: {DETREND_WINDOW})",
    )
    seeds.add_argument("--out", type=Path, help="CSV path; a .md table is written beside it")

    tuned = commands.add_parser(
        "tuned", help="grid_point names of each optimizer's tuned point (for a second stage)"
    )
    _add_runs(tuned)

    tables = commands.add_parser(
        "tables",
        help="fixed-budget, best-Adam-per-target, validation, YellowFin hyperparameter and "
        "clip-binding tables (CSV + Markdown)",
    )
    _add_runs(tables)
    tables.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder: writes fixed_budget, best_adam, validation, hyperparams and clipping "
        ".csv/.md",
    )

    synthetic = commands.add_parser("synthetic", help="the paper's analysis figures (CPU)")
    synthetic.add_argument("--out", type=Path, default=Path("results/synthetic"))

    board = commands.add_parser(
        "leaderboard", help="results/leaderboard.md and performance profiles of the peers"
    )
    board.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    board.add_argument("--out", type=Path, default=Path("results/leaderboard.md"))
    board.add_argument("--overhead", type=Path, help="scripts/measure_peers.py's JSON")
    board.add_argument(
        "--speed", type=Path, help="bench_training.py --variants peers --json (steps/s)"
    )
    board.add_argument(
        "--probe-runs",
        type=Path,
        help="runs of lrs probed outside the grids (peers-bracket-<task>)",
    )
    board.add_argument("--reference", help="sets each task's target (default: nadamw_algoperf)")
    board.add_argument("--tuning-seed", type=int, help="left out of the table (default: 1)")
    board.add_argument("--r-max", type=float, help="profile range (default: AlgoPerf's 4)")

    report = commands.add_parser("report", help="results/README.md: paper vs ours")
    report.add_argument("--runs", type=Path, default=Path("results/runs"))
    report.add_argument("--out", type=Path, default=Path("results/README.md"))
    report.add_argument("--window", type=int, help="smoothing window (default: analysis.window)")
    report.add_argument(
        "--readme",
        type=Path,
        help="also write the findings between <!-- findings:start --> and "
        "<!-- findings:end --> in this file (e.g. README.md)",
    )
    return parser


def _stem_path(out: Path, suffix: str) -> Path:
    """``X.csv`` -> ``X<suffix>`` beside it (e.g. ``X_curve.csv``)."""
    return out.with_name(out.stem + suffix)


def run_speedup(args: argparse.Namespace) -> None:
    from yfbench.analysis.runs import load_runs
    from yfbench.analysis.speedup import HEADLINE, compare_all, seeds_frame, summary_frame
    from yfbench.analysis.tables import display_curve, display_speedups, markdown_table

    pairs = args.pair if args.pair is not None else [("yellowfin", "momentum_sgd")]
    comparisons = compare_all(
        load_runs(args.run_dirs), args.baseline, pairs, args.window, args.ladder
    )
    curve = summary_frame(comparisons)
    headline = curve[curve["fraction"] == HEADLINE]
    text = markdown_table(display_speedups(headline))
    text += (
        "\nSpeedup curve (targets: the baseline's best smoothed loss by each share of its run)\n\n"
    )
    text += markdown_table(display_curve(curve))
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        outputs = {
            args.out: headline,
            _stem_path(args.out, "_seeds.csv"): seeds_frame(comparisons, HEADLINE),
            _stem_path(args.out, "_curve.csv"): seeds_frame(comparisons),
        }
        for path, table in outputs.items():
            atomic.write_text(path, table.to_csv(index=False))
        atomic.write_text(args.out.with_suffix(".md"), text)
        print("wrote " + ", ".join(str(p) for p in [*outputs, args.out.with_suffix(".md")]))


def run_plot(args: argparse.Namespace) -> None:
    from yfbench.analysis.plots import plot_runs
    from yfbench.analysis.runs import load_runs

    frame = load_runs(args.run_dirs)
    for path in plot_runs(frame, args.out, args.window, args.baseline, args.ladder):
        print(f"wrote {path}")


def run_seeds(args: argparse.Namespace) -> None:
    from yfbench.analysis.runs import load_runs
    from yfbench.analysis.seeds import seed_correlations
    from yfbench.analysis.tables import display_seeds, markdown_table

    table = seed_correlations(load_runs(args.run_dirs), args.detrend)
    if table.empty:
        raise UserError("no grid point has two or more seeds; nothing to correlate")
    text = markdown_table(display_seeds(table))
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(args.out, table.to_csv(index=False))
        atomic.write_text(args.out.with_suffix(".md"), text)
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


def run_tuned(args: argparse.Namespace) -> None:
    """Print ``adam_lr1e-3,momentum_sgd_lr1e-1,yellowfin``: the second stage's grid points."""
    from yfbench.analysis.runs import load_runs
    from yfbench.analysis.speedup import tuned_grid_point_names

    print(",".join(tuned_grid_point_names(load_runs(args.run_dirs), args.window)))


def run_tables(args: argparse.Namespace) -> None:
    from yfbench.analysis.bundle import build, write_tables
    from yfbench.analysis.runs import load_runs

    bundle = build(load_runs(args.run_dirs), args.window)
    for problem in bundle.problems:
        print(f"not computed: {problem}", file=sys.stderr)
    for path in write_tables(bundle, args.out):
        print(f"wrote {path}")


def run_synthetic(args: argparse.Namespace) -> None:
    from yfbench.analysis.synthetic import run_all

    for path in run_all(args.out):
        print(f"wrote {path}")


def run_leaderboard(args: argparse.Namespace) -> None:
    from yfbench.analysis.leaderboard import write_leaderboard

    given = {
        "tuning_seed": args.tuning_seed,
        "reference": args.reference,
        "r_max": args.r_max,
        "speed": args.speed,
        "probe_runs": args.probe_runs,
    }
    written = write_leaderboard(
        args.run_dirs,
        args.out,
        args.overhead,
        **{name: value for name, value in given.items() if value is not None},
    )
    print("wrote " + ", ".join(str(p) for p in written))


def run_report(args: argparse.Namespace) -> None:
    from yfbench.analysis.report import write_report

    print(f"wrote {write_report(args.runs, args.out, args.window, args.readme)}")
    if args.readme:
        print(f"wrote the findings block of {args.readme}")


COMMANDS = {
    "speedup": run_speedup,
    "plot": run_plot,
    "seeds": run_seeds,
    "tuned": run_tuned,
    "tables": run_tables,
    "synthetic": run_synthetic,
    "report": run_report,
    "leaderboard": run_leaderboard,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="[%(name)s] %(levelname)s: %(message)s")
    try:
        COMMANDS[args.command](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an output that cannot be written: the old file is kept
        print(
            f"error: cannot write {error.filename} ({error.strerror}); the previous file, if "
            "any, is unchanged: free some space or pick a writable --out and rerun",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
