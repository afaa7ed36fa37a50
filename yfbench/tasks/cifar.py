"""CIFAR-10/100 image classification with the authors' TF ResNet recipe.

Batch of iteration ``step``: epoch ``step // steps_per_epoch`` shuffles the training set
with a generator seeded by (seed, epoch), the step takes its slice, and the crop/flip
draws come from a generator seeded by (seed, step); so it is a pure function of
(seed, step). The whole dataset lives on the task's device as uint8.

The training loss is cross-entropy + weight_decay * sum(w^2) / 2 over conv and linear
weights (TF's ``l2_loss``), so every optimizer minimises the same regularised objective;
validation reports plain cross-entropy and accuracy on the test set.

With several processes each rank trains on its share of every (augmented) batch; batch
norm's statistics are then those of the rank's share, so N processes do not reproduce
one process's run exactly (SyncBatchNorm would).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from yfbench.data.cifar import CifarData, load_cifar10, load_cifar100, random_crop_flip, standardize
from yfbench.errors import UserError
from yfbench.models.resnet import CifarResNet, units_for_depth
from yfbench.seeding import isolated, keyed_generator
from yfbench.tasks.base import Task, TaskContext
from yfbench.tasks.checks import flag, integer, number

# Streams of random draws, kept apart so no two ever share a seed.
_SHUFFLE, _AUGMENT, _SUBSET = 0, 1, 2


def _subset(images: Tensor, labels: Tensor, size: int | None) -> tuple[Tensor, Tensor]:
    """A fixed random ``size`` examples, the same for every run (the files are class-sorted)."""
    if size is None or size >= len(labels):
        return images, labels
    keep = torch.randperm(len(labels), generator=keyed_generator(_SUBSET))[:size]
    return images[keep], labels[keep]


class CifarTask(Task):
    metrics = {"loss": "min", "accuracy": "max"}
    target_metric = "accuracy"

    def __init__(
        self,
        data: CifarData,
        model: CifarResNet,
        batch_size: int,
        weight_decay: float,
        eval_batch_size: int,
        ctx: TaskContext,
    ) -> None:
        self.seed, self.device, self.channels_last = ctx.seed, ctx.device, ctx.channels_last
        self.data_source = data.source
        self.train_images = data.train_images.to(ctx.device)
        self.train_labels = data.train_labels.to(ctx.device)
        self.test_images = data.test_images.to(ctx.device)
        self.test_labels = data.test_labels.to(ctx.device)
        if not 1 <= batch_size <= len(self.train_labels) or eval_batch_size < 1:
            raise UserError(
                f"task.batch_size={batch_size} must be between 1 and the number of training "
                f"images ({len(self.train_labels)}), task.eval_batch_size={eval_batch_size} >= 1"
            )
        self.batch_size = batch_size
        self.rank_share = ctx.share(batch_size)
        self.steps_per_epoch = len(self.train_labels) // batch_size
        self.weight_decay = weight_decay
        self.eval_batch_size = eval_batch_size
        self.model = model
        self._epoch_order: tuple[int, Tensor] | None = None

    def _inputs(self, images: Tensor) -> Tensor:
        x = standardize(images)
        return (
            x.contiguous(memory_format=torch.channels_last)
            if self.channels_last
            else x.contiguous()
        )

    def _order(self, epoch: int) -> Tensor:
        """The training-set permutation of ``epoch`` (kept for the epoch's steps)."""
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            order = torch.randperm(
                len(self.train_labels), generator=keyed_generator(self.seed, _SHUFFLE, epoch)
            )
            self._epoch_order = (epoch, order.to(self.device))
        return self._epoch_order[1]

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Augmented, standardised inputs and labels of iteration ``step`` (this rank's share).

        The whole batch is augmented, then shared out: every rank sees the examples and
        crops one process would.
        """
        epoch, position = divmod(step, self.steps_per_epoch)
        index = self._order(epoch)[position * self.batch_size : (position + 1) * self.batch_size]
        images = random_crop_flip(
            self.train_images[index], keyed_generator(self.seed, _AUGMENT, step)
        )
        share = self.rank_share
        return self._inputs(images[share]), self.train_labels[index][share]

    def train_loss(self, module: nn.Module, step: int) -> Tensor:
        inputs, labels = self.batch(step)
        loss = F.cross_entropy(module(inputs), labels)
        squared = torch.stack([w.pow(2).sum() for w in self.model.decay_parameters()]).sum()
        return loss + 0.5 * self.weight_decay * squared

    def evaluate(self) -> dict[str, float]:
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        for start in range(0, len(self.test_labels), self.eval_batch_size):
            labels = self.test_labels[start : start + self.eval_batch_size]
            logits = self.model(
                self._inputs(self.test_images[start : start + self.eval_batch_size])
            )
            total_loss += F.cross_entropy(logits.float(), labels, reduction="sum")
            correct += (logits.argmax(dim=1) == labels).sum()
        count = len(self.test_labels)
        return {"loss": total_loss.item() / count, "accuracy": correct.item() / count}


def check_settings(cfg: DictConfig) -> None:
    """Reject out-of-range batch, subset, decay and model settings before any data is read."""
    integer("task.batch_size", cfg.batch_size, 1)
    integer("task.eval_batch_size", cfg.eval_batch_size, 1)
    integer("task.train_subset", cfg.train_subset, 1, nullable=True)
    integer("task.test_subset", cfg.test_subset, 1, nullable=True)
    number("task.weight_decay", cfg.weight_decay, 0)
    model = cfg.model
    bottleneck = flag("task.model.bottleneck", model.bottleneck)
    _units(model, bottleneck)
    _check_filters(model.filters, bottleneck)
    number("task.model.leakiness", model.leakiness, 0, 1)
    number("task.model.bn_eps", model.bn_eps, 0, open_low=True)
    number("task.model.bn_momentum", model.bn_momentum, 0, 1)


def _units(model: DictConfig, bottleneck: bool) -> int:
    """Units per stage: from ``depth`` when it is set, else ``units_per_stage``."""
    if model.depth is None:
        return integer("task.model.units_per_stage", model.units_per_stage, 1)
    try:
        return units_for_depth(integer("task.model.depth", model.depth, 1), bottleneck)
    except ValueError as error:  # its message reads "depth must be ..., got ..."
        raise UserError(f"task.model.{error}; or set it to null to use units_per_stage") from error


def _check_filters(filters: object, bottleneck: bool) -> None:
    """Four widths >= 1 (stem, stage 1, 2, 3); a bottleneck stage is 4x its inner width."""
    widths = list(filters) if OmegaConf.is_list(filters) else filters
    if not isinstance(widths, list) or len(widths) != 4:
        raise UserError(f"task.model.filters must be a list of 4 widths, got {widths!r}")
    for stage, width in enumerate(widths):
        integer(f"task.model.filters[{stage}]", width, 1)
    if bottleneck and any(width % 4 for width in widths[1:]):
        raise UserError(
            f"task.model.filters[1:] must be multiples of 4 with bottleneck units, got {widths}"
        )


def _model(cfg: DictConfig, num_classes: int, seed: int) -> CifarResNet:
    """The configured ResNet, initialised from ``seed`` without touching the global RNG."""
    with isolated(seed):
        return CifarResNet(
            num_classes,
            _units(cfg, cfg.bottleneck),
            cfg.bottleneck,
            tuple(cfg.filters),
            cfg.leakiness,
            cfg.bn_eps,
            cfg.bn_momentum,
        )


def _build(cfg: DictConfig, ctx: TaskContext, model: CifarResNet, data: CifarData) -> CifarTask:
    data = CifarData(
        *_subset(data.train_images, data.train_labels, cfg.train_subset),
        *_subset(data.test_images, data.test_labels, cfg.test_subset),
        data.source,
    )
    return CifarTask(data, model, cfg.batch_size, cfg.weight_decay, cfg.eval_batch_size, ctx)


def build_cifar10(cfg: DictConfig, ctx: TaskContext) -> CifarTask:
    check_settings(cfg)
    model = _model(cfg.model, 10, ctx.seed)
    return _build(cfg, ctx, model, load_cifar10(ctx.data_dir, ctx.cache_dir, cfg.source))


def build_cifar100(cfg: DictConfig, ctx: TaskContext) -> CifarTask:
    check_settings(cfg)
    model = _model(cfg.model, 100, ctx.seed)
    return _build(cfg, ctx, model, load_cifar100(ctx.data_dir, ctx.cache_dir))
