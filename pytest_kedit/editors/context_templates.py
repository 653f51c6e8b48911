"""Context templates: short texts sampled from the model, put before an edit prompt.

ROME and MEMIT average the key over them, and optimise the value on every one of them, so that
the edit holds whatever precedes the prompt. ``[[5, 10], [10, 10]]`` means ten texts of 5 tokens
and ten of 10 tokens; each becomes ``"<text>. {}"``, and ``"{}"`` (no context) comes first.

Texts start from the seed words of the published code and are sampled top-k (k = 5) with a fixed
seed (:mod:`.sampled_text`). They are computed once per model and cached on disk, so every
process and every run of a model uses the same templates (a damaged cache entry is sampled again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_kedit.editors.sampled_text import sample
from pytest_kedit.model.threads import build_threads
from pytest_kedit.storage.cache import entry_path
from pytest_kedit.storage.verified import read_entry

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

SEED_WORDS = ("The", "Therefore", "Because", "I", "You")
#: Each next token is sampled among this many most probable ones.
SAMPLING_TOP_K = 5
SEED = 0


def context_templates(loaded: LoadedModel, length_params: list[list[int]]) -> list[str]:
    """``"{}"`` followed by, for each ``[length, count]``, ``count`` sampled texts of ``length`` tokens."""
    key = (loaded.fingerprint, loaded.dtype, length_params, SEED_WORDS, SAMPLING_TOP_K, SEED)
    path = entry_path("context_templates", loaded.name, *key, suffix=".json")

    def build(tmp: Path) -> None:
        with build_threads():
            templates = ["{}"] + [t for length, count in length_params for t in _sample(loaded, length, count)]
        tmp.write_text(json.dumps(templates, indent=1), encoding="utf-8")

    return read_entry(path, _read, build)


def _read(path: Path) -> list[str]:
    templates = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
        raise ValueError("not a list of templates")
    return templates


def _sample(loaded: LoadedModel, length: int, count: int) -> list[str]:
    """``count`` texts of at most ``length`` tokens (the seed word included), each made a template:
    the seed words in turn, one batch per word."""
    tokenizer = loaded.tokenizer
    words = [SEED_WORDS[i % len(SEED_WORDS)] for i in range(count)]
    batches = [[tokenizer(word)["input_ids"]] * words.count(word) for word in dict.fromkeys(words)]
    texts = [text for ids in sample(loaded, batches, length, SAMPLING_TOP_K, SEED) for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return [" ".join(text.replace("{", " ").replace("}", " ").split()) + ". {}" for text in texts]
