"""The text workloads (Tiny Shakespeare, PTB, WSJ parsing LM) on the real offline data."""

from __future__ import annotations

import math
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY_TASK_OVERRIDES
from yfbench.config import compose
from yfbench.data.files import RawFile, fetch
from yfbench.data.text import (
    PTB_FILES,
    TINYSHAKESPEARE,
    BpttBatches,
    encode,
    encode_characters,
    load_ptb,
    load_tinyshakespeare,
)
from yfbench.engine.modes import eval_mode
from yfbench.errors import DataError, UserError
from yfbench.tasks import TaskContext, build_task

REPO = Path(__file__).resolve().parents[1]
TASKS = ["tinyshakespeare_lstm", "ptb_lstm", "wsj_parse_lstm"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small LSTMs run fastest on one thread, and far slower when cores are contended."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_task(
    name: str, data_dir: Path, cache_dir: Path, seed: int = 1, overrides: tuple[str, ...] = ()
):
    cfg = compose([f"task={name}", "scale=cpu", *overrides])
    ctx = TaskContext(seed=seed, device=torch.device("cpu"), data_dir=data_dir, cache_dir=cache_dir)
    return build_task(cfg.task, ctx)


def first_batch_loss(task) -> float:
    """Loss on window 0 from a zero state, without dropout."""
    task.model.eval()
    with torch.no_grad():
        loss = task.train_loss(task.model, 0).item()
    task.model.train()
    return loss


@pytest.mark.parametrize("name", TASKS)
def test_a_few_adam_steps_lower_the_loss(name, shared_data, data_cache):
    task = make_task(name, shared_data, data_cache)
    before = first_batch_loss(task)
    optimizer = torch.optim.Adam(task.model.parameters(), lr=3e-3)
    for step in range(15):
        optimizer.zero_grad()
        loss = task.train_loss(task.model, step)
        loss.backward()
        optimizer.step()
        assert math.isfinite(loss.item())
    assert first_batch_loss(task) < before


@pytest.mark.parametrize("name", TASKS)
def test_evaluate_reports_validation_perplexity(name, shared_data, data_cache):
    # A small model: the whole validation set is scored, and any width is near uniform.
    task = make_task(name, shared_data, data_cache, overrides=tuple(TINY_TASK_OVERRIDES[name]))
    with eval_mode(task.model):
        metrics = task.evaluate()
    assert task.model.training
    assert task.target_metric == "perplexity"
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-5)
    # An untrained model is close to uniform over its vocabulary.
    vocab_size = task.model.decoder.out_features
    assert metrics["perplexity"] == pytest.approx(vocab_size, rel=0.2)


def test_bptt_windows_continue_each_row():
    batches = BpttBatches(torch.arange(23), batch_size=2, unroll=3, device=torch.device("cpu"))
    # Rows 0..10 and 11..21 (22 dropped); (11 - 1) // 3 = 3 windows.
    assert len(batches) == 3
    inputs, targets = batches.window(1)
    assert inputs.tolist() == [[3, 4, 5], [14, 15, 16]]
    assert targets.tolist() == [[4, 5, 6], [15, 16, 17]]


def _batch(task, step: int) -> torch.Tensor:
    epoch, window = divmod(step, task.steps_per_epoch)
    return task.train_batches.window(window, task._rows(epoch))[0]


@pytest.mark.parametrize("name", TASKS)
def test_each_seed_has_its_own_data_order_and_keeps_it(name, shared_data, data_cache):
    first = make_task(name, shared_data, data_cache, seed=1)
    again = make_task(name, shared_data, data_cache, seed=1)
    other = make_task(name, shared_data, data_cache, seed=2)
    later = 2 * first.steps_per_epoch + 5
    for step in (0, 1, first.steps_per_epoch, later):
        # A pure function of (seed, step), whatever was asked before (resume is exact) ...
        assert torch.equal(_batch(first, step), _batch(again, step))
        # ... and another seed reads other text at the same step.
        assert not torch.equal(_batch(first, step), _batch(other, step))
    # Epochs are laid out differently too, so a window does not come back every epoch.
    assert not torch.equal(_batch(first, 0), _batch(first, first.steps_per_epoch))
    assert torch.equal(_batch(first, 0), _batch(again, 0))


