"""The digest of a cache entry: what its files were when it was written, so that a reader can tell
that the entry is still whole.

Beside the entry ``NAME`` (a file or a directory) the file ``NAME.digest`` holds, for every file
of the entry, its size and a sha256: of the whole file up to :data:`WHOLE_LIMIT` bytes, of its
first and last :data:`END_BLOCK` bytes above that. Checking a converted model of 500 MB reads
2 MB of it: a copy cut short changes the size, damage to a header changes the first block.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pytest_kedit.storage.atomic import atomic_write_text

DIGEST_SUFFIX = ".digest"
#: Files up to this size are hashed whole; larger ones by their first and last END_BLOCK bytes.
WHOLE_LIMIT = 64 << 20
END_BLOCK = 1 << 20


def digest_path(entry: Path) -> Path:
    """The digest file of ``entry``: a sibling named ``<name>.digest``."""
    return entry.with_name(entry.name + DIGEST_SUFFIX)


def entry_digest(entry: Path) -> dict[str, dict[str, Any]]:
    """Relative path (``"."`` for an entry that is one file) -> ``{"size", "sha256"}`` of each
    file of ``entry``, in path order."""
    if entry.is_dir():
        files = sorted(p for p in entry.rglob("*") if p.is_file())
        return {p.relative_to(entry).as_posix(): _file_digest(p) for p in files}
    return {".": _file_digest(entry)}


def write_digest(entry: Path) -> None:
    """Record ``entry`` as it is now in its digest file (written atomically)."""
    atomic_write_text(digest_path(entry), json.dumps({"files": entry_digest(entry)}, indent=1))


def has_digest(entry: Path) -> bool:
    return digest_path(entry).is_file()


def digest_problem(entry: Path) -> str | None:
    """What differs between ``entry`` and its digest, in a few words (naming the file, in a
    directory); None when every file recorded is there with the recorded size and hash. Files
    added since are ignored. Call only when :func:`has_digest`."""
    try:
        recorded = json.loads(digest_path(entry).read_text(encoding="utf-8"))["files"]
        items = [(str(name), int(fact["size"]), str(fact["sha256"])) for name, fact in recorded.items()]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return f"its digest {digest_path(entry).name} is unreadable"
    for name, size, sha256 in items:
        path, label = (entry, "") if name == "." else (entry / name, f"{name}: ")
        try:
            actual = path.stat().st_size
        except OSError:
            return f"{label}missing"
        if actual != size:
            return f"{label}{actual} bytes, {size} when written"
        try:
            same = _file_digest(path)["sha256"] == sha256
        except OSError as exc:
            return f"{label}unreadable: {exc.strerror or exc}"
        if not same:
            return f"{label}content changed since it was written"
    return None


def _file_digest(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= WHOLE_LIMIT:
            while block := handle.read(END_BLOCK):
                digest.update(block)
        else:
            digest.update(handle.read(END_BLOCK))
            handle.seek(size - END_BLOCK)
            digest.update(handle.read(END_BLOCK))
    return {"size": size, "sha256": digest.hexdigest()}
