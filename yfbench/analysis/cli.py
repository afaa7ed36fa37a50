"""What the claim-experiment analyses share: their command line and their markdown page.

The command line: run directories in, tables and figures under ``--out``, one "wrote"
line per file, and a user's mistake (bad input, an unreadable or unwritable file) as one
message and exit status 2 rather than a traceback.

A module adds its own options (passed to its ``write_outputs`` by name) and subcommands
(a word before the run directories; each prints one line the Makefile reads).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from yfbench import atomic
from yfbench.errors import UserError


def run(
    module: str,
    write_outputs: Callable[..., list[Path]],
    argv: list[str] | None = None,
    *,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
    subcommands: Mapping[str, Callable[[list[str]], str]] | None = None,
) -> int:
    """``python -m <module> [SUBCOMMAND ARGS... | RUN_DIR... --out DIR [--window N]]``."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if subcommands and args[:1] and args[0] in subcommands:
            print(subcommands[args[0]](args[1:]))
            return 0
        parser = argparse.ArgumentParser(prog=f"python -m {module}")
        parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
        parser.add_argument("--out", type=Path, required=True, help="folder for tables and figures")
        parser.add_argument(
            "--window", type=int, help="smoothing window (default: analysis.window)"
        )
        if options:
            options(parser)
        for path in write_outputs(**vars(parser.parse_args(args))):
            print(f"wrote {path}")
    except (UserError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def write_page(path: Path, lines: list[str], figures: list[Path]) -> Path:
    """``lines``, then a Figures section linking each PNG among ``figures``, written whole."""
    links = [f"- [{p.name}]({p.name})" for p in figures if p.suffix == ".png"]
    atomic.write_text(path, "\n".join([*lines, "## Figures", "", *links]).rstrip() + "\n")
    return path
