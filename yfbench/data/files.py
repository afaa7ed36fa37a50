"""Raw data files: locate, download and verify against pinned sha256 checksums.

Every raw file is verified on every use (a tampered local copy is refused), is
downloaded only when missing, and is never written to except by a verified download.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from yfbench.errors import DataError

OFFLINE_HINT = (
    "offline, point YFBENCH_DATA_DIR at a directory that holds it "
    "(e.g. export YFBENCH_DATA_DIR=../shared/data)"
)


@dataclass(frozen=True)
class RawFile:
    """A file under the data directory with its canonical source and checksum."""

    relpath: str
    sha256: str
    url: str | None = None


def data_dir() -> Path:
    """``YFBENCH_DATA_DIR`` or ./data."""
    return Path(os.environ.get("YFBENCH_DATA_DIR", "data"))


def cache_dir() -> Path:
    """``YFBENCH_CACHE_DIR`` or ./.cache/yfbench (never inside the raw data directory)."""
    return Path(os.environ.get("YFBENCH_CACHE_DIR", ".cache/yfbench"))


def sha256sum(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in chunks (archives are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(raw: RawFile, root: Path | None = None) -> Path:
    """Path to a verified copy of ``raw`` under ``root``, downloading it if missing."""
    root = data_dir() if root is None else Path(root)
    path = root / raw.relpath
    if not path.exists():
        _download(raw, path)
    actual = _checksum(raw, path)
    if actual != raw.sha256:
        raise DataError(
            f"checksum mismatch for {path}: expected sha256 {raw.sha256}, got {actual}. "
            f"The file is corrupt, truncated or a different version; delete it so it is "
            f"downloaded again{' from ' + raw.url if raw.url else ''}, or replace it with a "
            f"good copy."
        )
    return path


def _checksum(raw: RawFile, path: Path) -> str:
    """sha256 of the data file at ``path``, or a DataError saying why it cannot be read.

    A folder or an unreadable file where a data file belongs is the user's to move or
    fix; it must not surface as a bare IsADirectoryError or PermissionError.
    """
    if path.is_dir():
        raise DataError(
            f"{path} is a directory, but the data file {raw.relpath} (sha256 {raw.sha256}) "
            f"belongs there: move the directory away, then {_how_to_get(raw)}."
        )
    try:
        return sha256sum(path)
    except OSError as error:
        raise DataError(
            f"cannot read the data file {path} ({error.strerror or error}): make it readable, "
            f"or {OFFLINE_HINT}."
        ) from error


def _how_to_get(raw: RawFile) -> str:
    """How the user gets a missing ``raw`` file: it is downloaded on the next run if it can be."""
    if raw.url is None:
        return f"place a copy of the file there (it has no public download URL), or {OFFLINE_HINT}"
    return f"run again to download it from {raw.url}, or {OFFLINE_HINT}"


def _download(raw: RawFile, path: Path) -> None:
    if raw.url is not None and os.environ.get("YFBENCH_OFFLINE") == "1":
        raise DataError(
            f"missing data file {path} (expected sha256 {raw.sha256}) and YFBENCH_OFFLINE=1 "
            f"forbids downloading it from {raw.url}: unset YFBENCH_OFFLINE, or {OFFLINE_HINT}."
        )
    if raw.url is None:
        raise DataError(
            f"missing data file {path} (expected sha256 {raw.sha256}); it has no public "
            f"download URL: place a copy there, or {OFFLINE_HINT}."
        )
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
        os.close(handle)
        tmp = Path(name)
        with urllib.request.urlopen(raw.url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
        actual = sha256sum(tmp)
        if actual != raw.sha256:
            raise DataError(
                f"download of {raw.url} has sha256 {actual}, expected {raw.sha256}; "
                f"the source changed or the transfer was corrupted. Nothing was saved."
            )
        os.replace(tmp, path)
    except (OSError, http.client.HTTPException) as error:
        raise DataError(
            f"missing data file {path} (sha256 {raw.sha256}) and downloading it from "
            f"{raw.url} failed ({error}). Download it by hand to that path, or "
            f"{OFFLINE_HINT}."
        ) from error
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def extract_tar(archive: Path, target: Path) -> Path:
    """Extract with tarfile's ``data`` filter: no absolute paths, links or escapes."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target
