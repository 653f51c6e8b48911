"""Reading cache entries that are verified first: a damaged entry is never read as if whole.

Every entry read through this module has a digest beside it (:mod:`.digest`), written once the
entry is complete. A reader checks the entry against it, then reads it with the caller's ``read``;
an entry whose files differ from the digest, or that ``read`` cannot read, is **damaged**
(a full disk, a killed copy, a bad sector). What happens then depends on the entry:

- :func:`read_entries` (:func:`read_entry`): built here from its inputs, so it is built again,
  once, with one line saying which entry and why; damaged again after that, a :class:`CacheError`;
- :func:`read_or_refuse`: made elsewhere (a trained network): a :class:`CacheError` naming the
  entry and what to do;
- :func:`read_or_drop`: a remembered value that is made again when needed: removed, with a line.

An entry without a digest (written before digests were kept, or by a builder that has not
sealed it yet) is damaged only if ``read`` fails; otherwise its digest is written now. The lines go
to the logger of this module at WARNING (pytest's terminal, or stderr outside pytest).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from pytest_kedit.errors import KeditError
from pytest_kedit.storage.cache import build_each_once, cache_dir, locked
from pytest_kedit.storage.digest import digest_path, digest_problem, has_digest, write_digest

log = logging.getLogger(__name__)

T = TypeVar("T")


class CacheError(KeditError):
    """A cache entry that cannot be written, or is damaged and cannot be made again here."""


class _Damaged(Exception):
    """Why an entry cannot be used (internal)."""


def read_entry(path: Path, read: Callable[[Path], T], build: Callable[[Path], None]) -> T:
    """:func:`read_entries` of one entry, with ``build(tmp)`` creating it as ``tmp``."""
    return read_entries([path], read, lambda temporary: build(temporary[path]))[path]


def read_entries(paths: Sequence[Path], read: Callable[[Path], T],
                 build: Callable[[dict[Path, Path]], None]) -> dict[Path, T]:
    """``read(path)`` of each entry, verified; the entries missing, or damaged (removed first,
    with a line each), are built first in one call of ``build`` (:func:`~.cache.build_each_once`)
    and sealed with their digest. :class:`CacheError` when an entry cannot be written, or is still
    damaged once built again."""
    values: dict[Path, T] = {}
    damaged: dict[Path, str] = {}
    for path in dict.fromkeys(paths):
        try:
            if path.exists():
                values[path] = _read_verified(path, read)
        except _Damaged as why:
            damaged[path] = _remove_damaged(path, read, str(why), "rebuilding it", values)
    todo = [path for path in dict.fromkeys(paths) if path not in values]
    if not todo:
        return values
    try:
        built = build_each_once(todo, build)
        for path in built:
            _seal(path)
    except OSError as exc:
        raise CacheError(_unwritable(todo[0], exc)) from None
    for path in todo:
        try:
            values[path] = _read_verified(path, read)
        except _Damaged as why:
            before = f" (it was damaged: {damaged[path]})" if path in damaged else ""
            raise CacheError(f"cache entry {path} is damaged ({why}) right after it was built{before}; "
                             f"delete it, check the disk holding {cache_dir()}, and run again") from None
    return values


def read_or_refuse(path: Path, read: Callable[[Path], T], remedy: str) -> T:
    """``read(path)`` of an entry that cannot be built here, verified; :class:`CacheError` naming
    the entry, why it is damaged and ``remedy`` (what to do) when it is."""
    try:
        return _read_verified(path, read)
    except _Damaged as why:
        raise CacheError(f"cache entry {path} is damaged ({why}); {remedy}") from None


def read_or_drop(path: Path, read: Callable[[Path], T]) -> T | None:
    """``read(path)`` of a remembered value, verified; None when it is damaged, after removing it
    with a line (whoever needs the value makes it again)."""
    try:
        return _read_verified(path, read)
    except _Damaged as why:
        found: dict[Path, T] = {}
        _remove_damaged(path, read, str(why), "removed it; it is made again when needed", found)
        return found.get(path)


def _read_verified(path: Path, read: Callable[[Path], T], locked_here: bool = False) -> T:
    """``read(path)`` if the entry matches its digest (an entry without one: if ``read`` succeeds,
    then its digest is written); :class:`_Damaged` saying why not. ``locked_here``: the caller
    holds the entry's lock."""
    sealed = has_digest(path)
    if sealed:
        problem = digest_problem(path)
        if problem is not None:
            raise _Damaged(problem)
    try:
        value = read(path)
    except Exception as exc:  # noqa: BLE001 - whatever a reader raises on bad bytes means: damaged
        raise _Damaged(_first_line(exc)) from None
    if not sealed:
        _seal(path, locked_here)
    return value


def _seal(path: Path, locked_here: bool = False) -> None:
    """Write the digest of ``path`` under its lock (``locked_here``: the caller holds it), unless
    another process did; in a cache that cannot be written the entry stays without one (verified
    by reading it, each time)."""
    try:
        if locked_here:
            if not has_digest(path):
                write_digest(path)
            return
        with locked(path):
            if path.exists() and not has_digest(path):
                write_digest(path)
    except OSError:
        pass


def _remove_damaged(path: Path, read: Callable[[Path], T], why: str, action: str, found: dict[Path, T]) -> str:
    """Under the entry's lock: unless another process has removed the entry or replaced it by a
    whole one meanwhile (then its value goes into ``found``), say that it is damaged and why, and
    remove it with its digest. Returns why it is damaged."""
    try:
        with locked(path):
            if not path.exists():
                return why
            try:
                found[path] = _read_verified(path, read, locked_here=True)
                return why
            except _Damaged as again:
                why = str(again)
            log.warning("kedit: cache entry %s is damaged (%s); %s", path, why, action)
            _delete(path)
            digest_path(path).unlink(missing_ok=True)
    except OSError as exc:
        raise CacheError(_unwritable(path, exc)) from None
    return why


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() and not child.is_symlink() else child.unlink()
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


def _unwritable(path: Path, exc: OSError) -> str:
    return (f"cannot write the cache entry {path}: {exc.strerror or exc}; free space or make {cache_dir()} "
            f"writable, or set KEDIT_CACHE_DIR to another folder")


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
