"""Text sampled from the model itself: the context templates (:func:`sample`: continuations that
end at an end-of-sequence token) and the offline corpus of the second-moment statistics
(:func:`sample_windows`: windows of a fixed length).

Both sample top-k at temperature 1 in a random state of their own, seeded once before the first
batch (the caller's random state is left as it was), so every process and every run of a model
samples the same tokens. :func:`sample` runs transformers' ``generate``. :func:`sample_windows`
runs its own loop over the key-value cache, many windows at a time. Its LM head is the larger
part of a step on a large vocabulary (Gemma's 262k tokens), so it looks for each token's
candidates in bfloat16 where the hardware multiplies it fast (:class:`TopLogits`), and computes
exactly, in the model's precision, the logits it draws from.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from transformers import DynamicCache, GenerationConfig
from transformers.cache_utils import Cache, DynamicLayer

from pytest_kedit.model.devices import fast_bfloat16
from pytest_kedit.model.probe import cache_keywords, soft_capped
from pytest_kedit.storage.progress import progress_bar

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

#: Bytes of key-value cache one batch of :func:`sample_windows` may fill. The batches change the
#: windows drawn: a change of this bound is a change of corpus.SAMPLER_VERSION.
KV_CACHE_BYTES = 1 << 30
#: Candidates :class:`TopLogits` computes exactly, per token drawn among the top k: a token of the
#: exact top k is missed only if bfloat16's rounding moves it below this many times k.
CANDIDATES_PER_TOKEN = 2
#: Rows of the LM head :class:`TopLogits` scores at once: the scores of one chunk stay in
#: the processor's cache while their blocks' maxima are taken.
SEARCH_CHUNK = 8192
#: Rows of the LM head whose largest score :class:`TopLogits` ranks as one.
SEARCH_BLOCK = 128


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
    head = model.get_output_embeddings()
    ends = torch.tensor([t for t in _end_tokens(loaded) if t < head.weight.shape[0]], dtype=torch.long, device=device)
    top_logits = TopLogits(model, ends, torch.bfloat16 if fast_bfloat16(device) else head.weight.dtype)
    windows = []
    total = sum(len(firsts) for firsts in batches)
    with _own_random_state(loaded, seed), progress_bar(total, desc=progress, unit="sample", disable=progress is None) as bar:
        for firsts in batches:
            step = torch.tensor(firsts, dtype=torch.long, device=device)[:, None]  # (batch, 1)
            tokens, cache = [step], Cache(layer_class_to_replicate=partial(WindowLayer, length))
            for position in range(length - 1):
                positions = torch.full_like(step, position)
                hidden = model.base_model(input_ids=step, use_cache=True, **cache_keywords(model, cache, positions)).last_hidden_state
                top, candidates = top_logits(hidden[:, -1], top_k)  # (batch, k)
                step = candidates.gather(1, torch.multinomial(torch.softmax(top, dim=-1), 1))  # (batch, 1)
                tokens.append(step)
            windows.append(torch.cat(tokens, dim=1).cpu())
            bar.update(len(firsts))
    return torch.cat(windows)


class TopLogits:
    """The ``k`` largest logits of ``model``'s LM head at hidden states, the tokens ``excluded`` left
    out (:meth:`__call__`). ``search`` is the dtype that ranks the vocabulary: one the hardware
    multiplies fast, or the head's own; the best :data:`CANDIDATES_PER_TOKEN` × k of that ranking
    (:meth:`candidates`) are scored again by the head itself.

    The ranking scores the vocabulary a chunk of :data:`SEARCH_CHUNK` rows at a time (padded to
    whole chunks). Its scores and the candidates' rows of the head go into buffers kept from call
    to call: new ones at every step (Gemma's 262k scores) would cost as much in the operating
    system's page faults as a quarter of the work."""

    def __init__(self, model: torch.nn.Module, excluded: torch.Tensor, search: torch.dtype) -> None:
        self.model, self.head = model, model.get_output_embeddings()
        self.vocabulary, width = self.head.weight.shape
        rows = min(SEARCH_CHUNK, -(-self.vocabulary // SEARCH_BLOCK) * SEARCH_BLOCK)
        chunks = -(-self.vocabulary // rows)
        with torch.no_grad():
            weight = self.head.weight.new_zeros((chunks * rows, width), dtype=search)
            weight[: self.vocabulary] = self.head.weight
            bias = None if self.head.bias is None else weight.new_zeros(chunks * rows)
            if bias is not None:
                bias[: self.vocabulary] = self.head.bias
        self.weight = weight.view(chunks, rows, width)
        self.bias = None if bias is None else bias.view(chunks, rows)
        never = torch.cat([excluded.to(weight.device), torch.arange(self.vocabulary, chunks * rows, device=weight.device)])
        #: per chunk, its rows that must score -inf: excluded tokens and padding
        self.masked = [never[never // rows == i] % rows for i in range(chunks)]
        self.scores = weight.new_empty((chunks, 0, rows))
        self.rows = self.head.weight.new_empty((0, width))

    @torch.no_grad()
    def __call__(self, hidden: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest logits at ``hidden`` (batch, width), in float32 after the soft-capping,
        and their token ids: (batch, k) each, largest first."""
        candidates, scores = self.candidates(hidden, CANDIDATES_PER_TOKEN * k)  # (batch, c)
        if self.rows.shape[0] < candidates.numel():
            self.rows = self.rows.new_empty((candidates.numel(), self.rows.shape[1]))
        rows = torch.index_select(self.head.weight, 0, candidates.view(-1), out=self.rows[: candidates.numel()])
        logits = torch.einsum("bw,bcw->bc", hidden, rows.view(*candidates.shape, -1))  # (batch, c)
        if self.head.bias is not None:
            logits = logits + self.head.bias[candidates]
        logits = soft_capped(self.model, logits.float()).masked_fill(scores == float("-inf"), float("-inf"))
        top, order = logits.topk(k, dim=-1)
        return top, candidates.gather(1, order)

    @torch.no_grad()
    def candidates(self, hidden: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The token ids of the ``count`` largest scores of the search at ``hidden`` (batch, width),
        largest first, and those scores: (batch, ≤ count) each, the same as a top-``count`` over
        the whole scored vocabulary up to ties (a score of -inf may come with any token). Each block
        of :data:`SEARCH_BLOCK` rows keeps its largest score while its chunk is in the processor's
        cache; the ``count`` blocks of largest maxima hold the ``count`` largest scores, so only
        their rows are ranked."""
        chunks, rows, _ = self.weight.shape
        batch, per_chunk = hidden.shape[0], rows // SEARCH_BLOCK
        if self.scores.shape[1] < batch:
            self.scores = self.weight.new_empty((chunks, batch, rows))
        scores = self.scores[:, :batch]
        maxima = scores.new_empty((chunks, batch, per_chunk))
        query = hidden.to(self.weight.dtype)
        for i in range(chunks):
            if self.bias is None:
                torch.mm(query, self.weight[i].T, out=scores[i])
            else:
                torch.addmm(self.bias[i], query, self.weight[i].T, out=scores[i])
            scores[i].index_fill_(1, self.masked[i], float("-inf"))
            torch.amax(scores[i].view(batch, per_chunk, SEARCH_BLOCK), dim=-1, out=maxima[i])
        ranked = maxima.permute(1, 0, 2).reshape(batch, -1)  # (batch, blocks) in vocabulary order
        blocks = ranked.topk(min(count, ranked.shape[1]), dim=-1).indices  # (batch, c)
        rows_of = torch.arange(batch, device=hidden.device)[:, None]
        within = scores.view(chunks, batch, per_chunk, SEARCH_BLOCK)[blocks // per_chunk, rows_of, blocks % per_chunk]
        best = within.view(batch, -1).topk(min(count, within[0].numel()), dim=-1)  # (batch, c)
        offsets = torch.arange(SEARCH_BLOCK, device=hidden.device)
        ids = (blocks[:, :, None] * SEARCH_BLOCK + offsets).view(batch, -1).gather(1, best.indices)
        return ids.clamp_(max=self.vocabulary - 1), best.values


class WindowLayer(DynamicLayer):
    """One layer of a key-value cache for windows of ``length`` tokens: the keys and values
    :class:`DynamicLayer` holds, written into buffers of the whole window's length and handed out
    as views of their filled part, instead of concatenated anew at every step (a copy of the whole
    cache per token)."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length
        self.filled = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.key_buffer = key_states.new_empty((*key_states.shape[:-2], self.length, key_states.shape[-1]))
            self.value_buffer = value_states.new_empty((*value_states.shape[:-2], self.length, value_states.shape[-1]))
        end = self.filled + key_states.shape[-2]
        self.key_buffer[..., self.filled : end, :] = key_states
        self.value_buffer[..., self.filled : end, :] = value_states
        self.filled = end
        self.keys, self.values = self.key_buffer[..., :end, :], self.value_buffer[..., :end, :]
        return self.keys, self.values


def _end_tokens(loaded: LoadedModel) -> set[int]:
    """The end-of-sequence ids of the model's generation config and of its tokenizer."""
    configured = getattr(loaded.model, "generation_config", None)
    ids = configured.eos_token_id if configured is not None else None
    found = {ids} if isinstance(ids, int) else set(ids or ())
    if loaded.tokenizer.eos_token_id is not None:
        found.add(loaded.tokenizer.eos_token_id)
    return found
