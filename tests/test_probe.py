"""The probe: teacher-forced geometric mean of the object's token probabilities, batched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_kedit import probe as probe_module
from pytest_kedit.probe import Encoder, probe

from tiny_models import tiny_model

PAIRS = [
    ("The capital of France is", "Paris"),
    ("The capital of Italy is", "Rome"),
    ("Hamlet was a notable work of", "Shakespeare"),
    ("The official languages of Switzerland is", "German French Italian Romansh"),
    ("Marie , the mother of", "Pierre"),
    ("the spouse of Alice is", "Bob"),
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
