"""Which seeds tune and which seeds report: no optimizer profits from tuning on the seeds
it is evaluated on.

Tuning seeds of a (task, scale, setting) are the seeds every grid point of every
optimizer has (seed 1 under the two-stage protocol: every grid point with seed 1, then
the tuned points with more seeds). The tuned point of each optimizer is chosen on them
alone. Evaluation seeds of a comparison are the seeds both tuned points ran, minus the
tuning seeds; every reported number (speedups, curves, fixed budgets, validation) uses
only them, for every optimizer, YellowFin included, so comparisons stay paired by seed.

Where no evaluation seed exists yet (a grid still running, or a full grid where every
seed tuned), numbers fall back to the tuning seeds and are labelled *provisional*: they
carry the winner's curse of the tuned baselines, which untuned YellowFin cannot have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# The seed the peers' grids tune on (every grid point runs it; the leaderboard and the bracket
# check name it, where the reproductions find theirs with tuning_seeds).
TUNING_SEED = 1


class Seeded(Protocol):
    """Anything with per-seed curves (a grid point)."""

    curves: Mapping[int, object]


@dataclass(frozen=True)
class SeedPlan:
    """The seeds a comparison reports on, and whether they are evaluation seeds."""

    tuning: tuple[int, ...]
    used: tuple[int, ...]
    provisional: bool

    @property
    def label(self) -> str:
        """``3 evaluation seeds (2,3,4)`` or ``provisional: tuning seed 1 only``."""
        if not self.used:
            return "no common seeds"
        seeds, noun = seed_list(self.used), "seed" if len(self.used) == 1 else "seeds"
        if self.provisional:
            return f"provisional: tuning {noun} {seeds} only (no evaluation seed yet)"
        return f"{len(self.used)} evaluation {noun} ({seeds})"


@dataclass(frozen=True)
class Band:
    """A number over seeds as the tables report it: the median and range of the seeds
    that have one (a diverged seed has none; NaN where no seed has)."""

    median: float
    low: float
    high: float
    n: int


def band(values: Iterable[float]) -> Band:
    """The :class:`Band` of ``values``, leaving out those that are not finite."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Band(math.nan, math.nan, math.nan, 0)
    return Band(float(np.median(finite)), min(finite), max(finite), len(finite))


def seed_list(seeds: Iterable[int]) -> str:
    return ",".join(str(s) for s in sorted(seeds))


def tuning_seeds(points: Iterable[Seeded]) -> tuple[int, ...]:
    """The seeds every grid point has (empty when some grid point shares none)."""
    sets = [set(p.curves) for p in points]
    return tuple(sorted(set.intersection(*sets))) if sets else ()


def evaluation_plan(method: Seeded, base: Seeded, tuning: Iterable[int]) -> SeedPlan:
    """The seeds ``method`` and ``base`` both ran, minus ``tuning``; the common tuning
    seeds (provisional) when that leaves none."""
    tuning = tuple(sorted(tuning))
    common = set(method.curves) & set(base.curves)
    evaluation = tuple(sorted(common - set(tuning)))
    if evaluation:
        return SeedPlan(tuning, evaluation, provisional=False)
    return SeedPlan(tuning, tuple(sorted(common)), provisional=True)


def own_evaluation_seeds(point: Seeded, tuning: Iterable[int]) -> tuple[tuple[int, ...], bool]:
    """One grid point's evaluation seeds (its seeds minus ``tuning``), or its tuning seeds
    with ``provisional=True`` when it has no other."""
    evaluation = tuple(sorted(set(point.curves) - set(tuning)))
    if evaluation:
        return evaluation, False
    return tuple(sorted(point.curves)), True


def own_plan(point: Seeded, tuning: Iterable[int]) -> SeedPlan:
    """:func:`own_evaluation_seeds` as a :class:`SeedPlan`, for a number about one point
    (a median, a band) that a table labels the way the speedup report labels its rows."""
    tuning = tuple(sorted(tuning))
    seeds, provisional = own_evaluation_seeds(point, tuning)
    return SeedPlan(tuning, seeds, provisional)
