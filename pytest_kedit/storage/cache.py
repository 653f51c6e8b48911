"""The on-disk cache: where it lives, and how several processes write it safely.

Several pytest-xdist workers may start at once and want the same cache entry. Every writer
takes a ``filelock`` on the entry and writes atomically (a temporary sibling, then
``os.replace``), so readers only ever see complete entries and only one process builds each.

An entry is named by :func:`entry_path` after everything its content depends on (model
fingerprint, dtype, parameters), so a change of any of them makes a new entry, never a stale read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
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


def cache_key(*parts: object) -> str:
    """16 hex digits of the sha256 of ``parts`` written as JSON (tuples as lists, anything else
    JSON cannot write, such as a ``torch.dtype``, as its ``str``): equal parts, equal key."""
    return hashlib.sha256(json.dumps(list(parts), default=str).encode()).hexdigest()[:16]


def entry_path(area: str, name: str, *key: object, model: str | None = None, suffix: str = "") -> Path:
    """Where the cache entry ``name`` identified by ``key`` lives (a file or a directory):
    ``<cache>/<area>/[<model>/]<name>-<cache_key(*key)><suffix>``.

    ``area`` is the kind of entry (``"context_templates"``, ``"second_moment"``, ...); ``model``,
    when given, groups one model's entries in a folder of their own; ``name`` is for people
    reading the folder. Both are made file-name safe. Everything the entry's content depends on
    goes in ``key``.
    """
    folder = cache_dir() / area
    if model is not None:
        folder = folder / _file_name(model)
    return folder / f"{_file_name(name)}-{cache_key(*key)}{suffix}"


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


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
    build_each_once([path], lambda temporary: build(temporary[path]))
    return path


def build_each_once(paths: Sequence[Path], build: Callable[[dict[Path, Path]], None]) -> list[Path]:
    """:func:`build_once` for entries that are cheapest built together (one pass over a corpus
    gives the statistics of several modules).

    The locks of the missing entries are taken in one global order (so that processes asking for
    overlapping sets cannot deadlock); ``build`` receives, for every entry still missing then, a
    temporary name next to it, and must create each. Returns the entries built by this call.
    """
    missing = [path for path in dict.fromkeys(paths) if not path.exists()]
    if not missing:
        return []
    with ExitStack() as locks:
        for path in sorted(missing, key=str):
            locks.enter_context(locked(path))
        missing = [path for path in missing if not path.exists()]
        if not missing:
            return []
        for path in missing:
            for stale in _stale_siblings(path):
                _remove(stale)
        temporary = {path: _temp_sibling(path) for path in missing}
        try:
            build(temporary)
            for path, tmp in temporary.items():
                if not tmp.exists():
                    raise RuntimeError(f"cache builder for {path} did not create anything")
            for path, tmp in temporary.items():
                if tmp.is_file():
                    _flush_to_disk(tmp)
                os.replace(tmp, path)
        finally:
            for tmp in temporary.values():
                if tmp.exists():
                    _remove(tmp)
    return missing


def _flush_to_disk(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
