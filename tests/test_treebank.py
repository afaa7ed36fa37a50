"""Tree reading, the parsing-as-LM linearization, evalb-style F1 and n-best reranking."""

from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from yfbench.config import compose
from yfbench.data.files import fetch
from yfbench.data.treebank import (
    REFERENCE_VOCAB,
    TREEBANK_SAMPLE,
    Tree,
    TreeVocabulary,
    is_bracket,
    linearize,
    normalize,
    parse_trees,
    read_sample,
    strip_preterminals,
    unknown_class,
    unlinearize,
)
from yfbench.errors import DataError, UserError
from yfbench.parsing import bracket_score, read_nbest, rerank
from yfbench.tasks import TaskContext, build_task, wsj_parse

REPO = Path(__file__).resolve().parents[1]


def tree(text: str) -> Tree:
    (parsed,) = parse_trees(text)
    return parsed


@pytest.fixture(scope="module")
def sample_documents() -> list[list[Tree]]:
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not data.is_dir():
        pytest.skip(f"offline data not found at {data}")
    return read_sample(data)


def test_normalize_drops_root_empty_elements_and_function_tags():
    raw = tree(
        "( (S (NP-SBJ-1 (NNP Vinken)) (VP (VBD was) (VP (VBN named) (NP (-NONE- *-1)))) (. .)) )"
    )
    expected = tree("(S (NP (NNP Vinken)) (VP (VBD was) (VP (VBN named))) (. .))")
    assert normalize(raw) == expected
    assert linearize(expected) == [
        "(S",
        "(NP",
        "Vinken",
        ")NP",
        "(VP",
        "was",
        "(VP",
        "named",
        ")VP",
        ")VP",
        ".",
        ")S",
    ]


def test_linearization_round_trips_every_sample_tree(sample_documents):
    trees = [t for doc in sample_documents for t in doc]
    assert len(sample_documents) == 199 and len(trees) == 3914
    for parsed in trees:
        assert unlinearize(linearize(parsed)) == strip_preterminals(parsed)


def test_unlinearize_rejects_mismatched_brackets():
    with pytest.raises(UserError, match="does not match"):
        unlinearize(["(S", "(NP", "a", ")VP", ")S"])


def test_unknown_word_classes():
    cases = {
        "Vinken": "<cunk>",
        "abc": "<unk>",
        "1,234": "<unkn>",
        "frobbing": "<unking>",
        "Frobbed": "<cunked>",
        "frobly": "<unkly>",
        "frobs": "<unks>",
        "frobbest": "<unkest>",
        "Frobber": "<cunkER>",
        "frobion": "<unkion>",
        "frobory": "<unkory>",
        "unfrob": "<ununk>",
        "frobal": "<unkal>",
        "frob-like": "<unk->",
        "F.R.O.B": "<cunk.>",
    }
    assert {word: unknown_class(word) for word in cases} == cases


def test_linearized_sample_follows_the_reference_vocabulary(sample_documents):
    with gzip.open(fetch(REFERENCE_VOCAB), "rt", encoding="utf-8") as handle:
        reference = {line.split()[0] for line in handle}
    assert len(reference) == 6922
    train = [t for doc in sample_documents[:159] for t in doc]
    vocab = TreeVocabulary.from_trees(train, min_count=10)
    symbols = [s for t in train for s in vocab.symbols(t)]
    coverage = sum(s in reference for s in symbols) / len(symbols)
    assert coverage >= 0.95
    # Every bracket, unknown class and <eos> the linearizer produces is a reference symbol.
    special = {s for s in vocab.ids if is_bracket(s) or s.startswith("<")}
    assert {"(NP", ")NP", "(VP", ")VP", "<eos>", "<unk>", "<cunk>"} <= special
    assert special <= reference
    # No POS tag or trace survives linearization.
    assert not {"(NN", "(DT", "*-1", "0", "(-NONE-"} & set(vocab.ids)


def scores(gold: str, test: str) -> tuple[int, int, int]:
    result = bracket_score([tree(gold)], [tree(test)])
    return result.matched, result.gold, result.test


