"""Train and eval mode of the model and the optimizer: switched by the trainer only.

A task never calls ``model.train()``/``model.eval()`` and never calls the optimizer's
``train()``/``eval()`` (Schedule-Free's, say): the trainer starts every session in train
mode (:func:`train_mode`) and runs evaluations and checkpoints inside :func:`eval_mode`,
which restores train mode however the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.optim import Optimizer


def set_mode(optimizer: Optimizer, mode: str) -> None:
    """Call the optimizer's ``train()`` or ``eval()`` when it has one."""
    switch = getattr(optimizer, mode, None)
    if callable(switch):
        switch()


def train_mode(model: nn.Module, optimizer: Optimizer | None = None) -> None:
    """Model and optimizer ready to step (some optimizers start in eval mode)."""
    model.train()
    if optimizer is not None:
        set_mode(optimizer, "train")


@contextmanager
def eval_mode(model: nn.Module, optimizer: Optimizer | None = None) -> Iterator[None]:
    """Model and optimizer in eval mode, without autograd, inside the block; back in train
    mode after it, even when the block raises."""
    model.eval()
    if optimizer is not None:
        set_mode(optimizer, "eval")
    try:
        with torch.no_grad():
            yield
    finally:
        train_mode(model, optimizer)
