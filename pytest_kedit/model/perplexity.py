"""The perplexity of texts under a model: the fluency a stream of edits may cost, measured without
generating anything.

Each text is tokenized with the tokenizer's defaults (its special tokens, such as a BOS, included)
and cut into windows of at most ``window`` tokens, each scored on its own. Every token of a window
but its first is scored, under teacher forcing, given the tokens before it in the window:

    PPL(texts) = exp( -(1/T) · Σ over the scored tokens t of log P(t | the window's tokens before t) )

with T the number of scored tokens of all texts together. The windows go through the model in one
padded batch (padding is masked and never scored); log-probabilities are taken in float64 sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from pytest_kedit.model.probe import model_device, vocab_logprobs
from pytest_kedit.model.tracing import pad

#: Changes when the floating-point path of :func:`perplexity` changes, so that a perplexity
#: remembered on disk (:mod:`pytest_kedit.model.original_probes`) is measured again.
PERPLEXITY_VERSION = 1
#: Scored positions whose vocabulary log-probabilities are computed at once (bounds the memory of
#: the LM head's output: positions × vocabulary floats).
POSITIONS_PER_STEP = 256


def windows(ids: Sequence[int], window: int) -> list[list[int]]:
    """``ids`` cut into consecutive pieces of ``window`` tokens (the last may be shorter)."""
    if window < 2:
        raise ValueError(f"a window must hold at least 2 tokens, got {window}")
    return [list(ids[start:start + window]) for start in range(0, len(ids), window)]


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], window: int) -> float:
    """PPL of ``texts`` (see the module docstring), windows of at most ``window`` tokens.
    ValueError when no token can be scored (every window is a single token)."""
    pieces = [piece for text in texts for piece in windows(tokenizer(text)["input_ids"], window)]
    pieces = [piece for piece in pieces if len(piece) > 1]
    if not pieces:
        raise ValueError("no token of the texts can be scored: every window holds a single token")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = model_device(model)
    batch = pad(pieces, pad_id, device)
    hidden = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    rows = torch.tensor([row for row, piece in enumerate(pieces) for _ in piece[1:]], device=device)
    positions = torch.tensor([position for piece in pieces for position in range(len(piece) - 1)], device=device)
    targets = torch.tensor([token for piece in pieces for token in piece[1:]], device=device)
    total = 0.0
    for start in range(0, len(targets), POSITIONS_PER_STEP):
        step = slice(start, start + POSITIONS_PER_STEP)
        logprobs = vocab_logprobs(model, hidden[rows[step], positions[step]])  # (positions, vocabulary)
        total += float(logprobs.gather(-1, targets[step, None])[:, 0].double().sum())
    return math.exp(-total / len(targets))
