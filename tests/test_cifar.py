"""CIFAR-10/100 tasks: data sources and checksums, batches, augmentation, loss, model depth."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from omegaconf import DictConfig
from torch import nn

from yfbench.config import compose
from yfbench.data import cifar as cifar_data
from yfbench.data.cache import MANIFEST, CacheWarning
from yfbench.data.files import RawFile
from yfbench.engine.modes import eval_mode
from yfbench.errors import DataError, UserError
from yfbench.models.resnet import BasicUnit, BottleneckUnit, CifarResNet, units_for_depth
from yfbench.tasks import TaskContext, build_task
from yfbench.tasks.cifar import CifarTask

REPO = Path(__file__).resolve().parents[1]


def _config(task: str, *overrides: str) -> DictConfig:
    return compose([f"task={task}", "scale=cpu", *overrides]).task


def _build(cfg: DictConfig, data_dir: Path, cache_dir: Path, seed: int = 1) -> CifarTask:
    ctx = TaskContext(seed=seed, device=torch.device("cpu"), data_dir=data_dir, cache_dir=cache_dir)
    return build_task(cfg, ctx)


def _fits_repeated_batch(task: CifarTask, steps: int = 8) -> tuple[float, float]:
    """Loss on batch 0 before and after a few Adam steps on that batch."""
    optimizer = torch.optim.Adam(task.model.parameters(), lr=1e-3)
    before = task.train_loss(task.model, 0)
    for _ in range(steps):
        optimizer.zero_grad()
        task.train_loss(task.model, 0).backward()
        optimizer.step()
    with torch.no_grad():
        after = task.train_loss(task.model, 0)
    return before.item(), after.item()


def test_cifar10_cpu_scale_trains_on_the_jpeg_copy(shared_data: Path, data_cache: Path) -> None:
    task = _build(_config("cifar10_resnet"), shared_data, data_cache)
    assert task.data_source == "cifar10_jpeg (lossy JPEG copy)"
    assert task.train_images.shape == (50000, 32, 32, 3) and task.train_images.dtype == torch.uint8
    assert task.test_images.shape == (2000, 32, 32, 3)
    assert task.steps_per_epoch == 50000 // 128
    assert sorted(task.train_labels.unique().tolist()) == list(range(10))
    before, after = _fits_repeated_batch(task)
    assert np.isfinite(before) and np.isfinite(after)
    assert after < before


def test_batches_are_a_pure_function_of_seed_and_step(shared_data: Path, data_cache: Path) -> None:
    cfg = _config("cifar10_resnet")
    task, again, other = (_build(cfg, shared_data, data_cache, seed) for seed in (1, 1, 2))
    later = task.steps_per_epoch + 3  # a step of the next epoch
    x0, y0 = task.batch(5)
    task.batch(later)
    x1, y1 = task.batch(5)
    x2, y2 = again.batch(5)
    assert x0.shape == (128, 3, 32, 32)
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert not torch.equal(x0, other.batch(5)[0])
    assert not torch.equal(x0, task.batch(6)[0])
    assert not torch.equal(task.batch(later)[1], task.batch(later - task.steps_per_epoch)[1])


def test_weight_decay_is_half_the_squared_conv_and_linear_weights(
    shared_data: Path, data_cache: Path
) -> None:
    plain = _build(_config("cifar10_resnet", "task.weight_decay=0"), shared_data, data_cache)
    decayed = _build(_config("cifar10_resnet", "task.weight_decay=0.01"), shared_data, data_cache)
    squared = sum(
        module.weight.pow(2).sum().item()
        for module in decayed.model.modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    )
    difference = (
        decayed.train_loss(decayed.model, 3).item() - plain.train_loss(plain.model, 3).item()
    )
    assert difference == pytest.approx(0.5 * 0.01 * squared, rel=1e-4)


def test_auto_source_prefers_a_canonical_archive_present(shared_data: Path, tmp_path: Path) -> None:
    """With both copies present, auto goes canonical (here a bad one) without any download."""
    for raw in cifar_data.CIFAR10_JPEG.values():
        (tmp_path / raw.relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / raw.relpath).symlink_to(shared_data / raw.relpath)
    canonical = tmp_path / cifar_data.CIFAR10_ARCHIVE.relpath
    canonical.parent.mkdir(parents=True)
    canonical.write_bytes(b"not an archive")
    with pytest.raises(DataError, match=cifar_data.CIFAR10_ARCHIVE.sha256):
        _build(_config("cifar10_resnet"), tmp_path, tmp_path / "cache")
    with pytest.raises(UserError, match="unknown CIFAR-10 source"):
        _build(_config("cifar10_resnet", "task.source=png"), tmp_path, tmp_path / "cache")


@pytest.mark.parametrize(
    ("task", "raw"),
    [
        ("cifar100_resnet", cifar_data.CIFAR100_ARCHIVE),
        ("cifar10_resnet", cifar_data.CIFAR10_JPEG["train"]),
    ],
)
def test_bad_checksum_names_the_file_and_expected_sha256(
    tmp_path: Path, task: str, raw: RawFile
) -> None:
    # Corrupt copies of both JPEG archives, so that auto picks the JPEG copy for CIFAR-10.
    for relpath in {raw.relpath, *(r.relpath for r in cifar_data.CIFAR10_JPEG.values())}:
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_bytes(b"corrupt")
    with pytest.raises(DataError) as error:
        _build(_config(task), tmp_path, tmp_path / "cache")
    assert str(tmp_path / raw.relpath) in str(error.value)
    assert raw.sha256 in str(error.value)


def _write_cifar100_archive(path: Path, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """A small cifar-100-python.tar.gz in torchvision's pickle format (rows: R, G, B planes)."""
    rng = np.random.default_rng(0)
    folder = path.parent / "cifar-100-python"
    folder.mkdir(parents=True)
    arrays = {}
    for split, count in (("train", n_train), ("test", n_test)):
        rows = rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8)
        fine = rng.integers(0, 100, count).tolist()
        arrays[split], arrays[split + "_labels"] = rows, np.array(fine)
        batch = {"data": rows, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine]}
        (folder / split).write_bytes(pickle.dumps(batch))
    meta = {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return arrays


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cifar100_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, np.ndarray]]:
    """A data dir holding a small CIFAR-100 archive pinned by its sha256, and its arrays."""
    data_dir = tmp_path / "data"
    archive = data_dir / cifar_data.CIFAR100_ARCHIVE.relpath
    archive.parent.mkdir(parents=True)
    arrays = _write_cifar100_archive(archive, n_train=256, n_test=50)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(
        cifar_data, "CIFAR100_ARCHIVE", RawFile(cifar_data.CIFAR100_ARCHIVE.relpath, sha)
    )
    # torchvision checks the members against the real files' md5s: give it ours.
    folder = archive.parent / "cifar-100-python"
    dataset = torchvision.datasets.CIFAR100
    monkeypatch.setattr(dataset, "train_list", [["train", _md5(folder / "train")]])
    monkeypatch.setattr(dataset, "test_list", [["test", _md5(folder / "test")]])
    monkeypatch.setattr(dataset, "meta", {**dataset.meta, "md5": _md5(folder / "meta")})
    return data_dir, arrays


