"""Faults in data files, caches and task settings: each is one clear error, or a rebuild.

Nothing lost (a crash never leaves half a cache), nothing mixed (a cache that does not
match its own checksum is never used), nothing mislabelled (flipped label bits in a cache
are caught instead of training to chance accuracy).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from yfbench.config import compose
from yfbench.data import cifar as cifar_data
from yfbench.data import files
from yfbench.data.cache import CacheWarning
from yfbench.data.files import OFFLINE_HINT, RawFile
from yfbench.data.text import PTB_FILES, load_ptb
from yfbench.data.treebank import read_wsj_sections
from yfbench.errors import DataError, UserError
from yfbench.tasks import TaskContext, build_task
from yfbench.tasks import noisy_quadratic as quadratic

REPO = Path(__file__).resolve().parents[1]
WRITABLE_HINT = "free some space or set YFBENCH_CACHE_DIR to a writable directory"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _jpeg(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def _write_jpeg_archive(path: Path, split: str, per_class: int, bad: dict[str, bytes]) -> None:
    """``<split>/<class>/NNNN.jpg`` members like the shared copy's; ``bad`` replaces some."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for label, name in enumerate(cifar_data.CIFAR10_CLASSES):
            for index in range(per_class):
                member = f"{split}/{name}/{index:04d}.jpg"
                data = bad.get(member, _jpeg(100 * label + index))
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def jpeg_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A data dir with tiny CIFAR-10 JPEG archives (2 + 1 images per class), pinned by sha256;
    call it with ``bad`` members to plant damaged images in the training archive."""

    def make(bad: dict[str, bytes] | None = None) -> Path:
        data_dir = tmp_path / "data"
        pinned = {}
        for split, per_class in (("train", 2), ("test", 1)):
            relpath = cifar_data.CIFAR10_JPEG[split].relpath
            _write_jpeg_archive(data_dir / relpath, split, per_class, bad or {})
            pinned[split] = RawFile(relpath, _sha256((data_dir / relpath).read_bytes()))
        monkeypatch.setattr(cifar_data, "CIFAR10_JPEG", pinned)
        return data_dir

    return make


def _load(data_dir: Path, cache_dir: Path) -> cifar_data.CifarData:
    return cifar_data.load_cifar10(data_dir, cache_dir, "jpeg")


def _train_cache(cache_dir: Path) -> Path:
    raw = cifar_data.CIFAR10_JPEG["train"]
    return cache_dir / "cifar" / f"cifar10_jpeg-train.tar.gz-{raw.sha256[:16]}.pt"


def _cache_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if w.category is CacheWarning]


# ---------------------------------------------------------------- the decoded JPEG cache
def test_the_jpeg_cache_carries_its_sha256_and_is_reused(jpeg_dir, tmp_path, monkeypatch):
    data_dir, cache_dir = jpeg_dir(), tmp_path / "cache"
    first = _load(data_dir, cache_dir)
    cache = _train_cache(cache_dir)
    sidecar = cache.with_name(cache.name + ".sha256")
    assert sidecar.read_text() == f"{_sha256(cache.read_bytes())}  {cache.name}\n"
    assert first.train_labels.tolist() == [label for label in range(10) for _ in range(2)]

    def no_decoding(archive: Path) -> None:
        raise AssertionError(f"{archive} decoded again although its cache is valid")

    monkeypatch.setattr(cifar_data, "_decode_jpeg_archive", no_decoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = _load(data_dir, cache_dir)
    assert torch.equal(again.train_images, first.train_images)
    assert torch.equal(again.train_labels, first.train_labels)


def _flip_labels(cache: Path) -> None:
    """A still-loadable cache whose labels are all wrong (what flipped bits can do)."""
    tensors = torch.load(cache, weights_only=True)
    tensors["labels"] = (tensors["labels"] + 1) % 10
    torch.save(tensors, cache)


def _truncate(cache: Path) -> None:
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])


def _overwrite(cache: Path) -> None:
    cache.write_bytes(b"not a cache")


@pytest.mark.parametrize("damage", [_flip_labels, _truncate, _overwrite])
def test_a_damaged_jpeg_cache_is_rebuilt_with_a_warning(jpeg_dir, tmp_path, damage):
    data_dir, cache_dir = jpeg_dir(), tmp_path / "cache"
    good = _load(data_dir, cache_dir)
    cache = _train_cache(cache_dir)
    recorded = _sha256(cache.read_bytes())
    damage(cache)
    damaged = _sha256(cache.read_bytes())
    archive = data_dir / cifar_data.CIFAR10_JPEG["train"].relpath
    with pytest.warns(CacheWarning) as record:
        rebuilt = _load(data_dir, cache_dir)
    assert _cache_warnings(record) == [
        f"the cache {cache} has sha256 {damaged}, but {cache.name}.sha256 records {recorded}; "
        f"rebuilding it from {archive}"
    ]
    assert torch.equal(rebuilt.train_labels, good.train_labels)
    assert torch.equal(rebuilt.train_images, good.train_images)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # the rebuilt cache verifies again
        assert torch.equal(_load(data_dir, cache_dir).train_labels, good.train_labels)


def test_a_jpeg_cache_without_its_checksum_is_rebuilt(jpeg_dir, tmp_path):
    """A cache from before checksums, or a crash between writing a cache and its sidecar."""
    data_dir, cache_dir = jpeg_dir(), tmp_path / "cache"
    good = _load(data_dir, cache_dir)
    cache = _train_cache(cache_dir)
    cache.with_name(cache.name + ".sha256").unlink()
    _flip_labels(cache)
    archive = data_dir / cifar_data.CIFAR10_JPEG["train"].relpath
    with pytest.warns(CacheWarning) as record:
        rebuilt = _load(data_dir, cache_dir)
    assert _cache_warnings(record) == [
        f"the cache {cache} has no checksum file {cache.name}.sha256; rebuilding it from {archive}"
    ]
    assert torch.equal(rebuilt.train_labels, good.train_labels)


def test_a_cache_that_matches_its_checksum_but_does_not_load_is_rebuilt(jpeg_dir, tmp_path):
    data_dir, cache_dir = jpeg_dir(), tmp_path / "cache"
    good = _load(data_dir, cache_dir)
    cache = _train_cache(cache_dir)
    _overwrite(cache)
    sha = _sha256(cache.read_bytes())
    cache.with_name(cache.name + ".sha256").write_text(f"{sha}  {cache.name}\n")
    archive = data_dir / cifar_data.CIFAR10_JPEG["train"].relpath
    with pytest.warns(CacheWarning) as record:
        rebuilt = _load(data_dir, cache_dir)
    (message,) = _cache_warnings(record)
    assert message.startswith(f"the cache {cache} does not load (")
    assert message.endswith(f"); rebuilding it from {archive}")
    assert torch.equal(rebuilt.train_labels, good.train_labels)


class _Crash(Exception):
    """Stands in for the process dying while it writes."""


def test_a_crash_while_writing_the_cache_leaves_nothing_behind(jpeg_dir, tmp_path, monkeypatch):
    data_dir, cache_dir = jpeg_dir(), tmp_path / "cache"

    def crash(source: str, target: str) -> None:
        raise _Crash(f"killed while renaming {source} to {target}")

    with monkeypatch.context() as patch, pytest.raises(_Crash):
        patch.setattr(os, "replace", crash)
        _load(data_dir, cache_dir)
    assert list((cache_dir / "cifar").iterdir()) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert len(_load(data_dir, cache_dir).train_labels) == 20


def test_an_unwritable_cache_directory_is_one_data_error(jpeg_dir, tmp_path):
    data_dir, cache_dir = jpeg_dir(), tmp_path / "cache"
    cache_dir.write_text("a file where the cache directory should be")
    with pytest.raises(DataError) as error:
        _load(data_dir, cache_dir)
    assert type(error.value) is DataError
    message = str(error.value)
    assert message.startswith(f"cannot write the cache {_train_cache(cache_dir)} ([Errno 20] ")
    assert message.endswith(f"): {WRITABLE_HINT}")


@pytest.mark.parametrize(
    "data", [_jpeg(7)[:300], b"not an image", _jpeg(7, size=16)], ids=["truncated", "junk", "16px"]
)
def test_an_unreadable_jpeg_member_is_one_data_error_naming_it(jpeg_dir, tmp_path, data):
    member = "train/cat/0001.jpg"
    data_dir = jpeg_dir({member: data})
    with pytest.raises(DataError) as error:
        _load(data_dir, tmp_path / "cache")
    assert type(error.value) is DataError
    archive = data_dir / cifar_data.CIFAR10_JPEG["train"].relpath
    assert str(error.value) == (
        f"member {member} of {archive} is not a readable 32x32 JPEG image; the archive is "
        f"damaged or not a CIFAR-10 JPEG copy: replace it with a good one"
    )


# ---------------------------------------------------------------- raw data files
@pytest.mark.parametrize(
    ("raw", "remedy"),
    [
        (PTB_FILES["train"], f"run again to download it from {PTB_FILES['train'].url}"),
        (
            cifar_data.CIFAR10_JPEG["train"],
            "place a copy of the file there (it has no public download URL)",
        ),
    ],
)
def test_a_directory_in_place_of_a_data_file_is_one_data_error(tmp_path, raw, remedy):
    path = tmp_path / raw.relpath
    path.mkdir(parents=True)
    with pytest.raises(DataError) as error:
        files.fetch(raw, tmp_path)
    assert type(error.value) is DataError
    assert str(error.value) == (
        f"{path} is a directory, but the data file {raw.relpath} (sha256 {raw.sha256}) belongs "
        f"there: move the directory away, then {remedy}, or {OFFLINE_HINT}."
    )


def test_a_directory_in_place_of_the_ptb_train_file_stops_the_load(tmp_path):
    (tmp_path / PTB_FILES["train"].relpath).mkdir(parents=True)
    with pytest.raises(DataError, match=r"ptb\.train\.txt is a directory, but the data file"):
        load_ptb(tmp_path)


def test_an_unreadable_data_file_is_one_data_error(tmp_path, monkeypatch):
    raw = PTB_FILES["valid"]
    path = tmp_path / raw.relpath
    path.parent.mkdir(parents=True)
    path.write_text("x")

    def denied(path: Path) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(files, "sha256sum", denied)
    with pytest.raises(DataError) as error:
        files.fetch(raw, tmp_path)
    assert str(error.value) == (
        f"cannot read the data file {path} (Permission denied): make it readable, or "
        f"{OFFLINE_HINT}."
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"( (S (NP (NN a)) )\n",
            "unbalanced brackets: a tree is not closed at the end of the text",
        ),
        (
            b"( (S (NN caf\xe9)) )\n",
            "'utf-8' codec can't decode byte 0xe9 in position 12: invalid continuation byte",
        ),
    ],
    ids=["unbalanced", "latin-1"],
)
def test_a_damaged_mrg_file_is_one_data_error_naming_it(tmp_path, content, reason):
    path = tmp_path / "wsj" / "02" / "wsj_0201.mrg"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        read_wsj_sections(tmp_path / "wsj", [2])
    assert type(error.value) is DataError
    assert str(error.value) == (
        f"cannot read the trees of {path} ({reason}): task.data.wsj_dir must hold the LDC "
        "Treebank-3 WSJ .mrg files; replace this one with a good copy"
    )


def test_a_directory_named_like_an_mrg_file_is_one_data_error(tmp_path):
    path = tmp_path / "wsj" / "02" / "wsj_0201.mrg"
    path.mkdir(parents=True)
    with pytest.raises(
        DataError, match=r"^cannot read the trees of .*wsj_0201\.mrg \(\[Errno 21\]"
    ):
        read_wsj_sections(tmp_path / "wsj", [2])


# ---------------------------------------------------------------- task settings
LSTM_SETTINGS = "hidden_size, num_layers, embed_size, dropout, init_scale, forget_bias, tie_weights"
BAD_SETTINGS = [
    (
        "ptb_lstm",
        ["task.model.hidden_size=0"],
        "task.model.hidden_size must be an integer >= 1, got 0",
    ),
    (
        "ptb_lstm",
        ["task.model.num_layers=0"],
        "task.model.num_layers must be an integer >= 1, got 0",
    ),
    (
        "ptb_lstm",
        ["task.model.embed_size=0"],
        "task.model.embed_size must be null or an integer >= 1, got 0",
    ),
    (
        "ptb_lstm",
        ["task.model.dropout=2.0"],
        "task.model.dropout must be a number in [0, 1), got 2.0",
    ),
    (
        "ptb_lstm",
        ["task.model.dropout=-0.1"],
        "task.model.dropout must be a number in [0, 1), got -0.1",
    ),
    (
        "ptb_lstm",
        ["task.model.init_scale=-0.1"],
        "task.model.init_scale must be null or a number > 0, got -0.1",
    ),
    ("ptb_lstm", ["task.batch_size=0"], "task.batch_size must be an integer >= 1, got 0"),
    ("ptb_lstm", ["task.unroll=0"], "task.unroll must be an integer >= 1, got 0"),
    (
        "ptb_lstm",
        ["task.data.max_vocab=0"],
        "task.data.max_vocab must be null or an integer >= 1, got 0",
    ),
    (
        "ptb_lstm",
        ["+task.model.hiden_size=100"],
        f"task.model.hiden_size is not a setting of the LSTM model; use: {LSTM_SETTINGS}",
    ),
    (
        "ptb_lstm",
        ["+task.model.tie_weights=true", "task.model.embed_size=100"],
        "task.model.tie_weights needs task.model.embed_size == task.model.hidden_size, got 100 "
        "and 200; set embed_size to null or to 200",
    ),
    (
        "tinyshakespeare_lstm",
        ["task.data.train_fraction=1.5"],
        "task.data.train_fraction must be a number in (0, 1), got 1.5",
    ),
    (
        "tinyshakespeare_lstm",
        ["task.data.train_fraction=0"],
        "task.data.train_fraction must be a number in (0, 1), got 0",
    ),
    (
        "tinyshakespeare_lstm",
        ["task.model.forget_bias=nan"],
        "task.model.forget_bias must be a finite number, got nan",
    ),
    (
        "tinyshakespeare_lstm",
        ["task.grad_clip_norm=0"],
        "task.grad_clip_norm must be null or a number > 0, got 0",
    ),
    (
        "wsj_parse_lstm",
        ["task.model.dropout=1.0"],
        "task.model.dropout must be a number in [0, 1), got 1.0",
    ),
    (
        "wsj_parse_lstm",
        ["task.data.wsj_dir=/nonexistent", "task.data.train_sections=[2.5]"],
        "task.data.train_sections must be a non-empty list of WSJ section numbers 0-24, got [2.5]",
    ),
    (
        "cifar10_resnet",
        ["task.model.filters=[16,0,32,64]"],
        "task.model.filters[1] must be an integer >= 1, got 0",
    ),
    (
        "cifar10_resnet",
        ["task.model.filters=[16,32]"],
        "task.model.filters must be a list of 4 widths, got [16, 32]",
    ),
    (
        "cifar10_resnet",
        ["task.model.units_per_stage=0"],
        "task.model.units_per_stage must be an integer >= 1, got 0",
    ),
    (
        "cifar10_resnet",
        ["task.model.depth=21"],
        "task.model.depth must be of the form 6n+2 with n >= 1 for basic units (e.g. 8, 20, 32, "
        "110), got 21; or set it to null to use units_per_stage",
    ),
    (
        "cifar100_resnet",
        ["task.model.depth=30"],
        "task.model.depth must be of the form 9n+2 with n >= 1 for bottleneck units (e.g. 11, "
        "47, 164), got 30; or set it to null to use units_per_stage",
    ),
    (
        "cifar100_resnet",
        ["task.model.filters=[16,30,64,128]"],
        "task.model.filters[1:] must be multiples of 4 with bottleneck units, "
        "got [16, 30, 64, 128]",
    ),
    (
        "cifar10_resnet",
        ["task.train_subset=0"],
        "task.train_subset must be null or an integer >= 1, got 0",
    ),
    (
        "cifar10_resnet",
        ["task.test_subset=-5"],
        "task.test_subset must be null or an integer >= 1, got -5",
    ),
    ("cifar10_resnet", ["task.batch_size=0"], "task.batch_size must be an integer >= 1, got 0"),
    (
        "cifar10_resnet",
        ["task.eval_batch_size=0"],
        "task.eval_batch_size must be an integer >= 1, got 0",
    ),
    ("cifar10_resnet", ["task.weight_decay=-1"], "task.weight_decay must be a number >= 0, got -1"),
    (
        "cifar10_resnet",
        ["task.model.bn_momentum=2"],
        "task.model.bn_momentum must be a number in [0, 1], got 2",
    ),
    (
        "cifar10_resnet",
        ["task.model.bn_eps=0"],
        "task.model.bn_eps must be a number > 0, got 0",
    ),
    (
        "cifar10_resnet",
        ["task.model.leakiness=-0.1"],
        "task.model.leakiness must be a number in [0, 1], got -0.1",
    ),
    (
        "cifar10_resnet",
        ["task.model.bottleneck=yes"],
        "task.model.bottleneck must be true or false, got 'yes'",
    ),
    (
        "tinyshakespeare_lstm",
        ["task.lr_decay.rate=0"],
        "task.lr_decay.rate must be a number > 0, got 0",
    ),
    (
        "tinyshakespeare_lstm",
        ["task.lr_decay.start_epoch=-1"],
        "task.lr_decay.start_epoch must be an integer >= 0, got -1",
    ),
    ("noisy_quadratic", ["task.dim=0"], "task.dim must be an integer >= 1, got 0"),
    (
        "noisy_quadratic",
        ["task.condition_number=0.5"],
        "task.condition_number must be a number >= 1, got 0.5",
    ),
    ("noisy_quadratic", ["task.noise_std=-1"], "task.noise_std must be a number >= 0, got -1"),
]


def _task(name: str, overrides: list[str], data_dir: Path, cache_dir: Path):
    cfg = compose([f"task={name}", "scale=cpu", *overrides])
    ctx = TaskContext(seed=1, device=torch.device("cpu"), data_dir=data_dir, cache_dir=cache_dir)
    return build_task(cfg.task, ctx)


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    BAD_SETTINGS,
    ids=[f"{name}:{','.join(overrides)}" for name, overrides, _ in BAD_SETTINGS],
)
def test_a_bad_setting_is_one_user_error_before_any_data_is_read(
    tmp_path, monkeypatch, name, overrides, message
):
    # An empty, offline data dir: reading any data file would raise a DataError instead.
    monkeypatch.setenv("YFBENCH_OFFLINE", "1")
    with pytest.raises(UserError) as error:
        _task(name, overrides, tmp_path / "empty", tmp_path / "cache")
    assert type(error.value) is UserError
    assert str(error.value) == message


def test_ptb_max_vocab_names_the_smallest_size_that_keeps_unk(shared_data, tmp_path):
    with pytest.raises(UserError) as error:
        _task("ptb_lstm", ["task.data.max_vocab=1"], shared_data, tmp_path)
    assert str(error.value) == (
        "task.data.max_vocab must be null or an integer >= 2, got 1; <unk> is symbol 2 by "
        "training frequency and must be kept"
    )


def test_a_quadratic_larger_than_free_memory_names_task_dim(tmp_path, monkeypatch):
    monkeypatch.setattr(quadratic, "_available_bytes", lambda device: 2**30)
    with pytest.raises(UserError) as error:
        _task("noisy_quadratic", [f"task.dim={2**58}"], tmp_path, tmp_path)
    assert str(error.value) == (
        f"task.dim={2**58} needs 5368709120.0 GiB of cpu memory for the quadratic's vectors, "
        "but only 1.0 GiB is available; lower task.dim"
    )


def test_a_failed_quadratic_allocation_names_task_dim(tmp_path, monkeypatch):
    monkeypatch.setattr(quadratic, "_available_bytes", lambda device: None)  # memory unknown
    with pytest.raises(UserError) as error:
        _task("noisy_quadratic", [f"task.dim={2**58}"], tmp_path, tmp_path)
    assert str(error.value) == (
        f"task.dim={2**58} needs 5368709120.0 GiB of cpu memory for the quadratic's vectors, "
        "but the allocation failed; lower task.dim"
    )
