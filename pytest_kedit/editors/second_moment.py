"""Second-moment statistics of MLP keys: C = E[k kᵀ] over the tokens of a text corpus.

ROME whitens its rank-one update with C⁻¹; MEMIT weighs the keys it must preserve with λC. C and
C⁻¹ are computed once per model × module × corpus × sample count × dtype and cached on disk as
safetensors, under a file lock and written atomically, so concurrent pytest-xdist workers compute
each entry once.

The corpus is the hyper-parameter ``mom2_dataset``:

- a text file, or a folder of ``*.txt`` files (read in name order): its path;
- a Hugging Face dataset name (``wikitext:wikitext-103-raw-v1`` gives a config after the colon),
  read streaming from its ``text`` column; needs the ``datasets`` package and the network or its
  cache. EasyEdit's names ``wikipedia`` and ``wikitext`` stand for the English Wikipedia and
  WikiText-103;
- ``null``: text sampled from the model itself with a fixed seed (the offline default).

A dataset that cannot be loaded falls back to sampled text, with a warning. A sample is a window of
``SEQ_LEN`` tokens (fewer if the model's context is shorter) of the corpus; ``mom2_n_samples``
windows are read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from tqdm.auto import tqdm
from transformers import GenerationConfig

from ..cache import atomic_write_bytes, cache_dir, locked
from ..errors import ConfigError, KeditError

if TYPE_CHECKING:
    from ..models import LoadedModel

log = logging.getLogger(__name__)

SEQ_LEN = 128
BATCH_TOKENS = 8192
SAMPLING_TOP_K = 50
SEED = 0
SEED_WORDS = ("The", "In", "A", "It", "He", "She", "This", "On")
#: EasyEdit's corpus names, as datasets on the Hugging Face hub today
HF_ALIASES = {"wikipedia": "wikimedia/wikipedia:20231101.en", "wikitext": "Salesforce/wikitext:wikitext-103-raw-v1"}
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class SecondMoment:
    """C = E[k kᵀ] of one module's input, and its inverse, on the model's device."""

    mom2: torch.Tensor
    inverse: torch.Tensor


@dataclass(frozen=True)
class Corpus:
    """Where the text comes from: ``kind`` is file, folder, hf or sampled."""

    kind: str
    source: str
    fingerprint: str

    @property
    def description(self) -> str:
        return "text sampled from the model (seed 0)" if self.kind == "sampled" else f"{self.kind} {self.source}"


def second_moments(
    loaded: LoadedModel, modules: list[str], dataset: str | None, n_samples: int, dtype: str
) -> tuple[dict[str, SecondMoment], dict[str, Any]]:
    """C and C⁻¹ of each named module's input, loaded from the cache or computed in one pass.

    Returns them with a summary of where they come from: corpus, samples, tokens, cache files,
    whether anything was computed now and how long it took.
    """
    if dtype not in _DTYPES:
        raise ConfigError(f"mom2_dtype {dtype!r} unknown; use one of {sorted(_DTYPES)}")
    start = time.perf_counter()
    corpus = resolve_corpus(dataset)
    paths = {m: _entry_path(loaded, m, corpus, n_samples, dtype) for m in modules}
    computed = False
    if not all(p.exists() for p in paths.values()) and corpus.kind == "hf":
        corpus = _reachable(corpus)
        paths = {m: _entry_path(loaded, m, corpus, n_samples, dtype) for m in modules}
    missing = [m for m in modules if not paths[m].exists()]
    if missing:
        with ExitStack() as stack:
            for m in sorted(missing, key=lambda m: str(paths[m])):
                stack.enter_context(locked(paths[m]))
            missing = [m for m in missing if not paths[m].exists()]
            if missing:
                windows = corpus_windows(loaded, corpus, n_samples)
                for m, entry in _compute(loaded, missing, windows, corpus, _DTYPES[dtype]).items():
                    atomic_write_bytes(paths[m], entry)
                computed = True
    moments, tokens = {}, 0
    for m in modules:
        tensors, metadata = _read(paths[m], loaded.device)
        moments[m] = SecondMoment(tensors["mom2"], tensors["inverse"])
        tokens = int(metadata["tokens"])
    info = {
        "corpus": corpus.description,
        "n_samples": n_samples,
        "tokens": tokens,
        "dtype": dtype,
        "cache_files": {m: str(p) for m, p in paths.items()},
        "computed": computed,
        "seconds": time.perf_counter() - start,
    }
    return moments, info


# --------------------------------------------------------------------------- corpus


def resolve_corpus(dataset: str | None) -> Corpus:
    """The corpus ``mom2_dataset`` names; no text is read here."""
    if dataset is None:
        return Corpus("sampled", "model", "sampled")
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


def _reachable(corpus: Corpus) -> Corpus:
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
    key = json.dumps([loaded.fingerprint, str(loaded.dtype), n_samples, seq_len(loaded), SEED_WORDS, SAMPLING_TOP_K, SEED])
    path = _model_dir(loaded) / f"sampled-corpus-{n_samples}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    if not path.exists():
        with locked(path):
            if not path.exists():
                ids = _sample(loaded, n_samples)
                atomic_write_bytes(path, save_safetensors({"ids": ids}))
    return load_safetensors(path.read_bytes())["ids"].tolist()


@torch.no_grad()
def _sample(loaded: LoadedModel, n_samples: int) -> torch.Tensor:
    model, tokenizer, width = loaded.model, loaded.tokenizer, seq_len(loaded)
    seeds = [tokenizer(w, add_special_tokens=False)["input_ids"][:1] for w in SEED_WORDS]
    batch = max(1, BATCH_TOKENS // width)
    devices = [loaded.device] if loaded.device.type == "cuda" else []
    rows = []
    with torch.random.fork_rng(devices=devices), tqdm(total=n_samples, desc="sampling a corpus from the model", unit="sample") as bar:
        torch.manual_seed(SEED)
        for start in range(0, n_samples, batch):
            size = min(batch, n_samples - start)
            ids = torch.tensor([seeds[(start + i) % len(seeds)] for i in range(size)], device=loaded.device)
            config = GenerationConfig(
                do_sample=True, top_k=SAMPLING_TOP_K, top_p=1.0, temperature=1.0,
                min_new_tokens=width - 1, max_new_tokens=width - 1, pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
            rows.append(model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config).cpu())
            bar.update(size)
    return torch.cat(rows).to(torch.int32)


# --------------------------------------------------------------------------- statistics


class _Stop(Exception):
    """Raised by a hook once the last module of interest has run: the layers above are not needed."""


def _compute(
    loaded: LoadedModel, modules: list[str], windows: list[list[int]], corpus: Corpus, dtype: torch.dtype
) -> dict[str, bytes]:
    """Accumulate kᵀk of every module's input over the windows' tokens, in float64; invert."""
    model, device = loaded.model, loaded.device
    sums: dict[str, torch.Tensor] = {}
    token_mask = torch.empty(0)

    def record(name: str, last: bool):
        def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            keys = args[0][token_mask].float()
            product = (keys.T @ keys).double()
            sums[name] = sums[name] + product if name in sums else product
            if last:
                raise _Stop

        return hook

    order = [name for name, _ in model.named_modules() if name in modules]
    handles = [model.get_submodule(m).register_forward_pre_hook(record(m, m == order[-1])) for m in modules]
    tokens = 0
    batch = max(1, BATCH_TOKENS // max(len(w) for w in windows))
    try:
        with torch.no_grad(), tqdm(total=len(windows), desc=f"second moment of {_span(modules)}", unit="sample") as bar:
            for start in range(0, len(windows), batch):
                chunk = windows[start : start + batch]
                width = max(len(w) for w in chunk)
                ids = torch.full((len(chunk), width), loaded.tokenizer.pad_token_id or 0, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.bool)
                for i, w in enumerate(chunk):
                    ids[i, : len(w)] = torch.tensor(w)
                    mask[i, : len(w)] = True
                token_mask = mask.to(device)
                try:
                    model.base_model(input_ids=ids.to(device), attention_mask=token_mask.long())
                except _Stop:
                    pass
                tokens += int(mask.sum())
                bar.update(len(chunk))
    finally:
        for handle in handles:
            handle.remove()
    entries = {}
    for m in modules:
        mom2 = sums[m] / tokens
        if tokens < mom2.shape[0]:
            raise KeditError(
                f"second moment of {m}: {corpus.description} gave {tokens} tokens for keys of dimension "
                f"{mom2.shape[0]}, too few to invert; raise mom2_n_samples or give a larger corpus"
            )
        metadata = {"tokens": str(tokens), "corpus": corpus.description, "module": m}
        entries[m] = save_safetensors({"mom2": mom2.to(dtype), "inverse": torch.linalg.inv(mom2).to(dtype).contiguous()}, metadata)
    return entries


def _span(modules: list[str]) -> str:
    return modules[0] if len(modules) == 1 else f"{modules[0]} … {modules[-1]} ({len(modules)} modules)"


def _read(path: Path, device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()


def _model_dir(loaded: LoadedModel) -> Path:
    return cache_dir() / "second_moment" / re.sub(r"[^A-Za-z0-9_.-]+", "_", loaded.name).strip("_")


def _entry_path(loaded: LoadedModel, module: str, corpus: Corpus, n_samples: int, dtype: str) -> Path:
    key = json.dumps([loaded.fingerprint, str(loaded.dtype), module, corpus.fingerprint, n_samples, dtype, seq_len(loaded)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return _model_dir(loaded) / f"{module}-{corpus.kind}-{n_samples}-{dtype}-{digest}.safetensors"
