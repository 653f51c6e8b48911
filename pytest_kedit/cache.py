"""The on-disk cache: where it lives, and how several processes write it safely.

Several pytest-xdist workers may start at once and want the same cache entry. Every writer
takes a ``filelock`` on the entry and writes atomically (a temporary sibling, then
``os.replace``), so readers only ever see complete entries and only one process builds each.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs
from filelock import FileLock

ENV_CACHE_DIR = "KEDIT_CACHE_DIR"


def cache_dir() -> Path:
    """The cache root: ``$KEDIT_CACHE_DIR`` if set, else the user cache dir for "pytest-kedit".

    The directory is not created here; writers create what they need.
    """
    configured = os.environ.get(ENV_CACHE_DIR)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("pytest-kedit"))


def lock_path(path: Path) -> Path:
    """The lock file guarding ``path``: a sibling named ``<name>.lock``."""
    return path.with_name(path.name + ".lock")


@contextmanager
def locked(path: Path, timeout: float = -1) -> Iterator[FileLock]:
    """Hold the inter-process lock of ``path`` (waits forever unless ``timeout`` >= 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(path)), timeout=timeout)
    with lock:
        yield lock


def _temp_sibling(path: Path) -> Path:
    """A fresh, unused name next to ``path``, recognisable by ``_stale_siblings``."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _stale_siblings(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _new_file_mode() -> int:
    """The permissions ``open()`` gives a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    The file gets the permissions of any new file (not mkstemp's private 0o600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
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
    """``atomic_write_bytes`` for text."""
    atomic_write_bytes(path, text.encode(encoding))


def build_once(path: Path, build: Callable[[Path], None]) -> Path:
    """Make sure the cache entry ``path`` (a file or a directory) exists; build it if not.

    ``build(tmp)`` must create ``tmp`` (a file or a directory, in the same directory as ``path``);
    it runs under the lock of ``path``, at most once across concurrent processes, and its result
    is renamed to ``path`` only when it returns. Temporary leftovers of killed builders are
    removed first. Returns ``path``.
    """
    if path.exists():
        return path
    with locked(path):
        if path.exists():
            return path
        for stale in _stale_siblings(path):
            _remove(stale)
        tmp = _temp_sibling(path)
        try:
            build(tmp)
            if not tmp.exists():
                raise RuntimeError(f"cache builder for {path} did not create anything")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                _remove(tmp)
    return path
