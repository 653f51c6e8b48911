"""The probe: teacher-forced geometric mean of the object's token probabilities, batched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given
from hypothesis import strategies as st
from tiny_models import tiny_model, tiny_tokenizer

from pytest_kedit.model import probe as probe_module
from pytest_kedit.model.original_probes import OriginalProbes
from pytest_kedit.model.probe import MAX_LENGTH_RATIO, Encoder, length_batches, next_token_ranks, probe

PAIRS = [
    ("The capital of France is", "Paris"),
    ("The capital of Italy is", "Rome"),
    ("Hamlet was a notable work of", "Shakespeare"),
    ("The official languages of Switzerland is", "German French Italian Romansh"),
    ("Marie , the mother of", "Pierre"),
    ("the spouse of Alice is", "Bob"),
    ("The capital of France is", "Lyon Marseille"),
    ("The capital of France is", "Paris"),
    ("Hamlet was a notable work of", "the Globe Theatre company"),
    ("Hamlet was a notable work of", "Paris"),
]


def reference(model, tok, prefix: str, target: str) -> float:
    """Straight from the definition: full logits of the whole sequence, one pair at a time."""
    prefix_ids = tok(prefix)["input_ids"]
    target_ids = tok(" " + target, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prefix_ids + target_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].double(), -1)
    steps = [logprobs[len(prefix_ids) - 1 + j, t].item() for j, t in enumerate(target_ids)]
    return float(np.exp(np.mean(steps)))


def test_batched_probe_matches_the_definition(family):
    model, tok = tiny_model(family)
    got = probe(model, Encoder(tok), PAIRS)
    want = [reference(model, tok, *pair) for pair in PAIRS]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


def test_batched_and_one_at_a_time_agree(family, monkeypatch):
    model, tok = tiny_model(family)
    encoder = Encoder(tok)
    batched = probe(model, encoder, PAIRS)
    monkeypatch.setattr(probe_module, "MAX_BATCH_TOKENS", 1)  # forces one pair per forward pass
    single = probe(model, encoder, PAIRS)
    np.testing.assert_allclose(batched, single, rtol=1e-5)


def test_trailing_space_in_a_prompt_does_not_change_the_tokens():
    model, tok = tiny_model("llama")
    encoder = Encoder(tok)
    assert encoder("The capital of France is ", "Paris") == encoder("The capital of France is", "Paris")
    assert probe(model, encoder, [("the capital of France is ", "Paris")])[0] == pytest.approx(
        probe(model, encoder, [("the capital of France is", "Paris")])[0]
    )


def test_probabilities_are_in_unit_interval_and_order_independent():
    model, tok = tiny_model("gpt2")
    encoder = Encoder(tok)
    forward = probe(model, encoder, PAIRS)
    backward = probe(model, encoder, PAIRS[::-1])[::-1]
    assert np.all((forward > 0) & (forward <= 1))
    np.testing.assert_allclose(forward, backward, rtol=1e-6)


def reference_rank(model, tok, prefix: str, target: str) -> int:
    """How many tokens the model finds more probable than the target's first one, after the prefix alone."""
    first = tok(" " + target, add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        logits = model(torch.tensor([tok(prefix)["input_ids"]])).logits[0, -1]
    return int((logits > logits[first]).sum())


def test_next_token_ranks_match_the_definition(family):
    model, tok = tiny_model(family)
    # Repeated prefixes with different objects are run once and must still rank each object.
    pairs = PAIRS + [(PAIRS[0][0], "Rome"), (PAIRS[0][0], "Paris Hilton")]
    got = next_token_ranks(model, Encoder(tok), pairs)
    assert got.tolist() == [reference_rank(model, tok, *pair) for pair in pairs]
    assert got[0] == got[-1], "objects with the same first token rank the same"


def test_greedy_choice_ranks_zero():
    model, tok = tiny_model("llama")
    prefix = "The capital of France is"
    with torch.no_grad():
        greedy = int(model(torch.tensor([tok(prefix)["input_ids"]])).logits[0, -1].argmax())
    word = tok.decode([greedy]).strip()
    pairs = [(prefix, word)]
    if tok(" " + word, add_special_tokens=False)["input_ids"][0] != greedy:
        pytest.skip(f"the greedy token {greedy} does not start ' ' + {word!r} in this vocabulary")
    assert next_token_ranks(model, Encoder(tok), pairs).tolist() == [0]


@given(st.lists(st.integers(1, 300), max_size=60), st.integers(1, 2000))
def test_length_batches_partition_within_the_bounds(lengths, max_tokens):
    saved, probe_module.MAX_BATCH_TOKENS = probe_module.MAX_BATCH_TOKENS, max_tokens
    try:
        batches = length_batches(lengths)
    finally:
        probe_module.MAX_BATCH_TOKENS = saved
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        longest, shortest = max(lengths[i] for i in batch), min(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= max_tokens
        assert longest <= max(MAX_LENGTH_RATIO * shortest, shortest + 1)
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat), "batches go in order of length"


def test_original_probabilities_are_remembered_exactly_across_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("KEDIT_CACHE_DIR", str(tmp_path))
    cpu = torch.device("cpu")
    pairs = [("The capital of France is", "Paris"), ("Hamlet was a notable work of", "Shakespeare")]
    first = OriginalProbes("tiny-llama", torch.float32, cpu)
    assert first.lookup(pairs) is None
    first.remember(pairs, np.array([0.25, 1 / 3]))
    first.remember(pairs, np.array([0.25, 1 / 3]))
    again = OriginalProbes("tiny-llama", torch.float32, cpu)  # as a later process reads them
    assert again.lookup(pairs[::-1]).tolist() == [1 / 3, 0.25]
    assert again.lookup([pairs[0], ("the spouse of Alice is", "Bob")]) is None
    assert OriginalProbes("tiny-llama", torch.float16, cpu).lookup(pairs) is None
    assert len(list(first.folder.glob("*.json"))) == 1 and not list(first.folder.glob(".*"))


#: Architectures outside the module map (the probe needs none): ALiBi positions read off the mask
#: (Bloom), learned positions with an offset (OPT), grouped-query attention (Qwen2).
OTHER_CONFIGS = {
    "bloom": lambda vocab: transformers.BloomConfig(vocab_size=vocab, hidden_size=32, n_layer=2, n_head=4),
    "opt": lambda vocab: transformers.OPTConfig(vocab_size=vocab, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                                num_attention_heads=4, word_embed_proj_dim=32),
    "qwen2": lambda vocab: transformers.Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
}


@pytest.mark.parametrize("architecture", OTHER_CONFIGS)
def test_probe_matches_the_definition_on_other_architectures(architecture: str):
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(OTHER_CONFIGS[architecture](len(tok))).eval()
    got = probe(model, Encoder(tok), PAIRS)
    np.testing.assert_allclose(got, [reference(model, tok, *pair) for pair in PAIRS], rtol=1e-5, atol=1e-9)
