"""Command line: ``python -m yfbench.analysis {speedup,plot,synthetic,report} ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from yfbench.errors import UserError


def _pair(text: str) -> tuple[str, str]:
    method, sep, baseline = text.partition(":")
    if not sep or not method or not baseline:
        raise argparse.ArgumentTypeError(f"expected METHOD:BASELINE, got {text!r}")
    return method, baseline


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m yfbench.analysis",
        description="Speedup tables, plots and the paper-vs-ours report, from run directories.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    speedup = commands.add_parser("speedup", help="speedup table over a tuned baseline")
    speedup.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    speedup.add_argument("--baseline", default="adam", help="optimizer name (default: adam)")
    speedup.add_argument(
        "--pair",
        action="append",
        type=_pair,
        metavar="METHOD:BASELINE",
        help="extra comparison (default: yellowfin:momentum_sgd, when both were run)",
    )
    speedup.add_argument("--window", type=int, help="smoothing window (default: analysis.window)")
    speedup.add_argument("--out", type=Path, help="CSV path; a .md table is written beside it")

    plot = commands.add_parser("plot", help="training loss, validation and YellowFin figures")
    plot.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    plot.add_argument("--window", type=int, help="smoothing window (default: analysis.window)")
    plot.add_argument("--out", type=Path, required=True, help="folder for the PNG and SVG files")

    synthetic = commands.add_parser("synthetic", help="the paper's analysis figures (CPU)")
    synthetic.add_argument("--out", type=Path, default=Path("results/synthetic"))

    report = commands.add_parser("report", help="results/README.md: paper vs ours")
    report.add_argument("--runs", type=Path, default=Path("results/runs"))
    report.add_argument("--out", type=Path, default=Path("results/README.md"))
    report.add_argument("--window", type=int, help="smoothing window (default: analysis.window)")
    return parser


def run_speedup(args: argparse.Namespace) -> None:
    from yfbench.analysis.runs import load_runs
    from yfbench.analysis.speedup import speedup_table
    from yfbench.analysis.tables import display_speedups, markdown_table

    pairs = args.pair if args.pair is not None else [("yellowfin", "momentum_sgd")]
    table = speedup_table(load_runs(args.run_dirs), args.baseline, pairs, args.window)
    text = markdown_table(display_speedups(table))
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        args.out.with_suffix(".md").write_text(text)
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


def run_plot(args: argparse.Namespace) -> None:
    from yfbench.analysis.plots import plot_runs
    from yfbench.analysis.runs import load_runs

    for path in plot_runs(load_runs(args.run_dirs), args.out, args.window):
        print(f"wrote {path}")


def run_synthetic(args: argparse.Namespace) -> None:
    from yfbench.analysis.synthetic import run_all

    for path in run_all(args.out):
        print(f"wrote {path}")


def run_report(args: argparse.Namespace) -> None:
    from yfbench.analysis.report import write_report

    print(f"wrote {write_report(args.runs, args.out, args.window)}")


COMMANDS = {
    "speedup": run_speedup,
    "plot": run_plot,
    "synthetic": run_synthetic,
    "report": run_report,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
