"""Atomic file writes: a reader sees a file's old content or its whole new content, never a part.

The new content goes to a temporary sibling (named with :func:`temporary_prefix`, so that the cache
can recognise and remove one left by a killed writer), reaches the disk, and replaces the file
with ``os.replace``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temporary_prefix(path: Path) -> str:
    """How the names of ``path``'s temporary siblings begin: ``.<name>.tmp-``."""
    return f".{path.name}.tmp-"


def _new_file_mode() -> int:
    """The permissions ``open()`` gives a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (its folder created) so that readers see the old file or the
    whole new one. The file gets the permissions of any new file (not mkstemp's private 0o600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path))
    try:
        os.chmod(tmp, _new_file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` for text."""
    atomic_write_bytes(path, text.encode(encoding))
