"""Which field makes a case's model input too long, and a model's context length."""

from __future__ import annotations

from types import SimpleNamespace

from pytest_kedit.datasets import load_suite
from pytest_kedit.input_length import byte_limit, context_length, overlong


def words(prefix: str, target: str) -> int:
    return len(prefix.split()) + len(target.split())


def test_the_field_named_is_the_longest_text_of_the_longest_input():
    suite = load_suite(None, ["coverage", "easy"], limit=1)
    coverage, easy = suite.splits["coverage"][0], suite.splits["easy"][0]
    assert overlong(coverage, words, 1000) is None
    found = overlong(coverage, words, 3)
    assert found is not None and found.limit == 3 and found.length > 3
    assert found.field.startswith(("triples", "edits"))
    long_label = easy.true_objects[1].label * 400  # type: ignore[union-attr]
    longer = overlong(easy, lambda prefix, target: words(prefix, target) + len(target) // 10, 100)
    assert longer is None
    import dataclasses

    edited = dataclasses.replace(easy, true_objects=(easy.true_objects[0],  # type: ignore[union-attr]
                                                     dataclasses.replace(easy.true_objects[1], label=long_label)))  # type: ignore[union-attr]
    found = overlong(edited, lambda prefix, target: len(prefix) + len(target), 500, "round_prompts.json")
    assert found is not None and found.field == "true_objects[1].label"
    assert found.message("the model's context") == (f"the model input with it is {found.length} tokens long; "
                                                     "the model's context is 500")


def test_byte_limit_counts_utf8_bytes():
    limit = byte_limit(10)
    assert limit.length("é {}", "ü") == len("é {} ü".encode())


def test_context_length_prefers_the_configuration_and_ignores_a_tokenizer_without_a_limit():
    assert context_length(SimpleNamespace(max_position_embeddings=8192), SimpleNamespace(model_max_length=10)) == 8192
    assert context_length(SimpleNamespace(n_positions=1024), None) == 1024
    assert context_length(SimpleNamespace(), SimpleNamespace(model_max_length=2048)) == 2048
    assert context_length(SimpleNamespace(), SimpleNamespace(model_max_length=int(1e30))) is None


def test_a_model_path_that_does_not_exist_is_one_line_naming_the_folder(tmp_path):
    import pytest

    from pytest_kedit.errors import ConfigError
    from pytest_kedit.preflight import check_model

    for name in (str(tmp_path / "missing"), "../missing-model"):
        with pytest.raises(ConfigError, match=r"--kedit-model: .* is not an embedded alias .*and no folder .* exists"):
            check_model(name)
