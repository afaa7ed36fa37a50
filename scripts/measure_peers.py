"""Optimizer-state bytes per parameter and host reads per step of every optimizer, per task.

Builds each task at the given scale (its real model and data), takes a few training steps
with each optimizer, and writes ``{"tasks": {task: {optimizer: {...}}}, "measured": how}``
JSON for the leaderboard (``python -m yfbench.analysis leaderboard --overhead``). Host
reads are counted inside ``step`` over the steps after the first two (one-time set-up, e.g.
D-Adaptation's ||g_0||, is left out); state bytes are those of the optimizer's state_dict
after the last step.

    python scripts/measure_peers.py --tasks tinyshakespeare_lstm,ptb_lstm,cifar10_resnet \
        --out results/peers/overhead.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from yfbench.config import compose
from yfbench.data.files import cache_dir, data_dir
from yfbench.engine.environment import git_state
from yfbench.engine.modes import set_mode
from yfbench.engine.optimizers import build_optimizer, takes_loss
from yfbench.peers import PEERS
from yfbench.peers.overhead import HostReads, host_scalars, state_bytes
from yfbench.tasks import TaskContext, build_task

BASELINES = ("yellowfin", "adam", "momentum_sgd")
WARM_UP, MEASURED = 2, 4


def measure(task_name: str, optimizer_name: str, scale: str) -> dict[str, float]:
    cfg = compose([f"task={task_name}", f"optimizer={optimizer_name}", f"scale={scale}"])
    torch.manual_seed(cfg.seed)
    ctx = TaskContext(cfg.seed, torch.device("cpu"), data_dir(), cache_dir())
    task = build_task(cfg.task, ctx)
    model = task.model
    settings = OmegaConf.to_container(cfg.optimizer, resolve=True)
    optimizer = build_optimizer(model.parameters(), settings, model=model)
    set_mode(optimizer, "train")
    extra_loss = takes_loss(optimizer)
    reads = None
    for step in range(WARM_UP + MEASURED):
        loss = task.train_loss(model, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if task.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), task.grad_clip_norm)
        kwargs = {"loss": loss.detach()} if extra_loss else {}
        if step < WARM_UP:
            optimizer.step(**kwargs)
            continue
        reads = reads or HostReads(host_scalars(optimizer))
        with reads:
            optimizer.step(**kwargs)
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "state_bytes_per_param": state_bytes(optimizer) / parameters,
        "host_syncs_per_step": sum(reads.counts.values()) / MEASURED,
        "host_reads": dict(reads.counts),
        "parameter_tensors": len(list(model.parameters())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="tinyshakespeare_lstm,ptb_lstm,cifar10_resnet")
    parser.add_argument("--optimizers", default=",".join([*BASELINES, *PEERS]))
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("results/peers/overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, dict[str, dict]] = {}
    for task in args.tasks.split(","):
        for name in args.optimizers.split(","):
            results.setdefault(task, {})[name] = measure(task, name, args.scale)
            print(task, name, results[task][name], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    measured = (
        f"{shlex.join(['python', *sys.argv])} at commit {git_state()['commit']}; torch "
        f"{torch.__version__}; {WARM_UP} steps, then {MEASURED} counted, scale={args.scale}"
    )
    payload = {"tasks": results, "measured": measured}
    args.out.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
