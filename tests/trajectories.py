"""The authors' recorded YellowFin trajectories (../shared/reference), as test cases.

Each scenario is a noisy quadratic: gradient h * (x - c) + sigma * noise[t], scaled by
``spike_factor`` at the spike steps, from the recorded start x0, with one row of expected
statistics and parameters per step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from tests.helpers import REPO_ROOT

TRAJECTORIES = REPO_ROOT.parent / "shared" / "reference" / "yellowfin_trajectories.json"


def trajectory_cases() -> list:
    """Scenario names to parametrize over; one skipped case when the file is missing."""
    if not TRAJECTORIES.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"missing {TRAJECTORIES}"))]
    return sorted(json.loads(TRAJECTORIES.read_text())["scenarios"])


@dataclass
class Scenario:
    shapes: list[list[int]]
    optimizer_kwargs: dict[str, Any]
    steps: list[dict[str, Any]]
    x0: Tensor
    h: Tensor
    c: Tensor
    noise: Tensor
    sigma: float
    spike_steps: set[int]
    spike_factor: float

    @property
    def sizes(self) -> list[int]:
        return [math.prod(shape) for shape in self.shapes]

    def initial_params(self) -> list[nn.Parameter]:
        chunks = self.x0.split(self.sizes)
        return [
            nn.Parameter(x.reshape(s).clone()) for x, s in zip(chunks, self.shapes, strict=True)
        ]

    def gradient(self, t: int, x: Tensor) -> Tensor:
        """The flat gradient of step ``t`` at the flat parameters ``x``."""
        grad = self.h * (x - self.c) + self.sigma * self.noise[t]
        return grad * self.spike_factor if t in self.spike_steps else grad

    def split(self, flat: Tensor) -> list[Tensor]:
        """``flat`` cut into the scenario's parameter shapes."""
        chunks = flat.split(self.sizes)
        return [g.reshape(s) for g, s in zip(chunks, self.shapes, strict=True)]


def load_scenario(name: str) -> Scenario:
    data = json.loads(TRAJECTORIES.read_text())
    scenario = data["scenarios"][name]

    def as_f32(key: str) -> Tensor:
        return torch.tensor(scenario[key], dtype=torch.float32)

    return Scenario(
        shapes=data["shapes"],
        optimizer_kwargs=scenario["optimizer_kwargs"],
        steps=scenario["steps"],
        x0=as_f32("x0"),
        h=as_f32("h"),
        c=as_f32("c"),
        noise=as_f32("noise"),
        sigma=scenario["sigma"],
        spike_steps=set(scenario["spike_steps"]),
        spike_factor=scenario["spike_factor"],
    )
