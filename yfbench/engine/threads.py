"""torch's intra-op thread count, with a warning when it oversubscribes the machine."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger("yfbench")


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> None:
    """Set ``trainer.threads`` (None: torch's default); warn above the core count, where
    each step waits on threads that take turns on the same cores (200x slower at 1000)."""
    if not threads:
        return
    cores = available_cores()
    if threads > cores:
        log.warning(
            "trainer.threads=%d is more than the %d cores this process can use: every step "
            "will be slower; use trainer.threads=%d or fewer",
            threads,
            cores,
            cores,
        )
    torch.set_num_threads(threads)
