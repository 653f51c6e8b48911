"""Windows sampled from the model for the offline corpus, on tiny random models of every family."""

from __future__ import annotations

import torch
from test_rome import one_thread_and_private_cache, tiny_loaded  # noqa: F401
from tiny_models import TINY

from pytest_kedit.editors.sampled_text import KV_CACHE_BYTES, sample_windows, window_batches

TOP_K = 4


def test_windows_have_their_length_and_first_token_and_each_token_is_among_the_top_k(family):
    """Checked against one plain forward pass over each finished window: every sampled token is
    among the k most probable after the tokens before it, end-of-sequence tokens left out."""
    loaded = tiny_loaded(family)
    firsts = [[5, 6, 7], [8, 9]]
    windows = sample_windows(loaded, firsts, 12, TOP_K, seed=3)
    assert windows.shape == (5, 12) and windows[:, 0].tolist() == [5, 6, 7, 8, 9]
    ends = [t for t in {loaded.model.generation_config.eos_token_id} if isinstance(t, int) and t < 63]
    with torch.no_grad():
        logits = loaded.model(input_ids=windows).logits.float()  # (windows, 12, vocab)
    logits[..., ends] = float("-inf")
    rank = (logits[:, :-1] > logits[:, :-1].gather(2, windows[:, 1:, None])).sum(dim=2)  # tokens more probable than the drawn one
    assert int(rank.max()) < TOP_K
    assert not any(t in ends for t in windows.flatten().tolist())


def test_the_same_seed_draws_the_same_windows_and_leaves_the_callers_random_state():
    loaded = tiny_loaded("llama")
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    first = sample_windows(loaded, [[5, 6, 7, 8]], 10, TOP_K, seed=0)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(sample_windows(loaded, [[5, 6, 7, 8]], 10, TOP_K, seed=0), first)
    assert not torch.equal(sample_windows(loaded, [[5, 6, 7, 8]], 10, TOP_K, seed=1), first)


#: Key-value heads of the tiny models (tiny_models.CONFIGS): grouped-query attention in two families.
KV_HEADS = {"llama": 2, "gemma3_text": 2}


def test_batches_are_as_few_and_even_as_the_cache_bound_allows(family):
    """A window of 16 tokens fills 3 layers × (keys, values) × heads × 8 dimensions × 4 bytes per token."""
    loaded = tiny_loaded(family)
    per_window = 16 * 3 * 2 * KV_HEADS.get(family, TINY["heads"]) * 8 * 4
    capacity = KV_CACHE_BYTES // per_window
    for n in (1, 7, capacity, capacity + 1, 10 * capacity + 3):
        sizes = window_batches(loaded, n, 16)
        assert sum(sizes) == n and max(sizes) - min(sizes) <= 1 and max(sizes) <= capacity
        assert len(sizes) == -(-n // capacity)
