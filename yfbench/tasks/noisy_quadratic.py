"""The paper's analysis setting: a quadratic with a spread of curvatures and noisy gradients."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from yfbench.errors import UserError
from yfbench.seeding import numbered_generator
from yfbench.tasks.base import Task, TaskContext
from yfbench.tasks.checks import integer, number

# float32 curvature, optimum, iterate, its gradient and one step's noise.
_BYTES_PER_COORDINATE = 5 * 4


class _Point(nn.Module):
    """The quadratic's iterate x as a module: its forward returns x (so DDP could wrap it)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.zeros(dim))

    def forward(self) -> Tensor:
        return self.x


class NoisyQuadratic(Task):
    """f(x) = sum_i h_i (x_i - c_i)^2 / 2, observed through gradients h (x - c) + sigma * noise.

    Curvatures are log-spaced in [1 / condition_number, 1]; the noise of iteration
    ``step`` comes from a generator seeded by (seed, step), so batches are reproducible.
    It has no batch to share out, so it runs in one process only.
    """

    metrics = {"loss": "min", "dist_to_opt": "min"}
    target_metric = "loss"
    data_source = "synthetic"

    def __init__(self, dim: int, condition_number: float, noise_std: float, ctx: TaskContext):
        integer("task.dim", dim, 1)
        number("task.condition_number", condition_number, 1)
        number("task.noise_std", noise_std, 0)
        _check_fits(dim, ctx.device)
        if ctx.world_size > 1:
            raise UserError(
                "task=noisy_quadratic has no batch to share out between processes (each "
                "step's gradient is one noisy sample); run it in one process, without torchrun"
            )
        self.seed, self.device = ctx.seed, ctx.device
        self.steps_per_epoch = 1
        self.noise_std = noise_std
        try:
            init = numbered_generator(ctx.seed)
            self.curvature = torch.logspace(-math.log10(condition_number), 0, dim).to(ctx.device)
            self.optimum = torch.randn(dim, generator=init).to(ctx.device)
            self.model = _Point(dim)
        except RuntimeError as error:  # allocation failure: CPU RuntimeError, CUDA OutOfMemoryError
            raise _too_large(dim, ctx.device, "the allocation failed") from error

    def _exact_loss(self, x: Tensor) -> Tensor:
        return 0.5 * (self.curvature * (x - self.optimum) ** 2).sum()

    def train_loss(self, module: nn.Module, step: int) -> Tensor:
        x = module()
        noise = torch.randn(x.shape, generator=numbered_generator(self.seed * 1_000_003 + step)).to(
            self.device
        )
        return self._exact_loss(x) + self.noise_std * (noise * x).sum()

    def evaluate(self) -> dict[str, float]:
        x = self.model()
        distance = torch.linalg.vector_norm(x - self.optimum)
        return {"loss": self._exact_loss(x).item(), "dist_to_opt": distance.item()}


def _check_fits(dim: int, device: torch.device) -> None:
    """Refuse a ``dim`` whose vectors exceed the free memory up front: on Linux an oversized
    allocation may succeed and the process then be killed when the memory is touched."""
    available = _available_bytes(device)
    if available is not None and dim * _BYTES_PER_COORDINATE > available:
        raise _too_large(dim, device, f"only {available / 2**30:.1f} GiB is available")


def _available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` in bytes (None where it cannot be told)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _too_large(dim: int, device: torch.device, reason: str) -> UserError:
    need = dim * _BYTES_PER_COORDINATE / 2**30
    return UserError(
        f"task.dim={dim} needs {need:.1f} GiB of {device.type} memory for the quadratic's "
        f"vectors, but {reason}; lower task.dim"
    )


def build(cfg: DictConfig, ctx: TaskContext) -> NoisyQuadratic:
    return NoisyQuadratic(cfg.dim, cfg.condition_number, cfg.noise_std, ctx)
