"""Next-pixel prediction on binarized images with one LSTM layer: a model whose gradients explode.

The authors' adaptive-clipping figure trained a 1-layer, 1000-unit LSTM to predict the
next pixel of binarized MNIST (784 steps, batch 32). MNIST is not available offline here,
so this task reads the offline CIFAR-10 copy: each image is converted to grayscale
(ITU-R 601 luma), average-pooled to ``image_size`` x ``image_size``, binarized at
``threshold`` and read row by row as a sequence of bits. The LSTM sees the previous bit
and predicts the next one; the loss is the mean binary cross-entropy (nats per pixel).
Differences from the authors' setup: natural-image pixels (spatially smoother runs than
MNIST digits, and a different share of ones), and smaller sizes at the cpu scale
(conf/task_scale/pixel_lstm_*.yaml).

The batch of iteration ``step`` is a pure function of (seed, step): a permutation of the
training images per (seed, epoch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from yfbench.data.cifar import load_cifar10
from yfbench.errors import UserError
from yfbench.seeding import keyed_generator
from yfbench.tasks.base import Task, TaskContext
from yfbench.tasks.checks import integer, number

# The stream of random draws of the training order.
_SHUFFLE = 0
# Grayscale weights (ITU-R BT.601 luma) of R, G, B.
_LUMA = (0.299, 0.587, 0.114)


def binarize(images: Tensor, size: int, threshold: float) -> Tensor:
    """uint8 [N, 32, 32, 3] images -> float {0, 1} pixel sequences [N, size * size]."""
    if 32 % size:
        raise UserError(f"task.image_size={size} must divide 32 (the CIFAR image side)")
    gray = (images.float() / 255.0) @ torch.tensor(_LUMA)
    pooled = F.avg_pool2d(gray.unsqueeze(1), kernel_size=32 // size).squeeze(1)
    return (pooled > threshold).float().reshape(len(images), size * size)


class PixelLSTM(nn.Module):
    """One LSTM layer over the previous bit; a linear read-out gives the next bit's logit."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=1, hidden_size=hidden, batch_first=True)
        self.readout = nn.Linear(hidden, 1)

    def forward(self, bits: Tensor) -> Tensor:
        """Logits of bits[:, 1:] given bits[:, :-1] (shape [N, L - 1])."""
        outputs, _ = self.lstm(bits[:, :-1].unsqueeze(-1))
        return self.readout(outputs).squeeze(-1)


class PixelSequenceTask(Task):
    """Validation: the test subset's mean binary cross-entropy (the default ``loss``)."""

    def __init__(self, cfg: DictConfig, ctx: TaskContext) -> None:
        integer("task.image_size", cfg.image_size, 1)
        integer("task.hidden", cfg.hidden, 1)
        integer("task.batch_size", cfg.batch_size, 1)
        integer("task.test_subset", cfg.test_subset, 1)
        number("task.threshold", cfg.threshold, 0.0, 1.0)
        self.grad_clip_norm = number(
            "task.grad_clip_norm", cfg.grad_clip_norm, 0, open_low=True, nullable=True
        )
        data = load_cifar10(ctx.data_dir, ctx.cache_dir, cfg.source)
        self.data_source = data.source
        self.seed, self.device = ctx.seed, ctx.device
        self.train_bits = binarize(data.train_images, cfg.image_size, cfg.threshold).to(ctx.device)
        test = binarize(data.test_images[: cfg.test_subset], cfg.image_size, cfg.threshold)
        self.test_bits = test.to(ctx.device)
        self.batch_size = cfg.batch_size
        self.rank_share = ctx.share(cfg.batch_size)
        self.steps_per_epoch = len(self.train_bits) // cfg.batch_size
        # Initialised from the global generator, which the trainer seeds with the run's seed.
        self.model = PixelLSTM(cfg.hidden)
        self._epoch_order: tuple[int, Tensor] | None = None

    def _order(self, epoch: int) -> Tensor:
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            generator = keyed_generator(self.seed, _SHUFFLE, epoch)
            order = torch.randperm(len(self.train_bits), generator=generator)
            self._epoch_order = (epoch, order.to(self.device))
        return self._epoch_order[1]

    def train_loss(self, module: nn.Module, step: int) -> Tensor:
        epoch, position = divmod(step, self.steps_per_epoch)
        start = position * self.batch_size
        bits = self.train_bits[self._order(epoch)[start : start + self.batch_size]]
        bits = bits[self.rank_share]
        return F.binary_cross_entropy_with_logits(module(bits), bits[:, 1:])

    def evaluate(self) -> dict[str, float]:
        logits = self.model(self.test_bits)
        loss = F.binary_cross_entropy_with_logits(logits, self.test_bits[:, 1:])
        return {"loss": float(loss)}


def build(cfg: DictConfig, ctx: TaskContext) -> PixelSequenceTask:
    return PixelSequenceTask(cfg, ctx)