GOLD = "(TOP (S (NP (DT The) (NN cat)) (VP (VBD sat) (PP (IN on) (NP (DT the) (NN mat)))) (. .)))"


def test_f1_counts_labelled_brackets_without_the_root():
    # Gold: S(0,6) NP(0,2) VP(2,6) PP(3,6) NP(4,6); the test parse has PP(3,4) instead.
    test = (
        "(TOP (S (NP (DT The) (NN cat)) (VP (VBD sat) (PP (IN on)) (NP (DT the) (NN mat))) (. .)))"
    )
    assert scores(GOLD, test) == (4, 5, 5)
    result = bracket_score([tree(GOLD)], [tree(test)])
    assert result.precision == result.recall == result.f1 == pytest.approx(80.0)
    relabelled = GOLD.replace("(PP", "(ADVP")
    assert scores(GOLD, relabelled) == (4, 5, 5)


def test_f1_ignores_punctuation_position_and_function_tags():
    moved = (
        "(S (NP-SBJ (DT The) (NN cat)) (VP (VBD sat) (PP (IN on) (NP (DT the) (NN mat))) (. .)))"
    )
    assert scores(GOLD, moved) == (5, 5, 5)
    # A bracket around punctuation alone spans no words and is not counted.
    assert scores(
        "(S (NP (NN it)) (VP (VBZ is)) (. .))", "(S (NP (NN it)) (VP (VBZ is)) (X (. .)))"
    ) == (3, 3, 3)


def test_f1_counts_unary_brackets_with_multiplicity():
    gold = "(S (NP (NP (NNP John))) (VP (VBD left)) (. .))"
    test = "(S (NP (NNP John)) (VP (VBD left)) (. .))"
    assert scores(gold, test) == (3, 4, 3)
    result = bracket_score([tree(gold)], [tree(test)])
    assert result.f1 == pytest.approx(2 * 100 * 75 / 175)
    # PRT and ADVP are the same label for evalb; corpus totals add up.
    particle = "(S (VP (VB give) (PRT (RP up))))"
    adverb = "(S (VP (VB give) (ADVP (RB up))))"
    total = bracket_score([tree(gold), tree(particle)], [tree(test), tree(adverb)])
    assert (total.matched, total.gold, total.test) == (6, 7, 6)


def test_f1_refuses_trees_of_different_sentences():
    with pytest.raises(UserError, match="same sentence"):
        bracket_score([tree("(S (NN a) (NN b))")], [tree("(S (NN a))")])


def test_read_nbest_and_rerank_pick_the_best_scored_candidate(tmp_path):
    path = tmp_path / "nbest.txt"
    path.write_text(
        "(S (NP (NN a)) (VP (VB b)))\n(S (NN a) (VB b))\n\n"
        "(S1 (S (NN c)))\n(S (NP (NN c)))\n(S (X (NN c)))\n",
        encoding="utf-8",
    )
    nbest = read_nbest(path)
    assert [len(candidates) for candidates in nbest] == [2, 3]

    def shortest(candidates: list[Tree]) -> list[float]:
        return [-len(linearize(normalize(c))) for c in candidates]

    # 4 tokens beat 8; then (S c) beats (S (NP c)) and (S (X c)).
    assert rerank(nbest, shortest) == [nbest[0][1], nbest[1][0]]


@pytest.fixture(scope="module")
def wsj_task(data_cache):
    cfg = compose(["task=wsj_parse_lstm", "scale=cpu"])
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    ctx = TaskContext(seed=1, device=torch.device("cpu"), data_dir=data, cache_dir=data_cache)
    return build_task(cfg.task, ctx)


def test_lm_reranker_picks_the_candidate_with_the_highest_log_probability(wsj_task):
    gold = tree("(S (NP (DT The) (NN company)) (VP (VBD said) (NP (PRP it))) (. .))")
    flat = tree("(S (NP (DT The) (NN company) (VBD said) (PRP it)) (. .))")
    deep = tree("(S (NP (DT The) (NN company)) (VP (VBD said) (SBAR (S (NP (PRP it))))) (. .))")
    candidates = [flat, gold, deep]
    log_probs = wsj_task.log_probs(candidates)
    # Batched scoring (padded) equals scoring each tree alone.
    assert log_probs == pytest.approx([wsj_task.log_probs([c])[0] for c in candidates], abs=1e-4)
    best = candidates[max(range(3), key=log_probs.__getitem__)]
    assert rerank([candidates], wsj_task.log_probs) == [best]
    assert wsj_task.rerank_score([gold], [candidates]) == bracket_score([gold], [best])


