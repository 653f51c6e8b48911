"""The one way probabilities are measured: teacher forcing of an object after a prompt.

p(prefix, object) = exp(mean_j log P(t_j | prefix, t_<j)) over the tokens t of " " + object,
the geometric mean of the object's token probabilities. The prefix and the object are tokenized
separately and their ids concatenated (the object without special tokens), so the scored positions
are exact for every tokenizer. Logits are computed only at the scored positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

#: Upper bound on padded tokens in one forward pass of ``probe``.
MAX_BATCH_TOKENS = 8192


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
    """Tokenizes (prefix, object) pairs the probe's way, remembering what it has seen."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._prefix = lru_cache(maxsize=65536)(self._encode_prefix)
        self._target = lru_cache(maxsize=65536)(self._encode_target)

    def _encode_prefix(self, prefix: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(prefix.rstrip())["input_ids"])

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
    seqs = [p.prefix if last_prefix_position else p.prefix + p.target for p in pairs]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    rows, positions, tokens, owners = [], [], [], []
    for i, (pair, seq) in enumerate(zip(pairs, seqs)):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        for j, token in enumerate(pair.target):
            rows.append(i)
            positions.append(len(pair.prefix) - 1 if last_prefix_position else len(pair.prefix) - 1 + j)
            tokens.append(token)
            owners.append(i)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
    return Batch(ids.to(device), mask.to(device), as_long(rows), as_long(positions), as_long(tokens), as_long(owners))


def token_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """log P(token) at every scored position; differentiable when grad is enabled."""
    hidden = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    logits = model.get_output_embeddings()(hidden[batch.rows, batch.positions]).float()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.log_softmax(logits, dim=-1).gather(-1, batch.tokens[:, None])[:, 0]


def mean_logprob_per_pair(logprobs: torch.Tensor, batch: Batch, n_pairs: int) -> torch.Tensor:
    """Mean of the scored tokens' log-probabilities for each pair."""
    sums = torch.zeros(n_pairs, dtype=logprobs.dtype, device=logprobs.device).index_add_(0, batch.owners, logprobs)
    counts = torch.bincount(batch.owners, minlength=n_pairs).to(logprobs.dtype)
    return sums / counts


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def probe(model: torch.nn.Module, encoder: Encoder, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """p(prefix, object) for each pair, in as few batched forward passes as fit MAX_BATCH_TOKENS."""
    encoded = [encoder(prefix, target) for prefix, target in pairs]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].prefix) + len(encoded[i].target))
    result = np.empty(len(encoded), dtype=np.float64)
    device = model_device(model)
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and _padded_tokens(encoded, order[start : stop + 1]) <= MAX_BATCH_TOKENS:
            stop += 1
        chunk = order[start:stop]
        batch = collate([encoded[i] for i in chunk], encoder.pad_id, device)
        means = mean_logprob_per_pair(token_logprobs(model, batch), batch, len(chunk))
        result[chunk] = np.exp(means.double().cpu().numpy())
        start = stop
    return result


def _padded_tokens(encoded: Sequence[Encoded], chunk: Sequence[int]) -> int:
    # ``chunk`` is sorted by length, so its last pair is the longest.
    last = encoded[chunk[-1]]
    return len(chunk) * (len(last.prefix) + len(last.target))
