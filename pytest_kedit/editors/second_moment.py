"""Second-moment statistics of MLP keys: C = E[k kᵀ] over the tokens of a text corpus (:mod:`.corpus`).

ROME whitens its rank-one update with C⁻¹; MEMIT and EMMET weigh the keys they must preserve with
C; AlphaEdit writes into the null space of C. C and C⁻¹ are computed once per model × module ×
corpus × sample count × dtype and cached on disk as safetensors (``verified.read_entries``:
verified when read, computed again when damaged), so concurrent pytest-xdist workers compute each entry
once; the statistics of all the modules missing from the cache come from one pass over the corpus.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from pytest_kedit.editors.corpus import BATCH_TOKENS, Corpus, corpus_windows, reachable, resolve_corpus, seq_len
from pytest_kedit.errors import ConfigError, KeditError
from pytest_kedit.model.threads import build_threads
from pytest_kedit.model.tracing import Trace, pad
from pytest_kedit.storage.cache import entry_path
from pytest_kedit.storage.progress import progress_bar
from pytest_kedit.storage.verified import read_entries

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class SecondMoment:
    """C = E[k kᵀ] of one module's input, and its inverse, on the model's device."""

    mom2: torch.Tensor
    inverse: torch.Tensor


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
    if not all(p.exists() for p in paths.values()):
        corpus = reachable(corpus)
        paths = {m: _entry_path(loaded, m, corpus, n_samples, dtype) for m in modules}
    module_of = {path: m for m, path in paths.items()}
    computed = False

    def build(temporary: dict[Path, Path]) -> None:
        nonlocal computed
        computed = True
        missing = [module_of[path] for path in temporary]
        windows = corpus_windows(loaded, corpus, n_samples)
        with build_threads():
            entries = _compute(loaded, missing, windows, corpus, _DTYPES[dtype])
        for m, entry in entries.items():
            temporary[paths[m]].write_bytes(entry)

    entries = read_entries(list(paths.values()), lambda path: _read(path, loaded.device), build)
    moments, tokens = {}, 0
    for m in modules:
        tensors, metadata = entries[paths[m]]
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


def _compute(
    loaded: LoadedModel, modules: list[str], windows: list[list[int]], corpus: Corpus, dtype: torch.dtype
) -> dict[str, bytes]:
    """Accumulate kᵀk of every module's input over the windows' tokens, in float64; invert."""
    model, device = loaded.model, loaded.device
    pad_id = loaded.tokenizer.pad_token_id or 0
    sums: dict[str, torch.Tensor] = {}
    tokens = 0
    per_batch = max(1, BATCH_TOKENS // max(len(w) for w in windows))
    with torch.no_grad(), progress_bar(len(windows), desc=f"second moment of {_span(modules)}", unit="sample") as bar:
        for start in range(0, len(windows), per_batch):
            chunk = windows[start : start + per_batch]
            batch = pad(chunk, pad_id, device)
            with Trace(model, modules, retain_input=True, stop=True) as trace:
                model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            at_tokens = batch.attention_mask.bool()  # (batch, width)
            for m in modules:
                keys = trace.input(m)[at_tokens].float()  # (tokens, key)
                product = (keys.T @ keys).double()  # (key, key)
                sums[m] = sums[m] + product if m in sums else product
            tokens += int(batch.lengths.sum())
            bar.update(len(chunk))
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
    """The tensors and metadata of an entry; KeyError or ValueError when they are not C, C⁻¹ and a token count."""
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        tensors, metadata = {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()
    if set(tensors) != {"mom2", "inverse"}:
        raise KeyError(f"tensors {sorted(tensors)}, not mom2 and inverse")
    int(metadata["tokens"])
    return tensors, metadata


def _entry_path(loaded: LoadedModel, module: str, corpus: Corpus, n_samples: int, dtype: str) -> Path:
    key = (loaded.fingerprint, loaded.dtype, module, corpus.fingerprint, n_samples, dtype, seq_len(loaded))
    return entry_path("second_moment", f"{module}-{corpus.kind}-{n_samples}-{dtype}", *key, model=loaded.name, suffix=".safetensors")
