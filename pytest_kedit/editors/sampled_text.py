"""Text sampled from the model itself: the context templates, and the offline corpus of the
second-moment statistics.

Seed prompts are continued by top-k sampling at temperature 1 in a random state of their own,
seeded once before the first batch (the caller's random state is left as it was), so every
process and every run of a model samples the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from transformers import GenerationConfig

from pytest_kedit.storage.progress import progress_bar

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel


@torch.no_grad()
def sample(
    loaded: LoadedModel,
    batches: Sequence[Sequence[Sequence[int]]],
    length: int,
    top_k: int,
    seed: int,
    exact_length: bool = False,
    progress: str | None = None,
) -> list[torch.Tensor]:
    """The token ids (prompt included, on the CPU) of each batch of equal-length prompts continued
    to ``length`` tokens in all, at least one new token: (batch, ≤ length) per batch; exactly
    ``length`` with ``exact_length``, which samples on past an end-of-sequence token. A
    ``progress`` text shows a progress bar."""
    model, tokenizer = loaded.model, loaded.tokenizer
    devices = [loaded.device] if loaded.device.type == "cuda" else []
    outputs = []
    total = sum(len(prompts) for prompts in batches)
    with torch.random.fork_rng(devices=devices), progress_bar(total, desc=progress, unit="sample", disable=progress is None) as bar:
        torch.manual_seed(seed)
        for prompts in batches:
            ids = torch.tensor(prompts, device=loaded.device)  # (batch, prompt length)
            new_tokens = max(1, length - ids.shape[1])
            config = GenerationConfig(
                do_sample=True, top_k=top_k, top_p=1.0, temperature=1.0, max_new_tokens=new_tokens,
                min_new_tokens=new_tokens if exact_length else None, pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
            outputs.append(model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config).cpu())
            bar.update(len(prompts))
    return outputs
