"""The text corpus of the second-moment statistics: the hyper-parameter ``mom2_dataset``.

- a text file, or a folder of ``*.txt`` files (read in name order): its path;
- a Hugging Face dataset name (``wikitext:wikitext-103-raw-v1`` gives a config after the colon),
  read streaming from its ``text`` column; needs the ``datasets`` package and the network or its
  cache. EasyEdit's names ``wikipedia`` and ``wikitext`` stand for the English Wikipedia and
  WikiText-103;
- ``null``: text sampled from the model itself with a fixed seed (the offline default), cached.

A dataset that cannot be loaded falls back to sampled text, with a warning. A sample is a window of
``SEQ_LEN`` tokens (fewer if the model's context is shorter) of the corpus.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from pytest_kedit.editors.sampled_text import sample_windows, window_batches
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.threads import build_threads
from pytest_kedit.storage.cache import entry_path
from pytest_kedit.storage.verified import read_entry

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

log = logging.getLogger(__name__)

SEQ_LEN = 128
#: Upper bound on the tokens of one statistics pass.
BATCH_TOKENS = 8192
SAMPLING_TOP_K = 50
#: How the sampled corpus is drawn (sampled_text.sample_windows): in its cache key and in the
#: corpus's fingerprint, so that statistics of a corpus drawn another way are never read for it.
#: It changes with the distribution of a draw (top-k, temperature, excluded tokens), the seeds or
#: the batches; not with the arithmetic that finds the same top k (sampled_text.TopLogits).
SAMPLER_VERSION = 2
SEED = 0
SEED_WORDS = ("The", "In", "A", "It", "He", "She", "This", "On")
#: EasyEdit's corpus names, as datasets on the Hugging Face hub today
HF_ALIASES = {"wikipedia": "wikimedia/wikipedia:20231101.en", "wikitext": "Salesforce/wikitext:wikitext-103-raw-v1"}


@dataclass(frozen=True)
class Corpus:
    """Where the text comes from: ``kind`` is file, folder, hf or sampled."""

    kind: str
    source: str
    fingerprint: str

    @property
    def description(self) -> str:
        return "text sampled from the model (seed 0)" if self.kind == "sampled" else f"{self.kind} {self.source}"


def resolve_corpus(dataset: str | None) -> Corpus:
    """The corpus ``mom2_dataset`` names; no text is read here."""
    if dataset is None:
        return Corpus("sampled", "model", f"sampled-v{SAMPLER_VERSION}")
    path = Path(dataset).expanduser()
    if path.is_file():
        return Corpus("file", str(path.resolve()), _files_fingerprint([path]))
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise ConfigError(f"mom2_dataset folder {path} has no *.txt files")
        return Corpus("folder", str(path.resolve()), _files_fingerprint(files))
    try:
        import datasets  # noqa: F401
    except ImportError:
        log.warning("mom2_dataset %r: no such path, and the datasets package is not installed; "
                    "using text sampled from the model instead", dataset)  # fmt: skip
        return resolve_corpus(None)
    name = HF_ALIASES.get(dataset, dataset)
    return Corpus("hf", name, f"hf:{name}")


def sampled_corpus_fingerprint() -> str:
    """The fingerprint of an editor whose statistics come from text sampled from the model: how
    that text is drawn (the sampler's version), which moves every result of the editor."""
    return f"statistics corpus {resolve_corpus(None).fingerprint}"


def reachable(corpus: Corpus) -> Corpus:
    """``corpus`` if its text can be read, else sampled text (with a warning)."""
    if corpus.kind != "hf":
        return corpus
    try:
        next(_hf_texts(corpus.source))
    except Exception as exc:  # noqa: BLE001 - any failure to load means: not available here
        log.warning("mom2_dataset %r cannot be loaded (%s); using text sampled from the model instead",
                    corpus.source, exc)  # fmt: skip
        return resolve_corpus(None)
    return corpus


def _files_fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        stat = f.stat()
        digest.update(f"{f.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return "files:" + digest.hexdigest()[:16]


def _hf_texts(name: str) -> Iterator[str]:
    import datasets

    path, _, config = name.partition(":")
    for record in datasets.load_dataset(path, config or None, split="train", streaming=True):
        yield record["text"]


def _file_texts(corpus: Corpus) -> Iterator[str]:
    path = Path(corpus.source)
    for f in [path] if corpus.kind == "file" else sorted(path.rglob("*.txt")):
        yield f.read_text(encoding="utf-8", errors="replace")


def seq_len(loaded: LoadedModel) -> int:
    return min(SEQ_LEN, getattr(loaded.model.config, "max_position_embeddings", SEQ_LEN))


def corpus_windows(loaded: LoadedModel, corpus: Corpus, n_samples: int) -> list[list[int]]:
    """Up to ``n_samples`` windows of ``seq_len`` token ids of the corpus."""
    if corpus.kind == "sampled":
        return sampled_windows(loaded, n_samples)
    texts = _hf_texts(corpus.source) if corpus.kind == "hf" else _file_texts(corpus)
    tokenizer, width = loaded.tokenizer, seq_len(loaded)
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    windows: list[list[int]] = []
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + separator
        while len(stream) >= width and len(windows) < n_samples:
            windows.append(stream[:width])
            stream = stream[width:]
        if len(windows) == n_samples:
            return windows
    if len(stream) > 1:
        windows.append(stream)
    return windows


def sampled_windows(loaded: LoadedModel, n_samples: int) -> list[list[int]]:
    """``n_samples`` texts of ``seq_len`` tokens sampled from the model (top-k 50, seed 0), cached."""
    width = seq_len(loaded)
    key = (loaded.fingerprint, loaded.dtype, n_samples, width, SEED_WORDS, SAMPLING_TOP_K, SEED, SAMPLER_VERSION)
    path = entry_path("second_moment", f"sampled-corpus-{n_samples}", *key, model=loaded.name, suffix=".safetensors")

    def build(tmp: Path) -> None:
        tokenizer = loaded.tokenizer
        seeds = [tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in SEED_WORDS]
        firsts = [seeds[i % len(seeds)] for i in range(n_samples)]
        bounds = [0, *itertools.accumulate(window_batches(loaded, n_samples, width))]
        batches = [firsts[a:b] for a, b in zip(bounds, bounds[1:])]
        with build_threads():
            ids = sample_windows(loaded, batches, width, SAMPLING_TOP_K, SEED, progress="sampling a corpus from the model")
        tmp.write_bytes(save_safetensors({"ids": ids.to(torch.int32)}))

    return read_entry(path, lambda entry: load_safetensors(entry.read_bytes())["ids"].tolist(), build)
