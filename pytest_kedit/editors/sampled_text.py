"""Text sampled from the model itself: the context templates (:func:`sample`: continuations that
end at an end-of-sequence token) and the offline corpus of the second-moment statistics
(:func:`sample_windows`: windows of a fixed length).

Both sample top-k at temperature 1 in a random state of their own, seeded once before the first
batch (the caller's random state is left as it was), so every process and every run of a model
samples the same tokens. :func:`sample` runs transformers' ``generate``. :func:`sample_windows`
runs its own loop over the key-value cache, many windows at a time, and draws each token among
the k most probable only: the softmax and the draw over the whole vocabulary were most of a
step's time on a large vocabulary (Gemma's 262k tokens).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache, GenerationConfig

from pytest_kedit.model.probe import cache_keywords, vocab_logprobs
from pytest_kedit.storage.progress import progress_bar

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

#: Bytes of key-value cache one batch of :func:`sample_windows` may fill. The batches change the
#: windows drawn: a change of this bound is a change of corpus.SAMPLER_VERSION.
KV_CACHE_BYTES = 1 << 30


@contextmanager
def _own_random_state(loaded: LoadedModel, seed: int) -> Iterator[None]:
    """Torch's random state seeded with ``seed`` inside, the caller's restored after."""
    devices = [loaded.device] if loaded.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def sample(loaded: LoadedModel, batches: Sequence[Sequence[Sequence[int]]], length: int, top_k: int, seed: int) -> list[torch.Tensor]:
    """The token ids (prompt included, on the CPU) of each batch of equal-length prompts continued
    to ``length`` tokens in all, at least one new token: (batch, ≤ length) per batch; a sequence
    that reaches an end-of-sequence token stops there (padded)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    outputs = []
    with _own_random_state(loaded, seed):
        for prompts in batches:
            ids = torch.tensor(prompts, device=loaded.device)  # (batch, prompt length)
            new_tokens = max(1, length - ids.shape[1])
            config = GenerationConfig(
                do_sample=True, top_k=top_k, top_p=1.0, temperature=1.0, max_new_tokens=new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
            outputs.append(model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config).cpu())
    return outputs


def window_batches(loaded: LoadedModel, n_windows: int, length: int) -> list[int]:
    """The sizes of the batches :func:`sample_windows` samples ``n_windows`` windows of ``length``
    tokens in: as few as keep each batch's key-value cache (measured on one token) within
    :data:`KV_CACHE_BYTES`, as even as can be."""
    cache = DynamicCache()
    with torch.no_grad():
        first = torch.zeros((1, 1), dtype=torch.long, device=loaded.device)
        loaded.model.base_model(input_ids=first, use_cache=True, **cache_keywords(loaded.model, cache, first))
    per_token = 0  # bytes of keys and values a token adds
    for layer in cache.layers:
        per_token += layer.keys.nbytes + layer.values.nbytes
    count = math.ceil(n_windows / max(1, KV_CACHE_BYTES // (per_token * length)))
    return [n_windows // count + (i < n_windows % count) for i in range(count)]


@torch.no_grad()
def sample_windows(
    loaded: LoadedModel, batches: Sequence[Sequence[int]], length: int, top_k: int, seed: int, progress: str | None = None
) -> torch.Tensor:
    """Windows of exactly ``length`` token ids, (windows, length) on the CPU: each first token of
    ``batches`` (those of one batch are sampled together) continued among the ``top_k`` most
    probable tokens, at temperature 1, never with an end-of-sequence token. A ``progress`` text
    shows a progress bar."""
    model, device = loaded.model, loaded.device
    vocabulary = model.config.get_text_config().vocab_size
    ends = torch.tensor([t for t in _end_tokens(loaded) if t < vocabulary], dtype=torch.long, device=device)
    windows = []
    total = sum(len(firsts) for firsts in batches)
    with _own_random_state(loaded, seed), progress_bar(total, desc=progress, unit="sample", disable=progress is None) as bar:
        for firsts in batches:
            step = torch.tensor(firsts, dtype=torch.long, device=device)[:, None]  # (batch, 1)
            tokens, cache = [step], DynamicCache()
            for position in range(length - 1):
                positions = torch.full_like(step, position)
                hidden = model.base_model(input_ids=step, use_cache=True, **cache_keywords(model, cache, positions)).last_hidden_state
                logp = vocab_logprobs(model, hidden[:, -1]).index_fill_(1, ends, float("-inf"))  # (batch, vocab)
                top, candidates = logp.topk(top_k, dim=-1)  # (batch, k)
                step = candidates.gather(1, torch.multinomial(torch.softmax(top, dim=-1), 1))  # (batch, 1)
                tokens.append(step)
            windows.append(torch.cat(tokens, dim=1).cpu())
            bar.update(len(firsts))
    return torch.cat(windows)


def _end_tokens(loaded: LoadedModel) -> set[int]:
    """The end-of-sequence ids of the model's generation config and of its tokenizer."""
    configured = getattr(loaded.model, "generation_config", None)
    ids = configured.eos_token_id if configured is not None else None
    found = {ids} if isinstance(ids, int) else set(ids or ())
    if loaded.tokenizer.eos_token_id is not None:
        found.add(loaded.tokenizer.eos_token_id)
    return found
