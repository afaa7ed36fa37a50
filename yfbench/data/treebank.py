"""Penn Treebank trees, and their linearization for "parsing as language modeling".

Choe & Charniak (2016) train an LSTM LM on trees written as token sequences: an open
bracket ``(NP``, the words, a labelled close bracket ``)NP``; part-of-speech tags are
dropped and every sentence ends with ``<eos>``. The conventions below reproduce the
authors' WSJ vocabulary (``wsj_parsing/wsj_vocab.gz``, checked in the tests):

* normalisation before linearizing: the root wrapper (``( (S ..) )``, ``TOP``, ``ROOT``, ``S1``)
  is removed, ``-NONE-`` empty elements and the constituents they leave empty are
  deleted, and function tags / co-indices are stripped (``NP-SBJ-1`` -> ``NP``);
* words are lowercased; a word seen fewer than ``min_count`` times in training becomes
  one of 26 unknown-word classes (:func:`unknown_class`), chosen from its original
  spelling (capitalisation, digits, suffix).

Sources: the full WSJ from a user's LDC copy (``<dir>/<section>/*.mrg``), or the NLTK
10% sample ``treebank/treebank.zip`` read directly from the zip.
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from yfbench.data.files import RawFile, fetch
from yfbench.data.text import EOS, build_vocab
from yfbench.errors import DataError, UserError

TREEBANK_SAMPLE = RawFile(
    "treebank/treebank.zip",
    "9da92d76c3666cfb6cddeaed0f7e86b344cce0f0928a286d439e555f19c37399",
    "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/treebank.zip",
)
REFERENCE_VOCAB = RawFile(
    "wsj_parsing/wsj_vocab.gz",
    "04eba4c6ae7a46fb81e478c7542963a05ba8edc441ca2e21438e17bbf3b85a70",
)
ROOT_LABELS = frozenset({"", "TOP", "ROOT", "S1"})  # S1: the Charniak parser's root
EMPTY_ELEMENT = "-NONE-"
UNK = "<unk>"


@dataclass
class Tree:
    """A constituent; a preterminal is a tree whose only child is its word (a str)."""

    label: str
    children: list[Tree | str] = field(default_factory=list)

    @property
    def is_preterminal(self) -> bool:
        return len(self.children) == 1 and isinstance(self.children[0], str)

    def words(self) -> list[str]:
        return [
            w
            for child in self.children
            for w in ([child] if isinstance(child, str) else child.words())
        ]

    def __str__(self) -> str:
        inside = " ".join(str(child) for child in self.children)
        return f"({self.label} {inside})"


_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def parse_trees(text: str) -> Iterator[Tree]:
    """Every bracketed tree in ``text`` (the .mrg format; line breaks do not matter)."""
    stack: list[Tree] = []
    tokens = _TOKEN.findall(text)
    position = 0
    while position < len(tokens):
        token = tokens[position]
        if token == "(":
            following = tokens[position + 1] if position + 1 < len(tokens) else ")"
            has_label = following not in ("(", ")")
            stack.append(Tree(following if has_label else ""))
            position += 2 if has_label else 1
            continue
        if not stack:
            raise DataError(f"unbalanced brackets near token {position} ({token!r})")
        if token == ")":
            tree = stack.pop()
            if stack:
                stack[-1].children.append(tree)
            else:
                yield tree
        else:
            stack[-1].children.append(token)
        position += 1
    if stack:
        raise DataError("unbalanced brackets: a tree is not closed at the end of the text")


def base_label(label: str) -> str:
    """Label without function tags or indices: ``NP-SBJ-1`` -> ``NP``; ``-NONE-`` kept.

    An annotator's alternative (``ADVP|PRT``, once in the sample) keeps its first choice.
    """
    if label.startswith("-"):
        return label
    return re.split(r"[-=|]", label, maxsplit=1)[0]


def normalize(tree: Tree) -> Tree:
    """The tree the linearization sees (see the module docstring); POS tags are kept."""
    while (
        tree.label in ROOT_LABELS and len(tree.children) == 1 and isinstance(tree.children[0], Tree)
    ):
        tree = tree.children[0]
    pruned = _prune(tree)
    if pruned is None:
        raise DataError(f"tree has no words outside empty elements: {tree}")
    return pruned


def _prune(tree: Tree) -> Tree | None:
    if tree.is_preterminal:
        return None if tree.label == EMPTY_ELEMENT else Tree(tree.label, list(tree.children))
    children = [kept for child in tree.children if (kept := _prune(child)) is not None]
    return Tree(base_label(tree.label), children) if children else None


def linearize(tree: Tree) -> list[str]:
    """``(S (NP the cat )NP ... )S`` tokens of a normalized tree, words as spelled."""
    if tree.is_preterminal:
        return [tree.children[0]]
    inner = [token for child in tree.children for token in linearize(child)]
    return [f"({tree.label}", *inner, f"){tree.label}"]


def is_bracket(token: str) -> bool:
    # Treebank words never start with a bracket: ( and ) are spelled -LRB- and -RRB-.
    return len(token) > 1 and token[0] in "()"


def unlinearize(tokens: Iterable[str]) -> Tree:
    """Inverse of :func:`linearize`; words hang directly under their phrase (no POS tags)."""
    stack: list[Tree] = []
    result: Tree | None = None
    for token in tokens:
        if result is not None:
            raise UserError(f"tokens continue after the tree closed: {token!r}")
        if token.startswith("(") and is_bracket(token):
            stack.append(Tree(token[1:]))
        elif not stack:
            raise UserError(f"token {token!r} outside any bracket")
        elif token.startswith(")") and is_bracket(token):
            tree = stack.pop()
            if tree.label != token[1:]:
                raise UserError(f"close bracket {token} does not match open ({tree.label}")
            if stack:
                stack[-1].children.append(tree)
            else:
                result = tree
        else:
            stack[-1].children.append(token)
    if result is None:
        raise UserError("tokens do not form a complete tree")
    return result


def strip_preterminals(tree: Tree) -> Tree:
    """The same tree with each POS-tag node replaced by its word (what linearization keeps)."""
    return Tree(
        tree.label,
        [
            c.children[0] if isinstance(c, Tree) and c.is_preterminal else strip_preterminals(c)
            for c in tree.children
        ],
    )


# Suffix classes, checked in this order after the digit and length tests of unknown_class.
_SUFFIX_CLASSES = (
    ("ing", "ing"),
    ("ed", "ed"),
    ("ly", "ly"),
    ("s", "s"),
    ("est", "est"),
    ("er", "ER"),
    ("ion", "ion"),
    ("ory", "ory"),
)


def unknown_class(word: str) -> str:
    """The unknown-word symbol of a rare ``word`` (the 26 classes of the WSJ vocabulary).

    ``<unk>`` prefixed by ``c`` when capitalised, then the first rule that applies:
    ``n`` if it starts and ends with a digit; nothing if it has at most 3 characters;
    a suffix class (-ing, -ed, -ly, -s, -est, -er as ``ER``, -ion, -ory); ``<ununk>``
    for an ``un`` prefix; ``al``; else ``-`` or ``.`` for the first of them before the
    last character.
    """
    stem = "cunk" if word[0].isupper() else "unk"
    if word[0].isdigit() and word[-1].isdigit():
        return f"<{stem}n>"
    if len(word) <= 3:
        return f"<{stem}>"
    for suffix, symbol in _SUFFIX_CLASSES:
        if word.endswith(suffix):
            return f"<{stem}{symbol}>"
    if word.startswith("un"):
        return f"<un{stem}>"
    if word.endswith("al"):
        return f"<{stem}al>"
    for char in word[:-1]:
        if char in "-.":
            return f"<{stem}{char}>"
    return f"<{stem}>"


class TreeVocabulary:
    """Symbol ids of linearized trees: brackets, known lowercased words, unknown classes.

    Known words are the lowercased training words seen at least ``min_count`` times (the
    authors' "count > 9" is ``min_count=10``); ids are ordered by training frequency.
    A symbol never seen in training (a rare bracket label or unknown class) maps to
    ``<unk>``.
    """

    def __init__(self, known_words: frozenset[str], ids: dict[str, int]) -> None:
        self.known_words = known_words
        self.ids = ids

    @classmethod
    def from_trees(cls, train_trees: list[Tree], min_count: int = 10) -> TreeVocabulary:
        """The vocabulary of ``train_trees``: known words seen ``min_count`` times or more."""
        counts = Counter(w.lower() for tree in train_trees for w in tree.words())
        vocab = cls(frozenset(w for w, c in counts.items() if c >= min_count), {})
        symbols = [s for tree in train_trees for s in vocab.symbols(tree)]
        vocab.ids = build_vocab([*symbols, UNK])
        return vocab

    def symbols(self, tree: Tree) -> list[str]:
        """Linearization of a normalized ``tree`` with words mapped, ending in ``<eos>``."""
        return [*(self._word_symbol(t) for t in linearize(tree)), EOS]

    def _word_symbol(self, token: str) -> str:
        if is_bracket(token):
            return token
        lowered = token.lower()
        return lowered if lowered in self.known_words else unknown_class(token)

    def encode(self, tree: Tree) -> list[int]:
        unk = self.ids[UNK]
        return [self.ids.get(symbol, unk) for symbol in self.symbols(tree)]

    def __len__(self) -> int:
        return len(self.ids)


def read_sample(data_dir: Path) -> list[list[Tree]]:
    """Normalized trees of the NLTK sample, one list per document (wsj_0001 .. wsj_0199)."""
    archive = fetch(TREEBANK_SAMPLE, data_dir)
    with zipfile.ZipFile(archive) as zipped:
        names = sorted(
            n
            for n in zipped.namelist()
            if n.startswith("treebank/combined/") and n.endswith(".mrg")
        )
        return [[normalize(t) for t in parse_trees(zipped.read(n).decode("utf-8"))] for n in names]


def read_wsj_sections(wsj_dir: Path, sections: Iterable[int]) -> list[Tree]:
    """Normalized trees of LDC WSJ ``sections`` (``<wsj_dir>/NN/*.mrg``), in file order."""
    trees: list[Tree] = []
    for section in sections:
        folder = Path(wsj_dir) / f"{section:02d}"
        files = sorted(folder.glob("*.mrg"))
        if not files:
            raise DataError(
                f"no .mrg files in {folder}: task.data.wsj_dir must be the LDC Treebank-3 "
                f"WSJ folder holding one subfolder per section (00 .. 24) of .mrg files"
            )
        for path in files:
            trees.extend(_read_mrg(path))
    return trees


def _read_mrg(path: Path) -> list[Tree]:
    """Normalized trees of one user-supplied .mrg file (these have no pinned checksum, so a
    damaged one is reported by name rather than as a traceback)."""
    try:
        return [normalize(t) for t in parse_trees(path.read_text(encoding="utf-8"))]
    except (OSError, UnicodeDecodeError, DataError) as error:
        raise DataError(
            f"cannot read the trees of {path} ({error}): task.data.wsj_dir must hold the LDC "
            f"Treebank-3 WSJ .mrg files; replace this one with a good copy"
        ) from error
