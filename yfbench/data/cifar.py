"""CIFAR-10/100 as uint8 tensors, plus the TF recipe's augmentation done on-device.

Sources, each verified against its sha256 on every use:

* the canonical ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` under
  ``<data dir>/cifar/`` (downloaded from torchvision's URL when missing), extracted into
  the cache and read by ``torchvision.datasets.CIFAR10/CIFAR100``;
* for CIFAR-10 only, the offline lossy-JPEG copy ``<data dir>/cifar10_jpeg/`` (see the
  shared data README), decoded once into a tensor cache. Its pixels differ from the
  canonical ones, so results on it are flagged through :attr:`CifarData.source`.

Both caches (the extracted archive, the decoded tensors) are checked against their own
sha256 on every load and rebuilt when they do not match (:mod:`yfbench.data.cache`).
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import Tensor

from yfbench.data.cache import cached_tensors, unpacked_archive
from yfbench.data.files import RawFile, fetch
from yfbench.errors import DataError, UserError

CIFAR10_ARCHIVE = RawFile(
    "cifar/cifar-10-python.tar.gz",
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    torchvision.datasets.CIFAR10.url,
)
CIFAR100_ARCHIVE = RawFile(
    "cifar/cifar-100-python.tar.gz",
    "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    torchvision.datasets.CIFAR100.url,
)
CIFAR10_JPEG = {
    "train": RawFile(
        "cifar10_jpeg/train.tar.gz",
        "07a76758e99e55e4921ae510eae33a70ca8344e25573631f1448ce193f485cb5",
    ),
    "test": RawFile(
        "cifar10_jpeg/test.tar.gz",
        "7d8751db6aae75415de5b6ccf02132559efad467a4f209d5b621a6e6c60b3e9f",
    ),
}
# Alphabetical, which is also the canonical label order.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SOURCES = ("auto", "canonical", "jpeg")


@dataclass(frozen=True)
class CifarData:
    """Images as uint8 [N, 32, 32, 3] (HWC, as stored), labels as int64 [N]."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    #: Which files the data came from, for results to cite.
    source: str


def load_cifar10(data_dir: Path, cache_dir: Path, source: str = "auto") -> CifarData:
    """CIFAR-10 from ``source``: "canonical", "jpeg" or "auto".

    "auto" never needs the network when it can avoid it: a canonical archive already on
    disk wins, then the JPEG copy, and only when neither is there is the canonical
    archive downloaded.
    """
    if source not in SOURCES:
        raise UserError(f"unknown CIFAR-10 source {source!r}; choose one of: {', '.join(SOURCES)}")
    if source == "auto":
        jpeg_present = all((data_dir / raw.relpath).exists() for raw in CIFAR10_JPEG.values())
        canonical_present = (data_dir / CIFAR10_ARCHIVE.relpath).exists()
        source = "jpeg" if jpeg_present and not canonical_present else "canonical"
    if source == "jpeg":
        return _load_jpeg(data_dir, cache_dir)
    return load_torchvision(CIFAR10_ARCHIVE, torchvision.datasets.CIFAR10, data_dir, cache_dir)


def load_cifar100(data_dir: Path, cache_dir: Path) -> CifarData:
    """CIFAR-100 (fine labels) from the canonical archive; there is no offline copy."""
    return load_torchvision(CIFAR100_ARCHIVE, torchvision.datasets.CIFAR100, data_dir, cache_dir)


def load_torchvision(
    raw: RawFile, dataset: type[torchvision.datasets.CIFAR10], data_dir: Path, cache_dir: Path
) -> CifarData:
    """Verify (or download) ``raw``, unpack it into the cache, read it with torchvision."""
    archive = fetch(raw, data_dir)
    root = unpacked_archive(
        archive, cache_dir / "cifar" / f"{dataset.base_folder}-{raw.sha256[:16]}"
    )
    try:
        train, test = dataset(root, train=True), dataset(root, train=False)
    except RuntimeError as error:
        raise DataError(
            f"{archive} (sha256 {raw.sha256}) unpacked into {root}, but torchvision cannot "
            f"read it ({error}); the archive does not hold {dataset.base_folder}."
        ) from error
    return CifarData(
        torch.from_numpy(train.data),
        torch.tensor(train.targets, dtype=torch.int64),
        torch.from_numpy(test.data),
        torch.tensor(test.targets, dtype=torch.int64),
        f"{Path(raw.relpath).name} (canonical)",
    )