def test_the_encoded_sample_is_cached_and_equals_a_fresh_encoding(
    sample_documents, shared_data, tmp_path, monkeypatch
):
    cfg = compose(["task=wsj_parse_lstm", "scale=cpu"])
    ctx = TaskContext(seed=1, device=torch.device("cpu"), data_dir=shared_data, cache_dir=tmp_path)
    first = build_task(cfg.task, ctx)
    # The second build reads the cache, not the trees.
    monkeypatch.setattr(wsj_parse, "read_sample", lambda *_: pytest.fail("trees were re-read"))
    cached = build_task(cfg.task, ctx)
    train = [t for doc in sample_documents[:159] for t in doc]
    dev = [t for doc in sample_documents[159:179] for t in doc]
    vocab, train_ids, dev_ids = wsj_parse._encode(train, dev, cfg.task.data.min_count)
    for task in (first, cached):
        assert task.vocab.ids == vocab.ids and task.vocab.known_words == vocab.known_words
        assert torch.equal(task.train_batches.rows(), first.train_batches.rows())
    assert torch.equal(wsj_parse._sample_corpus(ctx, 10)[1], train_ids)
    assert torch.equal(wsj_parse._sample_corpus(ctx, 10)[2], dev_ids)
    # Named after what made it, so another min_count or treebank code is another cache.
    (cache,) = (tmp_path / "wsj").glob("*.pt")
    assert cache.name.startswith(f"sample-{TREEBANK_SAMPLE.sha256[:16]}-min10-code")


def test_full_wsj_is_read_from_an_ldc_layout(shared_data, tmp_path):
    with zipfile.ZipFile(fetch(TREEBANK_SAMPLE, shared_data)) as zipped:
        for section, document in [
            ("02", "wsj_0001.mrg"),
            ("02", "wsj_0002.mrg"),
            ("24", "wsj_0003.mrg"),
        ]:
            (tmp_path / "wsj" / section).mkdir(parents=True, exist_ok=True)
            (tmp_path / "wsj" / section / document).write_bytes(
                zipped.read(f"treebank/combined/{document}")
            )
    overrides = ["task=wsj_parse_lstm", "scale=cpu", f"task.data.wsj_dir={tmp_path / 'wsj'}"]
    overrides += [
        "task.data.train_sections=[2]",
        "task.data.dev_sections=[24]",
        "task.data.min_count=1",
    ]
    overrides += ["task.batch_size=2", "task.unroll=5"]
    cfg = compose(overrides)
    ctx = TaskContext(seed=1, device=torch.device("cpu"), data_dir=shared_data, cache_dir=tmp_path)
    task = build_task(cfg.task, ctx)
    # Section 02 holds wsj_0001 and wsj_0002; with min_count=1 every word is known.
    tokens = sum(len(task.vocab.symbols(t)) for doc in read_sample(shared_data)[:2] for t in doc)
    assert task.train_batches.rows().numel() == tokens // 2 * 2
    assert "vinken" in task.vocab.ids
    shutil.rmtree(tmp_path / "wsj" / "24")
    with pytest.raises(DataError, match="no .mrg files"):
        build_task(cfg.task, ctx)


def test_an_unreadable_nbest_file_is_one_user_error_naming_it(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(UserError) as error:
        read_nbest(missing)
    assert str(error.value) == (
        f"cannot read the n-best parses in {missing} ([Errno 2] No such file or directory: "
        f"'{missing}')"
    )
    unbalanced = tmp_path / "nbest.txt"
    unbalanced.write_text("(S (NP (NN a))\n", encoding="utf-8")
    with pytest.raises(UserError) as error:
        read_nbest(unbalanced)
    assert str(error.value) == (
        f"cannot read the n-best parses in {unbalanced} (unbalanced brackets: a tree is not "
        "closed at the end of the text)"
    )
