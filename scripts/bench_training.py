"""End-to-end training speed: steps/s of every task under each optimizer, in one process.

Two families of variants: ``training`` (YellowFin eager and fused, Adam, momentum SGD, and
the trainer's compile and precision options) and ``peers`` (every optimizer of the peers
leaderboard at its config's defaults: the cost of a step does not depend on the lr), whose
``--json`` file gives the leaderboard its wall-clock times.

Each measurement is a real yfbench run (`yfbench.engine.trainer.run`: the loop, its
records, flushes and all) of ``--steps`` iterations in a temporary directory. Variants
are interleaved round by round, in rotating order, and each run's rate is taken over its
second half (after warm-up: caches, oneDNN/cuDNN autotuning, fused YellowFin's and
``trainer.compile``'s compilation). The report gives the median it/s per variant and its
overhead over the family's first variant (momentum SGD), with the machine, its load, the
torch version and the command.

    python scripts/bench_training.py --out results/perf/cpu.md          # CPU, cpu scale
    python scripts/bench_training.py --device cuda --scale paper --out results/perf/cuda.md
    python scripts/bench_training.py --variants peers --tasks ptb_lstm --steps 100 \
        --out results/peers/speed.md --json results/peers/speed.json    # make peers-speed
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from yfbench.config import compose
from yfbench.engine.environment import describe_device, git_state
from yfbench.engine.trainer import run
from yfbench.peers import PEERS
from yfbench.run_contract import METRICS_FILE

TASKS = ("cifar10_resnet", "ptb_lstm", "tinyshakespeare_lstm", "wsj_parse_lstm")
BASELINE = "momentum SGD"
# name -> overrides; each family's first variant is the one the others are compared with.
# The optimizer variants run on every task; the trainer variants
# (compile, bf16) on the tasks named in TRAINER_VARIANT_TASKS.
OPTIMIZER_VARIANTS = {
    BASELINE: ["grid_point=momentum_sgd_lr1e-1"],
    "Adam": ["grid_point=adam_lr1e-3"],
    "YellowFin": ["optimizer=yellowfin"],
    "YellowFin (fused)": ["optimizer=yellowfin", "optimizer.fused=true"],
}
TRAINER_VARIANTS = {
    "momentum SGD + compile": ["grid_point=momentum_sgd_lr1e-1", "trainer.compile=true"],
    "momentum SGD + bf16": ["grid_point=momentum_sgd_lr1e-1", "trainer.precision=bf16"],
    "YellowFin (fused) + compile": [
        "optimizer=yellowfin",
        "optimizer.fused=true",
        "trainer.compile=true",
    ],
}
TRAINER_VARIANT_TASKS = ("cifar10_resnet", "ptb_lstm")
# On CUDA, the precisions and layouts a paper-scale user would try.
CUDA_VARIANTS = {
    "YellowFin (fused) + bf16": [
        "optimizer=yellowfin",
        "optimizer.fused=true",
        "trainer.precision=bf16",
    ],
    "momentum SGD + bf16": ["grid_point=momentum_sgd_lr1e-1", "trainer.precision=bf16"],
}
# The leaderboard's optimizers, named as their runs name them, with the peers grids'
# trainer setting (make peers-*: subnormals flushed).
PEER_VARIANTS = {
    name: [f"optimizer={name}", "trainer.flush_denormal=true"]
    for name in ("momentum_sgd", "adam", "yellowfin", *PEERS)
}


@dataclass
class Measurement:
    task: str
    variant: str
    rates: list[float]
    peak_memory_gb: float | None = None  # CUDA: torch.cuda.max_memory_allocated
    diverged: int = 0  # runs whose loss blew up: they still ran, and were timed, every step

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def second_half_rate(run_dir: Path) -> float:
    """it/s between the middle and the last train record (past warm-up and compilation)."""
    lines = (run_dir / METRICS_FILE).read_text().splitlines()
    train = [r for r in map(json.loads, lines) if r["split"] == "train"]
    middle, last = train[len(train) // 2], train[-1]
    return (last["step"] - middle["step"]) / (last["time_s"] - middle["time_s"])


def measure(
    task: str, overrides: list[str], args: argparse.Namespace, root: Path
) -> tuple[float, float | None, bool]:
    """(it/s, peak CUDA memory in GB or None, whether it diverged) of one short run.

    A step costs the same whether the loss falls or blows up, so a run that diverged but
    ran every step is timed like any other (an untuned optimizer at its defaults may
    diverge within ``--steps``); one that stopped early has no rate over its second half."""
    cfg = compose(
        [
            f"task={task}",
            f"scale={args.scale}",
            *overrides,
            f"trainer.max_steps={args.steps}",
            f"trainer.device={args.device}",
            f"trainer.threads={args.threads}",
            "trainer.eval_every=0",
            "trainer.flush_every=100",
        ]
    )
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(dir=root) as run_dir:
        summary = run(cfg, Path(run_dir))
        ran_every_step = summary.get("steps") == args.steps
        if summary["status"] not in ("completed", "diverged") or not ran_every_step:
            raise RuntimeError(
                f"{task} {overrides}: {summary['status']} after {summary.get('steps')} of "
                f"{args.steps} steps: {summary.get('error')}"
            )
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        return second_half_rate(Path(run_dir)), peak, summary["status"] == "diverged"


def variants_for(task: str, device: str, family: str) -> dict[str, list[str]]:
    if family == "peers":
        return dict(PEER_VARIANTS)
    chosen = dict(OPTIMIZER_VARIANTS)
    if task in TRAINER_VARIANT_TASKS:
        chosen.update(TRAINER_VARIANTS)
    if device == "cuda":
        chosen.update(CUDA_VARIANTS)
        if task.startswith("cifar"):
            for name in CUDA_VARIANTS:
                chosen[f"{name} + channels_last"] = [
                    *CUDA_VARIANTS[name],
                    "trainer.channels_last=true",
                ]
    return chosen


def benchmark(args: argparse.Namespace, root: Path, load_before: tuple) -> list[Measurement]:
    """Every task's variants, interleaved; the report is rewritten after each task, so a
    time limit still leaves the tasks measured so far."""
    results: list[Measurement] = []
    for task in args.tasks:
        variants = variants_for(task, args.device, args.variants)
        rates: dict[str, list[float]] = {name: [] for name in variants}
        peaks: dict[str, float | None] = {}
        diverged = dict.fromkeys(variants, 0)
        names = list(variants)
        for round_index in range(args.rounds):
            shift = round_index % len(names)  # rotate the order: no variant always goes first
            for name in names[shift:] + names[:shift]:
                rate, peaks[name], blew_up = measure(task, variants[name], args, root)
                rates[name].append(rate)
                diverged[name] += blew_up
                note = " (diverged; every step ran)" if blew_up else ""
                print(f"{task:22s} {name:36s} {rate:8.2f} it/s{note}", flush=True)
        results += [
            Measurement(task, name, rates[name], peaks[name], diverged[name]) for name in names
        ]
        done = argparse.Namespace(
            **{**vars(args), "tasks": list(dict.fromkeys(m.task for m in results))}
        )
        load = (load_before, os.getloadavg())
        write(report(results, done, load), args.out)
        if args.json:
            write(json.dumps(speeds(results, args, load), indent=1) + "\n", args.json)
    return results


def write(text: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def speeds(results: list[Measurement], args: argparse.Namespace, load: tuple) -> dict:
    """The medians as ``{"tasks": {task: {variant: it/s}}}`` with how they were measured."""
    tasks: dict[str, dict[str, float]] = {}
    for m in results:
        tasks.setdefault(m.task, {})[m.variant] = m.median
    return {
        "tasks": tasks,
        "measured": (
            f"{shlex.join(['python', *sys.argv])} at commit {git_state()['commit']}; "
            f"{describe_device(torch.device(args.device))}; torch {torch.__version__}; "
            f"{args.threads} thread(s); load average (1, 5, 15 min) before "
            f"{_load(load[0])}, after {_load(load[1])}; median of {args.rounds} interleaved "
            f"runs of {args.steps} iterations, rate over each run's second half"
        ),
    }


def report(results: list[Measurement], args: argparse.Namespace, load: tuple) -> str:
    device = describe_device(torch.device(args.device))
    lines = [
        f"# End-to-end training speed ({args.device}, scale={args.scale})",
        "",
        f"Generated {datetime.date.today().isoformat()} by `{shlex.join(['python', *sys.argv])}`"
        f" at commit {git_state()['commit']} (dirty: {git_state()['dirty']}).",
        f"Device: {device}; torch {torch.__version__}; {args.threads} thread(s) per run.",
        f"Load average (1, 5, 15 min) before: {_load(load[0])}, after: {_load(load[1])}.",
        "",
        f"Each cell: median it/s over {args.rounds} interleaved runs of {args.steps} "
        "iterations (rate over each run's second half), and the time per step relative to "
        "the first variant of each task (+x% = slower).",
        "",
        "| task | variant | it/s (median) | runs (it/s) | time/step vs the first | peak memory |",
        "|---|---|---|---|---|---|",
    ]
    for task in args.tasks:
        own = [m for m in results if m.task == task]
        base = own[0].median
        for m in own:
            overhead = base / m.median - 1.0
            runs = ", ".join(f"{r:.1f}" for r in m.rates)
            runs += f" ({m.diverged} diverged; every step ran)" if m.diverged else ""
            peak = "—" if m.peak_memory_gb is None else f"{m.peak_memory_gb:.2f} GB"
            lines.append(
                f"| {task} | {m.variant} | {m.median:.2f} | {runs} | {overhead:+.1%} | {peak} |"
            )
    return "\n".join(lines) + "\n"


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--scale", choices=("cpu", "paper"), default="cpu")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--steps", type=int, default=200, help="iterations per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per variant")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", choices=("training", "peers"), default="training")
    parser.add_argument("--json", type=Path, help="also write the medians here (peers)")
    parser.add_argument("--out", type=Path, default=Path("results/perf/cpu.md"))
    args = parser.parse_args(argv)
    os.environ.setdefault("YFBENCH_DATA_DIR", str(Path("../shared/data").resolve()))
    with tempfile.TemporaryDirectory() as root:
        benchmark(args, Path(root), os.getloadavg())
    print(args.out.read_text())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
