"""Windows sampled from the model for the offline corpus, on tiny random models of every family."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch
from test_rome import one_thread_and_private_cache, tiny_loaded  # noqa: F401
from tiny_models import TINY
from transformers import DynamicCache
from transformers.cache_utils import Cache

from pytest_kedit.editors import sampled_text
from pytest_kedit.editors.sampled_text import KV_CACHE_BYTES, TopLogits, WindowLayer, sample_windows, window_batches
from pytest_kedit.model.probe import cache_keywords, soft_capped

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


def test_top_logits_searched_in_bfloat16_are_the_exact_top_k_of_the_head(family):
    """Oracle: the head's full float32 logits, soft-capped, excluded tokens at -inf, and their top k."""
    loaded = tiny_loaded(family)
    model = loaded.model
    head = model.get_output_embeddings()
    hidden = torch.randn(6, model.config.get_text_config().hidden_size, generator=torch.Generator().manual_seed(0))
    excluded = torch.tensor([0, 3])
    logits = soft_capped(model, head(hidden).float())
    logits[:, excluded] = float("-inf")
    expected, expected_ids = logits.topk(TOP_K, dim=-1)
    top, ids = TopLogits(model, excluded, torch.bfloat16)(hidden, TOP_K)
    assert torch.equal(ids, expected_ids)
    torch.testing.assert_close(top, expected)


def test_top_logits_never_return_an_excluded_token_even_when_few_are_left():
    loaded = tiny_loaded("llama")
    head = loaded.model.get_output_embeddings()
    vocabulary = head.weight.shape[0]
    excluded = torch.arange(vocabulary - TOP_K)  # exactly k tokens allowed, fewer than the candidates
    top, ids = TopLogits(loaded.model, excluded, head.weight.dtype)(torch.randn(3, head.weight.shape[1]), TOP_K)
    assert sorted(ids[0].tolist()) == list(range(vocabulary - TOP_K, vocabulary))
    assert torch.isfinite(top).all()


class _Head(torch.nn.Module):
    """A model that is only an LM head, for :class:`TopLogits`."""

    def __init__(self, head: torch.nn.Linear) -> None:
        super().__init__()
        self.head, self.config = head, SimpleNamespace()

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.head


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("vocabulary", "chunk", "count"), [(1000, 256, 7), (1000, 4096, 20), (300, 128, 5), (128, 128, 3), (513, 256, 9)])
def test_the_vocabulary_search_finds_the_top_scores_of_the_whole_vocabulary(monkeypatch, vocabulary, chunk, count, bias):
    """Oracle: one top-k over the whole vocabulary's scores, excluded tokens at -inf. The search
    scores chunk by chunk, over a vocabulary padded to whole chunks, ranks blocks first, and keeps
    its buffers for the next call (here a smaller batch)."""
    monkeypatch.setattr(sampled_text, "SEARCH_CHUNK", chunk)
    generator = torch.Generator().manual_seed(vocabulary + chunk)
    head = torch.nn.Linear(16, vocabulary, bias=bias).requires_grad_(False)
    head.weight.copy_(torch.randn(vocabulary, 16, generator=generator))
    if bias:
        head.bias.copy_(torch.randn(vocabulary, generator=generator))
    hidden = torch.randn(5, 16, generator=generator)
    excluded = torch.randint(0, vocabulary, (4,), generator=generator)
    scores = head(hidden)
    scores[:, excluded] = float("-inf")
    expected = scores.topk(count, dim=-1)
    search = TopLogits(_Head(head), excluded, torch.float32)
    for rows in (5, 3):
        ids, found = search.candidates(hidden[:rows], count)
        assert torch.equal(ids, expected.indices[:rows])
        torch.testing.assert_close(found, expected.values[:rows])
    top, ids = search(hidden[:2], count // 2)
    assert torch.equal(ids, expected.indices[:2, : count // 2])
    torch.testing.assert_close(top, expected.values[:2, : count // 2])


def test_a_window_cache_continues_exactly_as_transformers_dynamic_cache(family):
    """The same tokens fed one at a time through both caches give the same last hidden states, bit for bit."""
    model = tiny_loaded(family).model
    tokens = torch.randint(0, 60, (3, 9), generator=torch.Generator().manual_seed(1))
    states = []
    for cache in (DynamicCache(), Cache(layer_class_to_replicate=partial(WindowLayer, tokens.shape[1]))):
        with torch.no_grad():
            states.append(torch.stack([
                model.base_model(input_ids=tokens[:, [i]], use_cache=True,
                                 **cache_keywords(model, cache, torch.full((3, 1), i))).last_hidden_state[:, -1]
                for i in range(tokens.shape[1])
            ]))  # fmt: skip
    assert torch.equal(states[0], states[1])
