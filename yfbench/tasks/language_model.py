"""LSTM language models trained with truncated backprop: PTB (words) and Tiny Shakespeare (chars).

The WSJ parsing task reuses :class:`LanguageModelTask` on linearized trees.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.nn import functional as F

from yfbench.data.text import BpttBatches, load_ptb, load_tinyshakespeare
from yfbench.models.lstm import Hidden, LSTMLanguageModel
from yfbench.tasks.base import Task, TaskContext


class LanguageModelTask(Task):
    """Next-token cross-entropy over consecutive BPTT windows of a token stream.

    Iteration ``step`` trains on window ``step % steps_per_epoch``, so its batch depends on
    ``step`` alone. The LSTM state flows (detached) from one window to the next and is
    reset to zeros at the start of every epoch; it is part of :meth:`state_dict`, so a
    resumed run continues with exactly the state an uninterrupted one would have.
    """

    eval_metric = "perplexity"

    def __init__(
        self,
        model: LSTMLanguageModel,
        train_ids: Tensor,
        valid_ids: Tensor,
        cfg: DictConfig,
        ctx: TaskContext,
    ) -> None:
        self.model = model.to(ctx.device)
        self.train_batches = BpttBatches(train_ids, cfg.batch_size, cfg.unroll, ctx.device)
        self.valid_batches = BpttBatches(valid_ids, cfg.batch_size, cfg.unroll, ctx.device)
        self.steps_per_epoch = len(self.train_batches)
        self.grad_clip_norm = cfg.grad_clip_norm
        self.decay_rate = float(cfg.lr_decay.rate)
        self.decay_start = int(cfg.lr_decay.start_epoch)
        self.device = ctx.device
        self.hidden: Hidden | None = None

    def _loss(self, inputs: Tensor, targets: Tensor, hidden: Hidden) -> tuple[Tensor, Hidden]:
        logits, hidden = self.model(inputs, hidden)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return loss, (hidden[0].detach(), hidden[1].detach())

    def train_loss(self, step: int) -> Tensor:
        window = step % self.steps_per_epoch
        if window == 0 or self.hidden is None:
            self.hidden = self.model.init_hidden(self.train_batches.rows.shape[0])
        loss, self.hidden = self._loss(*self.train_batches.window(window), self.hidden)
        return loss

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean cross-entropy over the whole validation stream, with its own carried state."""
        self.model.eval()
        hidden = self.model.init_hidden(self.valid_batches.rows.shape[0])
        total = torch.zeros((), device=self.device)
        for window in range(len(self.valid_batches)):
            loss, hidden = self._loss(*self.valid_batches.window(window), hidden)
            total += loss
        self.model.train()
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


def build_lstm(vocab_size: int, cfg: DictConfig) -> LSTMLanguageModel:
    """The task's LSTM from its ``model`` config node."""
    return LSTMLanguageModel(vocab_size, **cfg.model)


def build_tinyshakespeare(cfg: DictConfig, ctx: TaskContext) -> LanguageModelTask:
    vocab, ids = load_tinyshakespeare(ctx.data_dir, cfg.data.train_fraction)
    torch.manual_seed(ctx.seed)
    return LanguageModelTask(build_lstm(len(vocab), cfg), ids["train"], ids["valid"], cfg, ctx)


def build_ptb(cfg: DictConfig, ctx: TaskContext) -> LanguageModelTask:
    vocab, ids = load_ptb(ctx.data_dir, cfg.data.max_vocab)
    torch.manual_seed(ctx.seed)
    return LanguageModelTask(build_lstm(len(vocab), cfg), ids["train"], ids["valid"], cfg, ctx)
