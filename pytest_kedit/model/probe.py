"""The one way probabilities are measured: teacher forcing of an object after a prompt.

p(prefix, object) = exp(mean_j log P(t_j | prefix, t_<j)) over the tokens t of " " + object,
the geometric mean of the object's token probabilities. The prefix and the object are tokenized
separately and their ids concatenated (the object without special tokens), so the scored positions
are exact for every tokenizer. A prefix's trailing white space is stripped first, unless the
encoder keeps it (``--kedit-protocol=upstream``: the published code scored ``prefix + " " +
object``, so after a prompt ending in a space the object follows a space token). Logits are
computed only at the scored positions.

Every prompt is run once however many objects follow it: its key-value cache is continued with
each object's tokens. That is the same arithmetic as feeding each (prompt, object) sequence whole,
up to floating-point rounding (about 1e-6 in a probability, ``benchmarks/bench_probe.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache

from pytest_kedit.model.tracing import pad

#: Changes when the floating-point path of :func:`probe` changes (its results then differ in the last
#: bits), so that probabilities remembered on disk (:mod:`pytest_kedit.model.original_probes`) are measured again.
PROBE_VERSION = 2
#: Upper bound on padded tokens in one forward pass of ``probe``.
MAX_BATCH_TOKENS = 8192
#: A batch's longest sequence is at most this many times its shortest, so at most half of it is
#: padding. A looser bound than a tight one: on short prompts a pass costs about as much as reading
#: the weights once, so one more pass costs more than the padding it saves (benchmarks/bench_probe.py).
MAX_LENGTH_RATIO = 2.0


@dataclass(frozen=True)
class Encoded:
    prefix: tuple[int, ...]
    target: tuple[int, ...]


@dataclass
class Batch:
    """Right-padded token ids and, for every scored token, its row, position and id."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    rows: torch.Tensor
    positions: torch.Tensor
    tokens: torch.Tensor
    #: index of the (prefix, target) pair each scored token belongs to
    owners: torch.Tensor


class Encoder:
    """Tokenizes (prefix, object) pairs the probe's way, remembering what it has seen;
    ``keep_trailing_space``: a prefix keeps its trailing white space (see the module docstring)."""

    def __init__(self, tokenizer: Any, keep_trailing_space: bool = False):
        self.tokenizer = tokenizer
        self.keep_trailing_space = keep_trailing_space
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._prefix = lru_cache(maxsize=65536)(self._encode_prefix)
        self._target = lru_cache(maxsize=65536)(self._encode_target)

    def _encode_prefix(self, prefix: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(prefix if self.keep_trailing_space else prefix.rstrip())["input_ids"])

    def _encode_target(self, target: str) -> tuple[int, ...]:
        ids = tuple(self.tokenizer(" " + target.strip(), add_special_tokens=False)["input_ids"])
        if not ids:
            raise ValueError(f"object {target!r} encodes to no tokens")
        return ids

    def __call__(self, prefix: str, target: str) -> Encoded:
        return Encoded(self._prefix(prefix), self._target(target))


def collate(pairs: Sequence[Encoded], pad_id: int, device: torch.device, last_prefix_position: bool = False) -> Batch:
    """Pad a batch of pairs. Each target token t_j is scored at the position that predicts it
    under teacher forcing, or, with ``last_prefix_position``, every t_j at the prefix's last
    position (the objective of the upstream FT scripts; the target is then not fed to the model)."""
    padded = pad([p.prefix if last_prefix_position else p.prefix + p.target for p in pairs], pad_id, device)
    rows, positions, tokens = [], [], []
    for i, pair in enumerate(pairs):
        for j, token in enumerate(pair.target):
            rows.append(i)
            positions.append(len(pair.prefix) - 1 if last_prefix_position else len(pair.prefix) - 1 + j)
            tokens.append(token)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
    return Batch(padded.input_ids, padded.attention_mask, as_long(rows), as_long(positions), as_long(tokens), as_long(rows))


