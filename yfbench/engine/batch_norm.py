"""Batch-norm statistics recomputed at an evaluation point that training never visited.

Optimizers that evaluate elsewhere than where they compute gradients (Schedule-Free's
averaged x) gathered their running statistics at the training point; evaluating x with
them mixes two models. The statistics are recomputed at x from recent training batches
and put back afterwards, so evaluation leaves no trace in the training run.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from yfbench.tasks import Task


@contextmanager
def recomputed_statistics(task: Task, batches: int, step: int) -> Iterator[None]:
    """Inside: running statistics averaged over the training batches of the ``batches``
    steps before ``step`` at the current parameters; on exit: everything as it was.

    Called inside the trainer's eval mode: the batches go through the bare model (never a
    DistributedDataParallel wrapper: only the evaluating process recomputes) in train
    mode, so that its batch-norm layers gather statistics, and the model is back in eval
    mode for the evaluation."""
    norms = [m for m in task.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    first = max(step - batches, 0)
    if not norms or first == step:
        yield
        return
    saved = [
        (m, m.momentum, {k: b.clone() for k, b in m.named_buffers(recurse=False)}) for m in norms
    ]
    carried = copy.deepcopy(task.state_dict())  # e.g. an LSTM's state: not advanced here
    device = next(task.model.parameters()).device
    try:
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batches
        task.model.train()
        with (
            torch.no_grad(),
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        ):
            for batch_step in range(first, step):
                task.train_loss(task.model, batch_step)
        task.model.eval()
        yield
    finally:
        task.load_state_dict(carried)
        with torch.no_grad():
            for module, momentum, buffers in saved:
                module.momentum = momentum
                for name, buffer in buffers.items():
                    getattr(module, name).copy_(buffer)
