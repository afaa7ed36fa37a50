"""Multi-layer LSTM language model (the paper's PTB, Tiny Shakespeare and WSJ models)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

Hidden = tuple[Tensor, Tensor]


class LSTMLanguageModel(nn.Module):
    """Embedding -> stacked LSTM -> linear decoder, trained with truncated backprop.

    ``init_scale`` draws every weight from U(-init_scale, init_scale) as the TF recipes
    do (None keeps PyTorch's defaults); ``forget_bias`` is added to the forget-gate bias.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int,
        embed_size: int | None = None,
        dropout: float = 0.0,
        init_scale: float | None = None,
        forget_bias: float = 0.0,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        embed_size = hidden_size if embed_size is None else embed_size
        if tie_weights and embed_size != hidden_size:
            raise ValueError("tie_weights needs embed_size == hidden_size")
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed_size, hidden_size, num_layers, batch_first=True, dropout=dropout)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if init_scale is not None:
            for param in self.parameters():
                nn.init.uniform_(param, -init_scale, init_scale)
        if forget_bias:
            with torch.no_grad():
                for name, param in self.lstm.named_parameters():
                    if name.startswith("bias_ih"):  # gate order: input, forget, cell, output
                        param[hidden_size : 2 * hidden_size] += forget_bias
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def init_hidden(self, batch_size: int) -> Hidden:
        weight = self.decoder.weight
        shape = (self.num_layers, batch_size, self.hidden_size)
        return weight.new_zeros(shape), weight.new_zeros(shape)

    def forward(self, tokens: Tensor, hidden: Hidden) -> tuple[Tensor, Hidden]:
        """Logits [batch, time, vocab] for ``tokens`` [batch, time] and the next hidden state."""
        output, hidden = self.lstm(self.dropout(self.embedding(tokens)), hidden)
        return self.decoder(self.dropout(output)), hidden
