"""The paper's analysis setting: a quadratic with a spread of curvatures and noisy gradients."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from yfbench.errors import UserError
from yfbench.tasks.base import Task, TaskContext


class NoisyQuadratic(Task):
    """f(x) = sum_i h_i (x_i - c_i)^2 / 2, observed through gradients h (x - c) + sigma * noise.

    Curvatures are log-spaced in [1 / condition_number, 1]; the noise of iteration
    ``step`` comes from a generator seeded by (seed, step), so batches are reproducible.
    """

    eval_metric = "loss"

    def __init__(self, dim: int, condition_number: float, noise_std: float, ctx: TaskContext):
        if dim < 1 or condition_number < 1 or noise_std < 0:
            raise UserError(
                "noisy_quadratic needs task.dim >= 1, task.condition_number >= 1 and "
                f"task.noise_std >= 0 (got {dim}, {condition_number}, {noise_std})"
            )
        self.seed, self.device = ctx.seed, ctx.device
        self.steps_per_epoch = 1
        init = torch.Generator().manual_seed(ctx.seed)
        self.curvature = torch.logspace(-math.log10(condition_number), 0, dim).to(ctx.device)
        self.optimum = torch.randn(dim, generator=init).to(ctx.device)
        self.noise_std = noise_std
        self.model = nn.Module()
        self.model.x = nn.Parameter(torch.zeros(dim, device=ctx.device))

    def _exact_loss(self) -> Tensor:
        return 0.5 * (self.curvature * (self.model.x - self.optimum) ** 2).sum()

    def train_loss(self, step: int) -> Tensor:
        noise = torch.randn(
            self.model.x.shape,
            generator=torch.Generator().manual_seed(self.seed * 1_000_003 + step),
        ).to(self.device)
        return self._exact_loss() + self.noise_std * (noise * self.model.x).sum()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        distance = torch.linalg.vector_norm(self.model.x - self.optimum)
        return {"loss": self._exact_loss().item(), "dist_to_opt": distance.item()}


def build(cfg: DictConfig, ctx: TaskContext) -> NoisyQuadratic:
    return NoisyQuadratic(cfg.dim, cfg.condition_number, cfg.noise_std, ctx)
