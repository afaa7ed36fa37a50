"""Bracketing F1 with evalb's COLLINS.prm rules, and n-best reranking by a scoring model.

evalb rules implemented here:

* labels compare without function tags or indices (``NP-SBJ-1`` is ``NP``), and ``PRT``
  equals ``ADVP`` (EQ_LABEL);
* preterminals tagged ``-NONE- , : `` '' .`` are deleted before spans are computed,
  and brackets left with no words are dropped; part-of-speech brackets never count;
* the root wrapper (``TOP``, ``ROOT`` or the unlabelled outer bracket of .mrg files) does
  not count; the sentence's top constituent (usually ``S``) does;
* labelled spans form a multiset: a unary chain ``(NP (NP ..))`` is two brackets, and
  matches count with multiplicity;
* precision, recall and F1 are corpus-level (totals over all sentences).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yfbench.data.treebank import ROOT_LABELS, Tree, base_label, parse_trees
from yfbench.errors import UserError

DELETED_LABELS = frozenset({"TOP", "-NONE-", ",", ":", "``", "''", "."})
EQUIVALENT_LABELS = {"PRT": "ADVP"}

Span = tuple[str, int, int]


@dataclass(frozen=True)
class BracketScore:
    """Bracket counts; precision/recall/F1 in percent, as evalb prints them."""

    matched: int
    gold: int
    test: int

    def __add__(self, other: BracketScore) -> BracketScore:
        return BracketScore(
            self.matched + other.matched, self.gold + other.gold, self.test + other.test
        )

    @property
    def precision(self) -> float:
        return 100.0 * self.matched / self.test if self.test else 0.0

    @property
    def recall(self) -> float:
        return 100.0 * self.matched / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def labelled_spans(tree: Tree) -> tuple[Counter[Span], int]:
    """The multiset of (label, start, end) brackets and the number of scored words."""
    spans: Counter[Span] = Counter()

    def walk(node: Tree, start: int) -> int:
        if node.is_preterminal:
            return start + (base_label(node.label) not in DELETED_LABELS)
        end = start
        for child in node.children:
            if isinstance(child, str):
                raise UserError(f"bracket F1 needs part-of-speech tags; word {child!r} has none")
            end = walk(child, end)
        label = base_label(node.label)
        if end > start and node.label not in ROOT_LABELS and label not in DELETED_LABELS:
            spans[(EQUIVALENT_LABELS.get(label, label), start, end)] += 1
        return end

    return spans, walk(tree, 0)


def sentence_score(gold: Tree, test: Tree) -> BracketScore:
    gold_spans, gold_length = labelled_spans(gold)
    test_spans, test_length = labelled_spans(test)
    if gold_length != test_length:
        raise UserError(
            f"gold and test trees have {gold_length} and {test_length} scored words: they are "
            f"not parses of the same sentence ({' '.join(gold.words())!r})"
        )
    matched = sum((gold_spans & test_spans).values())
    return BracketScore(matched, sum(gold_spans.values()), sum(test_spans.values()))


def bracket_score(gold: list[Tree], test: list[Tree]) -> BracketScore:
    """Corpus-level bracket counts of ``test`` parses against ``gold`` (same order)."""
    if len(gold) != len(test):
        raise UserError(f"{len(gold)} gold trees but {len(test)} test trees")
    return sum(
        (sentence_score(g, t) for g, t in zip(gold, test, strict=True)), BracketScore(0, 0, 0)
    )


def read_nbest(path: Path) -> list[list[Tree]]:
    """Candidate parses per sentence: blocks of trees separated by blank lines.

    Each block lists one sentence's candidates (bracketed trees, each starting on a new
    line); blocks follow the order of the gold trees.
    """
    try:
        blocks = Path(path).read_text(encoding="utf-8").split("\n\n")
        nbest = [list(parse_trees(block)) for block in blocks if block.strip()]
    except (OSError, UnicodeDecodeError, UserError) as error:
        raise UserError(f"cannot read the n-best parses in {path} ({error})") from error
    if not nbest:
        raise UserError(f"no candidate trees in {path}")
    return nbest


def rerank(nbest: list[list[Tree]], score: Callable[[list[Tree]], list[float]]) -> list[Tree]:
    """For each sentence, the candidate with the highest ``score`` (first one on ties)."""
    best = []
    for index, candidates in enumerate(nbest):
        if not candidates:
            raise UserError(f"sentence {index} has no candidate parses")
        scores = score(candidates)
        best.append(candidates[max(range(len(candidates)), key=scores.__getitem__)])
    return best