def position_logprobs(model: torch.nn.Module, batch: Batch, at: torch.Tensor | None = None) -> torch.Tensor:
    """log P(· | position) over the vocabulary at every scored position, or at those ``at`` selects
    (a boolean mask over the scored tokens): (scored, vocab); differentiable when grad is enabled."""
    hidden = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state  # (batch, width, hidden)
    rows, positions = (batch.rows, batch.positions) if at is None else (batch.rows[at], batch.positions[at])
    return vocab_logprobs(model, hidden[rows, positions])


def token_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """log P(token) at every scored position; differentiable when grad is enabled."""
    return position_logprobs(model, batch).gather(-1, batch.tokens[:, None])[:, 0]


def group_sums(values: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    """The sum of ``values`` (items,) over the items of each of ``n`` groups, ``groups`` (items,)
    giving each item's group: (n,). A group without items sums to 0."""
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, groups, values)


def group_means(values: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    """The mean of ``values`` (items,) over the items of each of ``n`` groups, ``groups`` (items,)
    giving each item's group: (n,). A group without items has mean 0."""
    counts = torch.bincount(groups, minlength=n).clamp(min=1).to(values.dtype)
    return group_sums(values, groups, n) / counts


def mean_logprob_per_pair(logprobs: torch.Tensor, batch: Batch, n_pairs: int) -> torch.Tensor:
    """Mean of the scored tokens' log-probabilities for each pair."""
    return group_means(logprobs, batch.owners, n_pairs)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def probe(model: torch.nn.Module, encoder: Encoder, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """p(prefix, object) for each pair. Each distinct prefix runs once (prefixes of similar length
    batched together, :func:`length_batches`): its last position scores the first token of every
    object after it, and its keys and values are reused for the objects' further tokens, so a prompt
    probed with many objects costs one pass over the prompt and the objects' own tokens."""
    encoded = [encoder(prefix, target) for prefix, target in pairs]
    pairs_after: dict[tuple[int, ...], list[int]] = {}  # each distinct prefix -> its pairs, in order of appearance
    for k, pair in enumerate(encoded):
        pairs_after.setdefault(pair.prefix, []).append(k)
    prefixes = list(pairs_after)
    logprob_sums = np.zeros(len(encoded), dtype=np.float64)
    for chunk in length_batches([len(prefix) for prefix in prefixes]):
        owned = [(k, row) for row, i in enumerate(chunk) for k in pairs_after[prefixes[i]]]
        logprob_sums[[k for k, _ in owned]] = _score_after_prefixes(model, encoder, [prefixes[i] for i in chunk],
                                                                    [encoded[k].target for k, _ in owned],
                                                                    [row for _, row in owned])
    return np.exp(logprob_sums / np.array([len(e.target) for e in encoded], dtype=np.float64))


def _score_after_prefixes(model: torch.nn.Module, encoder: Encoder, prefixes: Sequence[tuple[int, ...]],
                          targets: Sequence[tuple[int, ...]], rows: Sequence[int]) -> np.ndarray:
    """Σ_j log P(t_j | prefix, t_<j) for each target after the prefix in ``rows``. The prefixes are
    left-padded so that they all end in the last column and their cached keys and values continue
    with the targets' tokens (all but the last, which is only scored)."""
    device = model_device(model)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
    padded = pad(prefixes, encoder.pad_id, device, left=True)
    cache = DynamicCache(config=model.config)
    hidden = _continue(model, cache, padded.input_ids, padded.attention_mask,
                       (padded.attention_mask.cumsum(-1) - 1).clamp(min=0))
    first = vocab_logprobs(model, hidden[:, -1])  # (prefixes, vocab)
    sums = first[as_long(rows), as_long([t[0] for t in targets])].double()
    longer = [k for k, t in enumerate(targets) if len(t) > 1]
    if longer:
        longer_rows = as_long([rows[k] for k in longer])
        fed = pad([targets[k][:-1] for k in longer], encoder.pad_id, device)  # (pairs, fed tokens)
        cache.batch_select_indices(longer_rows)
        hidden = _continue(model, cache, fed.input_ids,
                           torch.cat([padded.attention_mask[longer_rows], fed.attention_mask], -1),
                           padded.lengths[longer_rows, None] + torch.arange(fed.input_ids.shape[1], device=device))
        # hidden: (pairs, fed tokens, hidden)
        owner, position, token = zip(*((i, j, t) for i, k in enumerate(longer) for j, t in enumerate(targets[k][1:])))
        later = vocab_logprobs(model, hidden[as_long(owner), as_long(position)]).gather(-1, as_long(token)[:, None])[:, 0]
        sums = sums.index_add(0, as_long(longer)[as_long(owner)], later.double())
    return sums.cpu().numpy()


def _continue(model: torch.nn.Module, cache: DynamicCache, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              position_ids: torch.Tensor) -> torch.Tensor:
    """The last hidden states of ``input_ids`` after what ``cache`` holds, which then holds them too."""
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True,
                            **cache_keywords(model, cache, position_ids)).last_hidden_state


def cache_keywords(model: torch.nn.Module, cache: Cache, position_ids: torch.Tensor) -> dict[str, Any]:
    """The keyword arguments that give ``model.base_model`` a key-value cache to continue and the
    positions of its input, named as its forward names them: the cache is ``cache`` in recent
    transformers and ``past_key_values`` before; a model without ``position_ids`` (ALiBi) reads
    positions off the attention mask, so they are left out."""
    accepted = _forward_parameters(type(model.base_model))
    keywords: dict[str, Any] = {"cache" if "cache" in accepted else "past_key_values": cache}
    if "position_ids" in accepted:
        keywords["position_ids"] = position_ids
    return keywords


@cache
def _forward_parameters(module_class: type[torch.nn.Module]) -> frozenset[str]:
    """The keyword parameters of a module class's ``forward``, read once per class."""
    return frozenset(inspect.signature(module_class.forward).parameters)


def soft_capped(model: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """``logits`` after the model's final soft-capping (``final_logit_softcapping``), if it has one:
    a monotonic map, so it keeps every ranking of the logits."""
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / softcap) * softcap if softcap else logits


def vocab_logprobs(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """log-softmax of the LM head's logits (after the final soft-capping, if the model has one)."""
    return torch.log_softmax(soft_capped(model, model.get_output_embeddings()(hidden).float()), dim=-1)


def length_batches(lengths: Sequence[int]) -> list[list[int]]:
    """Indices of sequences with these lengths, grouped into batches in order of length: each
    batch pads to at most ``MAX_BATCH_TOKENS`` tokens, and its longest sequence is at most
    ``MAX_LENGTH_RATIO`` times its shortest (or one token longer)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    for i in order:
        batch = batches[-1] if batches else None
        if (
            batch is None
            or (len(batch) + 1) * lengths[i] > MAX_BATCH_TOKENS
            or lengths[i] > max(MAX_LENGTH_RATIO * lengths[batch[0]], lengths[batch[0]] + 1)
        ):
            batches.append([i])
        else:
            batch.append(i)
    return batches


@torch.no_grad()
def next_token_ranks(model: torch.nn.Module, encoder: Encoder, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """For each (prefix, object) pair, the rank of the first token of " " + object among the model's
    next-token predictions after the prefix: 0 when greedy decoding would choose it, k when k tokens
    are more probable. Each distinct prefix is run once; only its last position reaches the LM head."""
    encoded = [encoder(prefix, target) for prefix, target in pairs]
    prefixes = list(dict.fromkeys(e.prefix for e in encoded))
    row = {prefix: i for i, prefix in enumerate(prefixes)}
    last_logits: list[torch.Tensor | None] = [None] * len(prefixes)
    device = model_device(model)
    for chunk in length_batches([len(prefix) for prefix in prefixes]):
        batch = pad([prefixes[i] for i in chunk], encoder.pad_id, device)
        hidden = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        last = hidden[torch.arange(len(chunk), device=device), batch.lengths - 1]  # (batch, hidden)
        logits = model.get_output_embeddings()(last).float().cpu()
        for i, row_logits in zip(chunk, logits):
            last_logits[i] = row_logits
    ranks = np.empty(len(encoded), dtype=np.int64)
    for k, pair in enumerate(encoded):
        logits = last_logits[row[pair.prefix]]
        assert logits is not None
        ranks[k] = int((logits > logits[pair.target[0]]).sum())
    return ranks
