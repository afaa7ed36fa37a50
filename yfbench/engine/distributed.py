"""One run trained by several processes (``torchrun``): who this process is, and the few
collectives the trainer needs.

torchrun starts one process per device and tells each its place through the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous address). With more than one
process the trainer wraps the model in DistributedDataParallel, so every rank's optimizer
steps with the same averaged gradient and stays identical to the others; rank 0 alone
writes the run directory, and the ranks meet at the trainer's sync points (flush,
evaluation, checkpoint) to take every decision together, so none waits for ever in a
collective that another has left. One process (plain ``python -m yfbench``) has no process
group: every method here is then the identity and a run is exactly what it was before.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from yfbench.engine.device import resolve_device
from yfbench.errors import UserError
from yfbench.seeding import keyed_generator, seed_global

T = TypeVar("T")
# Sorts after every real step: "this rank saw no divergence" when the earliest is picked.
_NO_STEP = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class Ranks:
    """This process's place in its run: rank ``rank`` of ``world_size`` (1: no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank on this machine: its GPU under CUDA

    @classmethod
    def from_environment(cls) -> Ranks:
        """What torchrun set; a plain ``python -m yfbench`` sets nothing: one process."""
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
        try:
            rank, world_size, local_rank = (int(os.environ.get(name, 0)) for name in names)
        except ValueError as error:
            raise UserError(f"{', '.join(names)} must be integers ({error})") from error
        return cls(rank, max(world_size, 1), local_rank)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory."""
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """The configured device; with several processes on CUDA, this process's own GPU."""
        device = resolve_device(name)
        if not self.distributed or device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"{self.local_rank + 1} processes on this machine but only "
                f"{torch.cuda.device_count()} CUDA device(s): lower torchrun's --nproc_per_node"
            )
        return torch.device("cuda", self.local_rank)

    def own_random_stream(self, seed: int) -> None:
        """Rank r > 0 draws its own dropout masks from (seed, r); rank 0 keeps the stream of
        a single process, so one process's run is unchanged."""
        if self.rank:
            seed_global(keyed_generator(seed, self.rank).initial_seed())

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """What the training forward calls: DDP averages the gradients in ``backward``."""
        if not self.distributed:
            return model
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    # ---------------------------------------------------------------- collectives
    def average(self, value: Tensor) -> Tensor:
        """The mean of a 0-d tensor over the ranks (the logged loss); stays on the device."""
        if not self.distributed:
            return value
        total = value.detach().reshape(1).clone()
        dist.all_reduce(total)  # a sum: gloo has no average
        return (total / self.world_size).reshape(())

    def agree(self, flags: Tensor, stop: str | None) -> tuple[Tensor, str | None]:
        """Every rank's divergence flags and stop signal, made one decision for all ranks.

        The flags become those of the earliest divergence any rank saw (each watches its
        own share's loss), and a signal to any rank stops them all at this step.
        """
        if not self.distributed:
            return flags, stop
        code = signal.Signals[stop].value if stop else 0
        mine = torch.cat([flags.to(torch.int64), flags.new_tensor([code], dtype=torch.int64)])
        table = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(table, mine)
        rows = torch.stack(table)
        first = torch.where(rows[:, 0] >= 0, rows[:, 0], _NO_STEP)
        earliest = rows[int(first.argmin())]  # ties and "none": the lowest rank's flags
        code = int(rows[:, 2].max())
        return earliest[:2], signal.Signals(code).name if code else None

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a decision or state only rank 0 can read)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: T) -> list[T] | None:
        """Every rank's ``value``, in rank order, on rank 0; None on the other ranks."""
        if not self.distributed:
            return [value]
        every_rank = [None] * self.world_size if self.is_main else None
        dist.gather_object(_on_cpu(value), every_rank, dst=0)
        return every_rank


def _on_cpu(value: Any) -> Any:
    """``value`` with its tensors (in dicts, lists, tuples) on the CPU: an object collective
    would recreate a CUDA tensor on the sender's GPU, inside rank 0's process."""
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_cpu(item) for item in value)
    return value


ONE_PROCESS = Ranks()


@contextmanager
def joined(ranks: Ranks, device_name: str) -> Iterator[None]:
    """The run's process group (none for one process), torn down however the run ends.

    gloo on CPU, NCCL on CUDA; the rendezvous address comes from torchrun's environment.
    """
    if not ranks.distributed:
        yield
        return
    device = ranks.device(device_name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        rank=ranks.rank,
        world_size=ranks.world_size,
        device_id=device if device.type == "cuda" else None,
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def log_file_for_main_only(ranks: Ranks) -> None:
    """The run directory's log file is rank 0's: the other ranks log to the console only."""
    if ranks.is_main:
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
