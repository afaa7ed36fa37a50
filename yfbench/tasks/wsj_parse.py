"""WSJ constituency parsing as language modeling (Choe & Charniak 2016).

An LSTM LM is trained on linearized trees (see :mod:`yfbench.data.treebank`); validation
reports its perplexity on the dev trees. Parsing F1 comes from reranking a parser's
n-best candidates by LM score: :meth:`WsjParseTask.rerank_score`.

Data: the full WSJ from ``task.data.wsj_dir`` (LDC layout; sections 02-21 train, 24 dev),
or, when it is null, the NLTK 10% sample split by document: wsj_0001-0159 train,
wsj_0160-0179 dev, wsj_0180-0199 test (held out, unused here).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from yfbench.data import treebank
from yfbench.data.cache import cached_tensors
from yfbench.data.files import fetch
from yfbench.data.text import EOS
from yfbench.data.treebank import (
    TREEBANK_SAMPLE,
    Tree,
    TreeVocabulary,
    normalize,
    read_sample,
    read_wsj_sections,
)
from yfbench.errors import UserError
from yfbench.parsing import BracketScore, bracket_score, rerank
from yfbench.seeding import seed_global
from yfbench.tasks.base import TaskContext
from yfbench.tasks.language_model import LanguageModelTask, build_lstm, check_settings

# Document index boundaries of the sample's train / dev / test split.
SAMPLE_TRAIN_END, SAMPLE_DEV_END = 159, 179


class WsjParseTask(LanguageModelTask):
    """The LM task over linearized trees, plus scoring of whole trees for reranking."""

    def __init__(
        self,
        vocab: TreeVocabulary,
        train_ids: Tensor,
        dev_ids: Tensor,
        cfg: DictConfig,
        ctx: TaskContext,
        data_source: str,
    ) -> None:
        self.vocab = vocab
        super().__init__(build_lstm(len(vocab), cfg), train_ids, dev_ids, cfg, ctx, data_source)

    @torch.no_grad()
    def log_probs(self, trees: list[Tree]) -> list[float]:
        """Sum of the LM's token log-probabilities of each tree's linearization.

        Each sentence is scored from a zero state after an ``<eos>``, as it would follow a
        sentence boundary in training; the score includes the closing ``<eos>``.
        """
        eos = self.vocab.ids[EOS]
        targets = [torch.tensor(self.vocab.encode(normalize(t))) for t in trees]
        inputs = [torch.cat([torch.tensor([eos]), t[:-1]]) for t in targets]
        inputs = pad_sequence(inputs, batch_first=True, padding_value=eos).to(self.device)
        padded = pad_sequence(targets, batch_first=True, padding_value=-100).to(self.device)
        self.model.eval()
        logits, _ = self.model(inputs, self.model.init_hidden(len(trees)))
        self.model.train()
        nll = F.cross_entropy(logits.transpose(1, 2), padded, ignore_index=-100, reduction="none")
        return (-nll.sum(dim=1)).tolist()

    def rerank_score(self, gold: list[Tree], nbest: list[list[Tree]]) -> BracketScore:
        """Bracket scores of the LM's favourite candidate per sentence against ``gold``."""
        return bracket_score(gold, rerank(nbest, self.log_probs))


def _check_sections(data: DictConfig) -> None:
    """Sections name the WSJ folders 00-24 (a float or string would fail deep in the reader)."""
    for key in ("train_sections", "dev_sections"):
        sections = data[key]
        valid = OmegaConf.is_list(sections) and len(sections) > 0
        if not valid or not all(_is_section(s) for s in sections):
            raise UserError(
                f"task.data.{key} must be a non-empty list of WSJ section numbers 0-24, "
                f"got {sections!r}"
            )


def _is_section(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24


def build(cfg: DictConfig, ctx: TaskContext) -> WsjParseTask:
    check_settings(cfg)
    if cfg.data.wsj_dir is None:
        source = "wsj_sample"
        vocab, train_ids, dev_ids = _sample_corpus(ctx, cfg.data.min_count)
    else:
        _check_sections(cfg.data)
        source = "wsj"
        train = read_wsj_sections(cfg.data.wsj_dir, cfg.data.train_sections)
        dev = read_wsj_sections(cfg.data.wsj_dir, cfg.data.dev_sections)
        vocab, train_ids, dev_ids = _encode(train, dev, cfg.data.min_count)
    seed_global(ctx.seed)
    return WsjParseTask(vocab, train_ids, dev_ids, cfg, ctx, source)


def _encode(
    train: list[Tree], dev: list[Tree], min_count: int
) -> tuple[TreeVocabulary, Tensor, Tensor]:
    """The training trees' vocabulary and the token ids of both splits."""
    vocab = TreeVocabulary.from_trees(train, min_count)
    train_ids, dev_ids = (
        torch.tensor([i for t in trees for i in vocab.encode(t)]) for trees in (train, dev)
    )
    return vocab, train_ids, dev_ids


def _sample_corpus(ctx: TaskContext, min_count: int) -> tuple[TreeVocabulary, Tensor, Tensor]:
    """The NLTK sample encoded by :func:`_encode`, cached: parsing and linearizing its
    3,914 trees is seconds of Python at every start. The cache is named after what made it:
    the archive's sha256, ``min_count`` and the treebank code (a change to the
    linearization never reuses an old cache)."""
    archive = fetch(TREEBANK_SAMPLE, ctx.data_dir)
    code = hashlib.sha256(Path(treebank.__file__).read_bytes()).hexdigest()[:12]
    name = f"sample-{TREEBANK_SAMPLE.sha256[:16]}-min{min_count}-code{code}.pt"

    def encode_sample() -> dict[str, Tensor]:
        documents = read_sample(ctx.data_dir)
        train = [t for doc in documents[:SAMPLE_TRAIN_END] for t in doc]
        dev = [t for doc in documents[SAMPLE_TRAIN_END:SAMPLE_DEV_END] for t in doc]
        vocab, train_ids, dev_ids = _encode(train, dev, min_count)
        return {
            "known_words": _strings_to_tensor(sorted(vocab.known_words)),
            "symbols": _strings_to_tensor(list(vocab.ids)),  # in id order
            "train_ids": train_ids,
            "dev_ids": dev_ids,
        }

    cached = cached_tensors(ctx.cache_dir / "wsj" / name, encode_sample, archive)
    symbols = _tensor_to_strings(cached["symbols"])
    vocab = TreeVocabulary(
        frozenset(_tensor_to_strings(cached["known_words"])),
        {symbol: index for index, symbol in enumerate(symbols)},
    )
    return vocab, cached["train_ids"], cached["dev_ids"]


def _strings_to_tensor(strings: list[str]) -> Tensor:
    """Newline-separated UTF-8 bytes (no symbol holds a newline: tokens are split on space)."""
    return torch.frombuffer(bytearray("\n".join(strings).encode("utf-8")), dtype=torch.uint8)


def _tensor_to_strings(data: Tensor) -> list[str]:
    text = data.numpy().tobytes().decode("utf-8")
    return text.split("\n") if text else []
