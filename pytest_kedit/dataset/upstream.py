"""The published pitfalls datasets, downloaded on first use: ``--kedit-data=upstream:NAME``.

The files are those of the paper's repository (``zjunlp/PitfallsKnowledgeEditing``, folder
``data/<NAME>/``) at a pinned commit, fetched from
``$KEDIT_UPSTREAM_URL/zjunlp/PitfallsKnowledgeEditing/<commit>/data/<NAME>/<file>``, where
``KEDIT_UPSTREAM_URL`` defaults to ``https://raw.githubusercontent.com`` (set it to a mirror of
that host). Every file is checked against its published sha256 and kept in the cache under
``upstream/<commit>/<NAME>/``; a file already there with the right digest is not downloaded again.
Downloads run under the folder's file lock, so concurrent pytest-xdist workers fetch each file once.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from pytest_kedit.errors import ConfigError
from pytest_kedit.storage.atomic import atomic_write_bytes
from pytest_kedit.storage.cache import cache_dir, locked

PREFIX = "upstream:"
REPOSITORY = "zjunlp/PitfallsKnowledgeEditing"
COMMIT = "0cf7acaf27205e99b105991c4c89c16076125393"
ENV_UPSTREAM_URL = "KEDIT_UPSTREAM_URL"
DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
#: Seconds a connection or a read may stall before the download is given up.
TIMEOUT = 60.0

#: dataset name -> file -> sha256 of the file at COMMIT
SHA256: dict[str, dict[str, str]] = {
    "GPT2-XL": {
        "coverage_edit.json": "2122e65f4d5f9fa62dcec59c9010f6aaf10bc297c89ae51cdb0e1c1e8ccab0ac",
        "reverse_edit.json": "1b2b967db5a135947e4c56bd3ff14f942fa4aa18f1532e842d0195dcf40bc78e",
        "composite_edit.json": "cede1cca203ae223ba8fe1b7b784ac5a18fe8da2a48a014e354e61165cdfc42c",
        "easy.json": "9e334997a8ee9a1f7948507f5eaad84462d09f2ce9ff64c76c0a12debcd0aa7b",
        "hard.json": "0919ac18cca9ab5c9ec39ae8d6d080123a5a8b1fac28813e9d30ca9df3a96d59",
        "conflict_prompts.json": "6072b8fe90107f8949ee79fd09a63e3877983b978a604b1dd534f2dc7c5f55fa",
        "round_prompts.json": "577a7b024c73c06c985fab5838010b88b941105fe8285c21b23a44fdc4286939",
    },
    "GPT-J": {
        "coverage_edit.json": "2122e65f4d5f9fa62dcec59c9010f6aaf10bc297c89ae51cdb0e1c1e8ccab0ac",
        "reverse_edit.json": "1b2b967db5a135947e4c56bd3ff14f942fa4aa18f1532e842d0195dcf40bc78e",
        "composite_edit.json": "1f108f707668c973f8c4a498a2200174b4bca71a3dfc4f8779de399bd1701afc",
        "easy.json": "ba6e7335c3c3f5b096d2dd986a16606d9d859666ab2563cc11b26b8215ce6ec2",
        "hard.json": "50ef6e5547898f9e97e85c255458a8928cccef378b44520faff401b876766253",
        "conflict_prompts.json": "6072b8fe90107f8949ee79fd09a63e3877983b978a604b1dd534f2dc7c5f55fa",
        "round_prompts.json": "577a7b024c73c06c985fab5838010b88b941105fe8285c21b23a44fdc4286939",
    },
}

_ALTERNATIVES = "use --kedit-data=PATH with a folder in the upstream layout, or no --kedit-data for the built-in suites"


def is_upstream(data: str) -> bool:
    """Whether a ``--kedit-data`` value names a published dataset (``upstream:NAME``)."""
    return data.startswith(PREFIX)


def dataset_name(data: str) -> str:
    """The published dataset named by ``upstream:NAME`` (case-insensitive), spelt as in :data:`SHA256`."""
    given = data[len(PREFIX):]
    for name in SHA256:
        if name.lower() == given.lower():
            return name
    known = ", ".join(PREFIX + name for name in SHA256)
    raise ConfigError(f"unknown upstream dataset {data!r}; known: {known}")


def label(data: str) -> str:
    """How reports name the data: ``upstream:NAME@COMMIT``."""
    return f"{PREFIX}{dataset_name(data)}@{COMMIT}"


def file_url(name: str, file: str) -> str:
    """Where ``file`` of dataset ``name`` is downloaded from (``$KEDIT_UPSTREAM_URL`` or GitHub)."""
    base = os.environ.get(ENV_UPSTREAM_URL) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{REPOSITORY}/{COMMIT}/data/{name}/{file}"


def fetch(data: str) -> Path:
    """The cache folder holding every file of ``upstream:NAME``, each verified by sha256.

    Missing or damaged files are downloaded under the folder's lock. Raises ConfigError when a
    file cannot be downloaded, does not match its digest (it is then not kept), or the cache
    cannot be written.
    """
    name = dataset_name(data)
    folder = cache_dir() / "upstream" / COMMIT / name
    expected = SHA256[name]
    try:
        if all(_sha256(folder / file) == digest for file, digest in expected.items()):
            return folder
        with locked(folder):
            for file, digest in expected.items():
                if _sha256(folder / file) != digest:
                    atomic_write_bytes(folder / file, _download(name, file, digest))
    except OSError as exc:
        raise ConfigError(
            f"cannot write the download cache {folder} ({exc.strerror or exc}); "
            f"set KEDIT_CACHE_DIR to a writable folder"
        ) from None
    return folder


def _sha256(path: Path) -> str | None:
    """The file's sha256, or None when it does not exist."""
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download(name: str, file: str, digest: str) -> bytes:
    """The bytes of ``file``, verified against ``digest``."""
    url = file_url(name, file)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        reason = _reason(exc.reason)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = _reason(exc)
    else:
        actual = hashlib.sha256(body).hexdigest()
        if actual != digest:
            raise ConfigError(
                f"{file} of {PREFIX}{name} downloaded from {url} has sha256 {actual}, "
                f"expected {digest}; it was not kept (retry, or {_ALTERNATIVES})"
            )
        return body
    raise ConfigError(f"could not download {PREFIX}{name} from {url} ({reason}); {_ALTERNATIVES}")


def _reason(error: object) -> str:
    """A one-line reason: the OS's text for socket errors, else the error's own text."""
    if isinstance(error, TimeoutError):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error) or type(error).__name__
    return " ".join(text.split())
