"""The on-disk cache: where it lives, and how several processes write it safely.

Several pytest-xdist workers may start at once and want the same cache entry. Every writer
takes a ``filelock`` on the entry and writes atomically (a temporary sibling, then
``os.replace``, as :mod:`pytest_kedit.storage.atomic` does), so readers only ever see complete
entries and only one process builds each.

An entry is named by :func:`entry_path` after everything its content depends on (model
fingerprint, dtype, parameters), so a change of any of them makes a new entry, never a stale read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import platformdirs
from filelock import FileLock

from pytest_kedit.storage.atomic import temporary_prefix

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
    return path.with_name(f"{temporary_prefix(path)}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _stale_siblings(path: Path) -> list[Path]:
    """Temporary siblings of ``path`` left by killed writers (of ``build_once`` or an atomic write)."""
    return sorted(path.parent.glob(f"{temporary_prefix(path)}*"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
