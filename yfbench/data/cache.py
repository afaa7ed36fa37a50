"""Processed caches of verified raw files, themselves verified on every load.

A cache is named after the sha256 of the raw file it was made from, so a new raw file
never reuses an old cache. The raw file's checksum says nothing about the cache itself,
though: flipped bits in a cached label tensor would train, silently, to chance accuracy.
So every cache carries its own sha256 and is checked against it on every load:

* a tensor cache ``NAME`` has the sidecar ``NAME.sha256`` (``sha256sum`` format), written
  after the cache;
* an extracted archive holds the manifest :data:`MANIFEST` (the sha256 of every file),
  written before the folder is renamed to its final name.

A cache that lacks its checksum, does not match it or does not load is never trusted: it
is rebuilt from the raw file with a :class:`CacheWarning`. Everything is written under a
temporary name and renamed into place, so a crash never leaves half a cache under the
final name.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from yfbench.data.files import extract_tar, sha256sum
from yfbench.errors import DataError

MANIFEST = ".yfbench-sha256sums"
_WRITABLE_HINT = "free some space or set YFBENCH_CACHE_DIR to a writable directory"


class CacheWarning(UserWarning):
    """A processed cache failed verification and is being rebuilt from its raw file."""


class _InvalidCache(Exception):
    """Why a cache cannot be used; the message completes "the cache PATH ..."."""


def cached_tensors(
    path: Path, build: Callable[[], dict[str, Tensor]], source: Path
) -> dict[str, Tensor]:
    """The tensors cached at ``path``, else ``build()`` (from ``source``), which is cached.

    A cache that does not verify is rebuilt with a :class:`CacheWarning`.
    """
    if path.exists() or _sidecar(path).exists():
        try:
            return _load_tensors(path)
        except _InvalidCache as problem:
            _warn_rebuild(path, problem, source)
    tensors = build()
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, payload)
        _write_atomically(_sidecar(path), f"{digest}  {path.name}\n".encode())
    except OSError as error:
        raise DataError(f"cannot write the cache {path} ({error}): {_WRITABLE_HINT}") from error
    return tensors


def _sidecar(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def _load_tensors(path: Path) -> dict[str, Tensor]:
    """The verified contents of a tensor cache; the bytes are hashed and loaded in one read,
    so a file replaced in between cannot slip through."""
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        raise _InvalidCache(f"has no checksum file {sidecar.name}")
    try:
        payload = path.read_bytes()
        recorded = sidecar.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError) as error:
        raise _InvalidCache(f"cannot be read ({error})") from error
    actual = hashlib.sha256(payload).hexdigest()
    expected = recorded[0] if recorded else "nothing"
    if actual != expected:
        raise _InvalidCache(f"has sha256 {actual}, but {sidecar.name} records {expected}")
    try:
        return torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as error:  # any failure means "rebuild", never a traceback
        raise _InvalidCache(f"does not load ({type(error).__name__}: {error})") from error


def unpacked_archive(archive: Path, target: Path) -> Path:
    """The folder ``target`` holding ``archive`` extracted, re-extracted with a
    :class:`CacheWarning` when it does not match its manifest."""
    try:
        if target.exists():
            try:
                _check_manifest(target)
                return target
            except _InvalidCache as problem:
                _warn_rebuild(target, problem, archive)
                _discard(target)
        _extract_with_manifest(archive, target)
    except OSError as error:
        raise DataError(
            f"cannot unpack {archive} into {target} ({error}): {_WRITABLE_HINT}"
        ) from error
    return target


def _check_manifest(folder: Path) -> None:
    """Every file of ``folder`` is listed in its manifest with the sha256 it has now."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise _InvalidCache(f"has no manifest {MANIFEST}")
    try:
        listed = dict(_parse_manifest(manifest.read_text(encoding="utf-8")))
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        present.discard(MANIFEST)
        if present != set(listed):
            raise _InvalidCache(_difference(set(listed), present))
        for name, expected in sorted(listed.items()):
            actual = sha256sum(folder / name)
            if actual != expected:
                raise _InvalidCache(
                    f"holds {name} with sha256 {actual}, but {MANIFEST} records {expected}"
                )
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _InvalidCache(f"cannot be read ({error})") from error


def _difference(listed: set[str], present: set[str]) -> str:
    """What a folder lacks and holds beyond its manifest, e.g. "lacks a/b and holds c"."""
    parts = []
    if missing := sorted(listed - present):
        parts.append(f"lacks {', '.join(missing)}")
    if extra := sorted(present - listed):
        parts.append(f"holds {', '.join(extra)}, which {MANIFEST} does not list")
    return " and ".join(parts)


def _parse_manifest(text: str) -> list[tuple[str, str]]:
    """(name, sha256) pairs of ``sha256sum`` lines; a malformed line is a ValueError."""
    pairs = []
    for line in text.splitlines():
        digest, separator, name = line.partition("  ")
        if not separator or len(digest) != 64:
            raise ValueError(f"malformed {MANIFEST} line {line!r}")
        pairs.append((name, digest))
    return pairs


def _extract_with_manifest(archive: Path, target: Path) -> None:
    """Extract into a temporary folder, write its manifest, then rename it to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{target.name}.", suffix=".tmp"))
    try:
        extract_tar(archive, partial)
        files = sorted(p for p in partial.rglob("*") if p.is_file())
        lines = [f"{sha256sum(p)}  {p.relative_to(partial).as_posix()}\n" for p in files]
        (partial / MANIFEST).write_text("".join(lines), encoding="utf-8")
        try:
            os.replace(partial, target)
        except OSError:
            if not target.exists():
                raise
            # Another run finished the same extraction first; its manifest is checked on load.
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)


def _discard(folder: Path) -> None:
    """Rename a bad folder out of the way first, so no reader sees it half deleted."""
    stale = folder.with_name(f"{folder.name}.{os.getpid()}.stale")
    os.replace(folder, stale)
    shutil.rmtree(stale, ignore_errors=True)


def _warn_rebuild(cache: Path, problem: _InvalidCache, source: Path) -> None:
    warnings.warn(
        f"the cache {cache} {problem}; rebuilding it from {source}", CacheWarning, stacklevel=3
    )
