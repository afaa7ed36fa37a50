"""Outputs are written whole or not at all, and never through a planted file.

Every file the runner, the analysis and the scripts write goes to a new temporary file
beside its destination (``<name>.<random>.tmp``, created with O_EXCL, so a symlink or
file planted under a predictable name is never followed or truncated), is fsynced, then
renamed over the destination. A failed write (a full disk, say) removes the temporary
file, leaves the old destination as it was and raises an OSError naming the destination.
Torch-free: the analysis uses it too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replaced(path: Path) -> Iterator[BinaryIO]:
    """A binary handle whose bytes replace ``path`` when the block ends without error."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _mode(path))  # mkstemp's 0600 would make outputs private
    except OSError as error:
        raise _naming(error, path) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(error, path) from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    with replaced(path) as handle:
        handle.write(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _mode(path: Path) -> int:
    """The destination's permissions if it exists, else what a new file gets (umask)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _naming(error: OSError, path: Path) -> OSError:
    """The same error, naming the destination rather than the temporary file."""
    return type(error)(error.errno, error.strerror or str(error), str(path))
