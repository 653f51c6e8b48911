"""Which field makes a case's model input too long, and a model's context length."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from pytest_kedit.benchmark.cases import RoundCase
from pytest_kedit.dataset.input_length import byte_limit, context_length, overlong
from pytest_kedit.dataset.sources import load_suite


def words(prefix: str, target: str) -> int:
    return len(prefix.split()) + len(target.split())


def test_every_input_of_a_case_is_measured():
    coverage = load_suite(None, ["coverage"], limit=1).splits["coverage"][0]
    assert overlong(coverage, words, 1000) is None  # type: ignore[arg-type]
    found = overlong(coverage, words, 3)  # type: ignore[arg-type]
    assert found is not None and found.limit == 3 and found.length > 3
    assert found.field.startswith(("triples[", "edits["))


def test_the_field_named_is_the_longest_text_of_the_longest_input():
    easy = load_suite(None, ["easy"], limit=1).splits["easy"][0]
    assert isinstance(easy, RoundCase)
    other = next(i for i, o in enumerate(easy.true_objects) if o.label != easy.edit.old.label)
    objects = list(easy.true_objects)
    objects[other] = dataclasses.replace(objects[other], label="x" * 4000)
    found = overlong(dataclasses.replace(easy, true_objects=tuple(objects)), lambda p, t: len(p) + len(t), 500)
    assert found is not None and found.field == f"true_objects[{other}].label"
    assert found.message("the model's context") == (f"the model input with it is {found.length} tokens long; "
                                                     "the model's context is 500")


def test_byte_limit_counts_utf8_bytes():
    assert byte_limit(10).length("é {}", "ü") == len("é {} ü".encode())


def test_context_length_prefers_the_configuration_and_ignores_a_tokenizer_without_a_limit():
    assert context_length(SimpleNamespace(max_position_embeddings=8192), SimpleNamespace(model_max_length=10)) == 8192
    assert context_length(SimpleNamespace(n_positions=1024), None) == 1024
    assert context_length(SimpleNamespace(), SimpleNamespace(model_max_length=2048)) == 2048
    assert context_length(SimpleNamespace(), SimpleNamespace(model_max_length=int(1e30))) is None

