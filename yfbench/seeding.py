"""Every random stream of a run, made in one place.

A run's randomness comes from its ``seed`` through these helpers only, so that every
batch is a pure function of (seed, step) and two streams never share a seed:

- :func:`keyed_generator`: a stream of its own per key, (seed, stream, epoch or step);
  what a new task uses for anything drawn per step or per epoch;
- :func:`seed_global`: torch's global stream (model initialisation, dropout masks);
- :func:`isolated` : a block whose draws start from ``seed`` and leave the global stream
  as it was (a model built before the global stream is seeded for training);
- :func:`numbered_generator`: a generator seeded with a plain integer, as the noisy
  quadratic's streams were made; kept bit for bit so its committed runs reproduce.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def keyed_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by a well-mixed hash of ``key`` (identical on every device)."""
    seed = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(seed)


def numbered_generator(number: int) -> torch.Generator:
    """A CPU generator seeded with ``number`` itself (prefer :func:`keyed_generator`)."""
    return torch.Generator().manual_seed(number)


def seed_global(seed: int) -> None:
    """Seed torch's global stream (CPU and every CUDA device)."""
    torch.manual_seed(seed)


@contextmanager
def isolated(seed: int) -> Iterator[None]:
    """Draws inside the block start from ``seed``; the global CPU stream is restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