def test_cifar100_reads_torchvision_format_and_trains(
    cifar100_archive: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    data_dir, arrays = cifar100_archive
    task = _build(_config("cifar100_resnet"), data_dir, tmp_path / "cache")
    assert task.data_source == "cifar-100-python.tar.gz (canonical)"
    expected = torch.from_numpy(arrays["train"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert torch.equal(task.train_images, expected)
    assert torch.equal(task.test_labels, torch.from_numpy(arrays["test_labels"]))
    assert task.model.fc.out_features == 100
    before, after = _fits_repeated_batch(task)
    assert np.isfinite(after) and after < before
    with eval_mode(task.model):
        assert 0.0 <= task.evaluate()["accuracy"] <= 1.0


def _tamper(root: Path) -> str:
    """Flip one byte of the unpacked test batch; the problem the warning should report."""
    path = root / "cifar-100-python" / "test"
    original = hashlib.sha256(path.read_bytes()).hexdigest()
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(data).hexdigest()
    return f"holds cifar-100-python/test with sha256 {actual}, but {MANIFEST} records {original}"


def _drop_manifest(root: Path) -> str:
    """An extraction made before manifests existed."""
    (root / MANIFEST).unlink()
    return f"has no manifest {MANIFEST}"


def _delete_and_add(root: Path) -> str:
    """A file gone, another planted."""
    (root / "cifar-100-python" / "meta").unlink()
    (root / "cifar-100-python" / "stray").write_bytes(b"x")
    return (
        "lacks cifar-100-python/meta and holds cifar-100-python/stray, which "
        f"{MANIFEST} does not list"
    )


@pytest.mark.parametrize("damage", [_tamper, _drop_manifest, _delete_and_add])
def test_a_damaged_unpacked_archive_is_unpacked_again_with_a_warning(
    cifar100_archive: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, damage
) -> None:
    data_dir, arrays = cifar100_archive
    cache_dir = tmp_path / "cache"
    first = cifar_data.load_cifar100(data_dir, cache_dir)
    (root,) = (cache_dir / "cifar").iterdir()
    problem = damage(root)
    archive = data_dir / cifar_data.CIFAR100_ARCHIVE.relpath
    with pytest.warns(CacheWarning) as record:
        again = cifar_data.load_cifar100(data_dir, cache_dir)
    messages = [str(w.message) for w in record if w.category is CacheWarning]
    assert messages == [f"the cache {root} {problem}; rebuilding it from {archive}"]
    assert torch.equal(again.test_images, first.test_images)
    assert torch.equal(again.test_labels, torch.from_numpy(arrays["test_labels"]))
    assert [p.name for p in (cache_dir / "cifar").iterdir()] == [root.name]  # nothing left over


def test_random_crop_flip_takes_a_padded_crop_possibly_mirrored() -> None:
    images = torch.randint(1, 256, (16, 32, 32, 3), dtype=torch.uint8)
    out = cifar_data.random_crop_flip(images, torch.Generator().manual_seed(0))
    padded = torch.zeros(16, 40, 40, 3, dtype=torch.uint8)
    padded[:, 4:36, 4:36] = images
    flipped = 0
    for image, crop in zip(padded, out, strict=True):
        candidates = [
            (image[dy : dy + 32, dx : dx + 32], mirror)
            for dy in range(9)
            for dx in range(9)
            for mirror in (False, True)
        ]
        matches = [m for c, m in candidates if torch.equal(c.flip(1) if m else c, crop)]
        assert matches
        flipped += matches[0]
    assert 0 < flipped < 16


def test_standardize_matches_tf_per_image_standardization() -> None:
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    images[3] = 7  # constant image: std is floored at 1 / sqrt(N)
    out = cifar_data.standardize(images)
    expected = []
    for image in images.double().numpy():
        floor = 1.0 / np.sqrt(image.size)
        expected.append((image - image.mean()) / max(image.std(), floor))
    expected = torch.tensor(np.stack(expected)).permute(0, 3, 1, 2).float()
    assert out.shape == (4, 3, 32, 32)
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("depth", "bottleneck", "unit"), [(110, False, BasicUnit), (164, True, BottleneckUnit)]
)
def test_depth_option_builds_the_papers_layer_count(
    depth: int, bottleneck: bool, unit: type[nn.Module]
) -> None:
    units = units_for_depth(depth, bottleneck)
    model = CifarResNet(
        10, units, bottleneck, (16, 64, 128, 256) if bottleneck else (16, 16, 32, 64)
    )
    assert sum(isinstance(m, unit) for m in model.modules()) == 3 * 18
    # He et al. count weighted layers on the main path: convs + the linear layer.
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    projections = [name for name, _ in model.named_modules() if name.endswith("project")]
    assert len(layers) - len(projections) == depth
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_depth_setting_overrides_units_and_rejects_bad_depths(
    shared_data: Path, data_cache: Path
) -> None:
    task = _build(_config("cifar10_resnet", "task.model.depth=20"), shared_data, data_cache)
    assert sum(isinstance(m, BasicUnit) for m in task.model.modules()) == 9
    with pytest.raises(UserError, match="6n\\+2"):
        _build(_config("cifar10_resnet", "task.model.depth=21"), shared_data, data_cache)


def test_cifar10_model_has_the_tf_models_parameter_shapes() -> None:
    """Counted by hand from the TF model: bias-free 3x3 convs, two BNs per unit, final BN, fc."""
    conv = 3 * 16 * 9  # stem
    conv += 5 * 2 * 16 * 16 * 9  # stage 1: 16 -> 16
    conv += 16 * 32 * 9 + 32 * 32 * 9 + 4 * 2 * 32 * 32 * 9  # stage 2: 16 -> 32
    conv += 32 * 64 * 9 + 64 * 64 * 9 + 4 * 2 * 64 * 64 * 9  # stage 3: 32 -> 64
    batch_norm = 2 * (5 * 2 * 16 + (16 + 32) + 4 * 2 * 32 + (32 + 64) + 4 * 2 * 64 + 64)
    linear = 64 * 10 + 10
    model = CifarResNet(10, 5, bottleneck=False)
    assert sum(p.numel() for p in model.parameters()) == conv + batch_norm + linear
