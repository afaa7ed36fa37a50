"""LSTM language models trained with truncated backprop: PTB (words) and Tiny Shakespeare (chars).

The WSJ parsing task reuses :class:`LanguageModelTask` on linearized trees.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.nn import functional as F

from yfbench.data.text import BpttBatches, load_ptb, load_tinyshakespeare
from yfbench.errors import UserError
from yfbench.models.lstm import Hidden, LSTMLanguageModel
from yfbench.seeding import keyed_generator, seed_global
from yfbench.tasks.base import Task, TaskContext
from yfbench.tasks.checks import flag, integer, number

# Random stream of the per-epoch rotation (CIFAR's streams are 0-2).
_ROTATION = 3


class LanguageModelTask(Task):
    """Next-token cross-entropy over consecutive BPTT windows of a token stream.

    Every epoch rotates the training stream by an offset drawn from (seed, epoch) before
    cutting it into rows, so seeds see different text at every step; iteration ``step``
    trains on window ``step % steps_per_epoch`` of its epoch's layout, so its batch is a
    pure function of (seed, step). The LSTM state flows (detached) from one window to the
    next and is reset to zeros at the start of every epoch; it is part of
    :meth:`state_dict`, so a resumed run continues with exactly the state an
    uninterrupted one would have. Validation always reads the unrotated stream.

    With several processes each rank trains on its contiguous share of the rows (and
    carries only their state), so the ranks together see exactly one process's batch.
    """

    metrics = {"loss": "min", "perplexity": "min"}
    target_metric = "perplexity"
    # oneDNN has no fp16 LSTM on CPU.
    cpu_precisions = ("fp32", "bf16")

    def __init__(
        self,
        model: LSTMLanguageModel,
        train_ids: Tensor,
        valid_ids: Tensor,
        cfg: DictConfig,
        ctx: TaskContext,
        data_source: str,
    ) -> None:
        self.model = model
        self.data_source = data_source
        self.rank_rows = ctx.share(cfg.batch_size)
        self.train_batches = BpttBatches(train_ids, cfg.batch_size, cfg.unroll, ctx.device)
        self.valid_batches = BpttBatches(valid_ids, cfg.batch_size, cfg.unroll, ctx.device)
        self.steps_per_epoch = len(self.train_batches)
        self.grad_clip_norm = cfg.grad_clip_norm
        self.decay_rate = float(cfg.lr_decay.rate)
        self.decay_start = int(cfg.lr_decay.start_epoch)
        self.device = ctx.device
        self.seed = ctx.seed
        self.hidden: Hidden | None = None
        self._epoch_rows: tuple[int, Tensor] | None = None

    def _loss(
        self, module: nn.Module, inputs: Tensor, targets: Tensor, hidden: Hidden
    ) -> tuple[Tensor, Hidden]:
        logits, hidden = module(inputs, hidden)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return loss, (hidden[0].detach(), hidden[1].detach())

    def _rows(self, epoch: int) -> Tensor:
        """This rank's training rows of ``epoch`` (kept for the epoch's steps)."""
        if self._epoch_rows is None or self._epoch_rows[0] != epoch:
            generator = keyed_generator(self.seed, _ROTATION, epoch)
            offset = int(torch.randint(len(self.train_batches.ids), (), generator=generator))
            self._epoch_rows = (epoch, self.train_batches.rows(offset)[self.rank_rows])
        return self._epoch_rows[1]

    def train_loss(self, module: nn.Module, step: int) -> Tensor:
        epoch, window = divmod(step, self.steps_per_epoch)
        if window == 0 or self.hidden is None:
            self.hidden = self.model.init_hidden(self.rank_rows.stop - self.rank_rows.start)
        batch = self.train_batches.window(window, self._rows(epoch))
        loss, self.hidden = self._loss(module, *batch, self.hidden)
        return loss

    def evaluate(self) -> dict[str, float]:
        """Mean cross-entropy over the whole validation stream, with its own carried state."""
        hidden = self.model.init_hidden(self.valid_batches.batch_size)
        rows = self.valid_batches.rows()
        total = torch.zeros((), device=self.device)
        for window in range(len(self.valid_batches)):
            loss, hidden = self._loss(self.model, *self.valid_batches.window(window, rows), hidden)
            total += loss
        mean = total.item() / len(self.valid_batches)
        return {"loss": mean, "perplexity": float(torch.tensor(mean).exp())}

    def lr_multiplier(self, epoch: int) -> float:
        return self.decay_rate ** max(epoch - self.decay_start, 0)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.hidden is None else {"hidden": [t.cpu() for t in self.hidden]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        hidden = state.get("hidden")
        self.hidden = (
            None if hidden is None else (hidden[0].to(self.device), hidden[1].to(self.device))
        )


def check_settings(cfg: DictConfig) -> None:
    """Reject out-of-range model, batching and schedule settings before any data is read."""
    _check_model(cfg.model)
    integer("task.batch_size", cfg.batch_size, 1)
    integer("task.unroll", cfg.unroll, 1)
    number("task.grad_clip_norm", cfg.grad_clip_norm, 0, open_low=True, nullable=True)
    number("task.lr_decay.rate", cfg.lr_decay.rate, 0, open_low=True)
    integer("task.lr_decay.start_epoch", cfg.lr_decay.start_epoch, 0)


def _check_model(model: DictConfig) -> None:
    """The ``task.model`` keys are arguments of :class:`LSTMLanguageModel`, in range."""
    known = [p for p in inspect.signature(LSTMLanguageModel).parameters if p != "vocab_size"]
    for key in model:
        if key not in known:
            raise UserError(
                f"task.model.{key} is not a setting of the LSTM model; use: {', '.join(known)}"
            )
    hidden = integer("task.model.hidden_size", model.hidden_size, 1)
    integer("task.model.num_layers", model.num_layers, 1)
    embed = integer("task.model.embed_size", model.get("embed_size"), 1, nullable=True)
    number("task.model.dropout", model.get("dropout", 0.0), 0, 1, open_high=True)
    number("task.model.init_scale", model.get("init_scale"), 0, open_low=True, nullable=True)
    number("task.model.forget_bias", model.get("forget_bias", 0.0))
    tied = flag("task.model.tie_weights", model.get("tie_weights", False))
    if tied and embed not in (None, hidden):
        raise UserError(
            f"task.model.tie_weights needs task.model.embed_size == task.model.hidden_size, "
            f"got {embed} and {hidden}; set embed_size to null or to {hidden}"
        )


def build_lstm(vocab_size: int, cfg: DictConfig) -> LSTMLanguageModel:
    """The task's LSTM from its ``model`` config node (checked by :func:`check_settings`)."""
    return LSTMLanguageModel(vocab_size, **cfg.model)


def build_tinyshakespeare(cfg: DictConfig, ctx: TaskContext) -> LanguageModelTask:
    check_settings(cfg)
    fraction = number(
        "task.data.train_fraction", cfg.data.train_fraction, 0, 1, open_low=True, open_high=True
    )
    vocab, ids = load_tinyshakespeare(ctx.data_dir, fraction)
    seed_global(ctx.seed)
    model = build_lstm(len(vocab), cfg)
    return LanguageModelTask(model, ids["train"], ids["valid"], cfg, ctx, "tinyshakespeare")


def build_ptb(cfg: DictConfig, ctx: TaskContext) -> LanguageModelTask:
    check_settings(cfg)
    max_vocab = integer("task.data.max_vocab", cfg.data.max_vocab, 1, nullable=True)
    vocab, ids = load_ptb(ctx.data_dir, max_vocab)
    seed_global(ctx.seed)
    model = build_lstm(len(vocab), cfg)
    return LanguageModelTask(model, ids["train"], ids["valid"], cfg, ctx, "ptb")
