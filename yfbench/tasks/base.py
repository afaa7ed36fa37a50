"""The interface between the trainer and a workload: a task declares its own facts.

As AlgoPerf's ``spec.py``, a task says in one place what it is: its validation metrics and
their direction, the target metric, its data source, the recipe's gradient clip and lr
decay. The engine, the run's summary.json and (through summary.json) the analysis read
them from here. The trainer owns everything around the task: device placement, train and
eval mode of the model, the seed of the global random stream, and the module the training forward
calls (the model, or the DistributedDataParallel wrapper of it that averages gradients).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from yfbench.errors import UserError


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


#: Direction of a validation metric: better when lower ("min") or higher ("max").
Direction = Literal["min", "max"]


class Task(ABC):
    """A workload: model, data, loss, evaluation and learning-rate schedule.

    The batch of iteration ``step`` is a pure function of (seed, step), so a resumed
    run sees exactly the batches an uninterrupted one would, with no iterator state.
    Anything carried from one step to the next (an LSTM's hidden state under
    truncated backprop) is returned by :meth:`state_dict` and checkpointed.
    """

    model: nn.Module
    steps_per_epoch: int
    #: The validation metrics :meth:`evaluate` returns, each with its direction.
    metrics: ClassVar[dict[str, Direction]] = {"loss": "min"}
    #: The headline metric among :attr:`metrics`: targets are set on it and plots show it.
    target_metric: ClassVar[str] = "loss"
    #: Where this run's data came from (a dataset and variant), recorded in summary.json.
    data_source: str | None = None
    #: Global-norm gradient clip the task's recipe applies to every optimizer (None: off).
    grad_clip_norm: float | None = None
    #: Precisions the task's kernels support on CPU (every precision runs on CUDA).
    cpu_precisions: tuple[str, ...] = ("fp32", "bf16", "fp16")

    @abstractmethod
    def train_loss(self, module: nn.Module, step: int) -> Tensor:
        """Scalar training loss on the batch of iteration ``step`` (0-based).

        The forward goes through ``module``: the trainer's wrapper of :attr:`model`
        (DistributedDataParallel under torchrun, which averages the gradients), never
        ``self.model`` itself.
        """

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """The declared validation :attr:`metrics` of :attr:`model`.

        The trainer calls it with the model in eval mode and autograd off.
        """

    def lr_multiplier(self, epoch: int) -> float:
        """The recipe's hand-set decay at ``epoch`` (YellowFin receives it as lr_factor)."""
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


__all__ = ["DictConfig", "Direction", "Task", "TaskContext"]