def _load_jpeg(data_dir: Path, cache_dir: Path) -> CifarData:
    train = _jpeg_split(CIFAR10_JPEG["train"], data_dir, cache_dir)
    test = _jpeg_split(CIFAR10_JPEG["test"], data_dir, cache_dir)
    return CifarData(*train, *test, "cifar10_jpeg (lossy JPEG copy)")


def _jpeg_split(raw: RawFile, data_dir: Path, cache_dir: Path) -> tuple[Tensor, Tensor]:
    """Decoded images and labels of one JPEG archive, cached under its sha256."""
    archive = fetch(raw, data_dir)
    cache = cache_dir / "cifar" / f"cifar10_jpeg-{Path(raw.relpath).name}-{raw.sha256[:16]}.pt"
    cached = cached_tensors(cache, lambda: _decode_jpeg_archive(archive), archive)
    return cached["images"], cached["labels"]


def _decode_jpeg_archive(archive: Path) -> dict[str, Tensor]:
    """Read ``<split>/<class>/NNNN.jpg`` members straight from the tar (nothing is written)."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    with tarfile.open(archive) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.isfile():
                continue
            class_name = Path(member.name).parent.name
            if class_name not in CIFAR10_CLASSES or not member.name.endswith(".jpg"):
                raise DataError(f"unexpected member {member.name!r} in {archive}")
            images.append(_decode_image(tar.extractfile(member).read(), member.name, archive))
            labels.append(CIFAR10_CLASSES.index(class_name))
    if not images:
        raise DataError(f"no images in {archive}; it is not a CIFAR-10 JPEG archive")
    return {
        "images": torch.from_numpy(np.stack(images)),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def _decode_image(data: bytes, name: str, archive: Path) -> np.ndarray:
    """One 32x32 RGB image; a member PIL cannot decode names itself instead of a traceback."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as error:
        raise DataError(_bad_image(name, archive)) from error
    if pixels.shape != (32, 32, 3):
        raise DataError(_bad_image(name, archive))
    return pixels


def _bad_image(name: str, archive: Path) -> str:
    return (
        f"member {name} of {archive} is not a readable 32x32 JPEG image; the archive is "
        f"damaged or not a CIFAR-10 JPEG copy: replace it with a good one"
    )


def random_crop_flip(images: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Zero-pad by ``padding``, take a random same-size crop, flip half left-right.

    ``images`` is uint8 [B, H, W, C] on any device; the random draws come from the CPU
    ``generator``, so a batch is identical on every device.
    """
    batch, height, width, _ = images.shape
    device = images.device
    shifts = torch.randint(0, 2 * padding + 1, (2, batch, 1), generator=generator).to(device)
    flips = torch.rand(batch, 1, generator=generator).to(device) < 0.5
    rows = shifts[0] + torch.arange(height, device=device)
    columns = torch.arange(width, device=device).expand(batch, width)
    columns = shifts[1] + torch.where(flips, columns.flip(1), columns)
    padded = torch.nn.functional.pad(images, (0, 0, padding, padding, padding, padding))
    index = torch.arange(batch, device=device)[:, None, None]
    return padded[index, rows[:, :, None], columns[:, None, :]]


def standardize(images: Tensor) -> Tensor:
    """uint8 [B, H, W, C] -> float [B, C, H, W] like ``tf.image.per_image_standardization``:
    (x - mean) / max(std, 1 / sqrt(H * W * C)) per image. Stays channels-last in memory."""
    x = images.permute(0, 3, 1, 2).float()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, correction=0)
    return (x - mean) / std.clamp(min=x[0].numel() ** -0.5)