@pytest.mark.parametrize("name", TASKS)
def test_the_hidden_state_restarts_from_zeros_every_epoch(name, shared_data, data_cache):
    first = make_task(name, shared_data, data_cache, seed=1)
    first.model.eval()  # no dropout: the loss is a function of the batch and the state
    for step in range(3):
        first.train_loss(first.model, step)
    epoch = first.steps_per_epoch
    loss = first.train_loss(first.model, epoch)
    fresh = make_task(name, shared_data, data_cache, seed=1)
    fresh.model.load_state_dict(first.model.state_dict())
    fresh.model.eval()
    fresh.hidden = None
    fresh._epoch_rows = (0, first._rows(1))  # window 0 of epoch 1, from a zero state
    assert torch.equal(loss, fresh.train_loss(fresh.model, 0))


def test_schedules_and_clipping_follow_the_recipes(shared_data, data_cache):
    shakespeare = make_task("tinyshakespeare_lstm", shared_data, data_cache)
    assert shakespeare.grad_clip_norm == 5.0
    assert shakespeare.lr_multiplier(0) == 1.0
    assert shakespeare.lr_multiplier(3) == pytest.approx(0.97**3)
    ptb = make_task("ptb_lstm", shared_data, data_cache)
    assert ptb.grad_clip_norm is None
    assert ptb.lr_multiplier(12) == 1.0
    wsj = make_task("wsj_parse_lstm", shared_data, data_cache)
    assert wsj.grad_clip_norm == 20.0
    assert wsj.lr_multiplier(14) == 1.0
    assert wsj.lr_multiplier(16) == pytest.approx(0.81)


def test_paper_scale_matches_the_paper_iteration_counts(shared_data, data_cache):
    # 423 windows per epoch (50 epochs: 21,150) and 2,323 per epoch (13 epochs: 30,199).
    for name, per_epoch, total in [("tinyshakespeare_lstm", 423, 21150), ("ptb_lstm", 2323, 30199)]:
        cfg = compose([f"task={name}", "scale=paper"])
        ctx = TaskContext(
            seed=1, device=torch.device("cpu"), data_dir=shared_data, cache_dir=data_cache
        )
        assert build_task(cfg.task, ctx).steps_per_epoch == per_epoch
        assert cfg.trainer.max_steps == total


def test_corpora_match_their_published_counts(shared_data):
    vocab, ids = load_ptb(shared_data)
    assert len(vocab) == 10_000
    assert [len(ids[s]) for s in ("train", "valid", "test")] == [929_589, 73_760, 82_430]
    chars, split = load_tinyshakespeare(shared_data)
    assert len(chars) == 65
    assert len(split["train"]) + len(split["valid"]) == 1_115_394
    assert len(split["train"]) == int(1_115_394 * 0.95)


def test_characters_are_encoded_as_the_token_loop_encodes_them():
    text = "To be, or not to be: that is the question.\nÆther ☃"
    vocab = {char: index for index, char in enumerate(sorted(set(text)))}
    assert torch.equal(encode_characters(text, vocab), encode(text, vocab))
    with pytest.raises(UserError, match="character 'z' is not in the vocabulary"):
        encode_characters("to be, z", vocab)


def test_a_modified_data_file_is_refused(shared_data, tmp_path):
    copy = tmp_path / TINYSHAKESPEARE.relpath
    copy.parent.mkdir(parents=True)
    shutil.copy(shared_data / TINYSHAKESPEARE.relpath, copy)
    with open(copy, "a", encoding="utf-8") as handle:
        handle.write("x")
    with pytest.raises(DataError) as error:
        load_tinyshakespeare(tmp_path)
    assert str(copy) in str(error.value)
    assert TINYSHAKESPEARE.sha256 in str(error.value)


def test_a_missing_file_without_network_is_a_data_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as error:
        load_ptb(tmp_path)
    assert PTB_FILES["train"].relpath in str(error.value)
    assert PTB_FILES["train"].sha256 in str(error.value)
    with pytest.raises(DataError, match="no public download URL"):
        fetch(RawFile("ptb/none.txt", "0" * 64), tmp_path)
