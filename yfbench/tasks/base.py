"""The interface between the trainer and a workload."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from yfbench.errors import UserError


def keyed_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by a well-mixed hash of ``key`` (identical on every device).

    Tasks key their random streams by (seed, stream, epoch or step), so every batch is a
    pure function of (seed, step) and two streams never share a seed.
    """
    seed = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class TaskContext:
    """What every task builder receives besides its own config."""

    seed: int
    device: torch.device
    data_dir: Path
    cache_dir: Path
    channels_last: bool = False
    # This process's place in a run of several (torchrun); batches stay global.
    rank: int = 0
    world_size: int = 1

    def share(self, batch_size: int) -> slice:
        """This rank's equal share of the global batch ``task.batch_size`` (all of it alone).

        Every rank builds the whole batch of a step and takes its share, so the batches
        stay a pure function of (seed, step) whatever the number of processes.
        """
        if batch_size % self.world_size:
            raise UserError(
                f"task.batch_size={batch_size} is the global batch and must be divisible by "
                f"the number of processes ({self.world_size}), which each take an equal share"
            )
        size = batch_size // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)


class Task(ABC):
    """A workload: model, data, loss, evaluation and learning-rate schedule.

    The batch of iteration ``step`` is a pure function of (seed, step), so a resumed
    run sees exactly the batches an uninterrupted one would, with no iterator state.
    Anything carried from one step to the next (an LSTM's hidden state under
    truncated backprop) is returned by :meth:`state_dict` and checkpointed.
    """

    model: nn.Module
    steps_per_epoch: int
    #: Global-norm gradient clip the task's recipe applies to every optimizer (None: off).
    grad_clip_norm: float | None = None
    #: Name of the headline validation metric ("accuracy", "perplexity", "f1", "loss").
    eval_metric: str = "loss"
    #: Precisions the task's kernels support on CPU (every precision runs on CUDA).
    cpu_precisions: tuple[str, ...] = ("fp32", "bf16", "fp16")
    _train_module: nn.Module | None = None

    @property
    def train_module(self) -> nn.Module:
        """What the training forward calls: ``model``, or the trainer's DDP wrapper of it.

        Everything else (state_dict, evaluation, parameter lists) uses ``model`` itself.
        """
        return self.model if self._train_module is None else self._train_module

    @train_module.setter
    def train_module(self, module: nn.Module) -> None:
        self._train_module = module

    @abstractmethod
    def train_loss(self, step: int) -> Tensor:
        """Forward pass on the training batch of iteration ``step`` (0-based); scalar loss."""

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Validation metrics, always including ``loss``; leaves the model in train mode."""

    def lr_multiplier(self, epoch: int) -> float:
        """The recipe's hand-set decay at ``epoch`` (YellowFin receives it as lr_factor)."""
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


__all__ = ["DictConfig", "Task", "TaskContext"]
