"""How long a case's model inputs are, and which field of its record makes one too long.

Every fact a case probes or edits is a prompt (the relation's own, or one of its paraphrases)
filled with a subject, followed by an object: the input the probe feeds the model
(:class:`~pytest_kedit.model.probe.Encoder`). An input longer than the model's context cannot be
scored; :func:`overlong` finds the longest such input of a case and names the record field to
fix: whichever of the prompt, the subject and the object is the longest text. The length of an
input is a function the caller gives (:class:`LengthLimit`): a model's tokenizer
(:func:`model_limit`, which imports transformers only when called) or a byte count
(:func:`byte_limit`). A stream's held-out texts are no such input: their perplexity is measured in
windows that fit the context.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_kedit.benchmark.cases import Case, ConflictCase, Edit, Entity, Fact, Relation, StreamCase
from pytest_kedit.errors import ConfigError

#: The length of one input: (prompt filled with the subject, object) -> tokens.
Length = Callable[[str, str], int]


@dataclass(frozen=True)
class Overlong:
    """The longest input of a case over the limit."""

    #: the record field to shorten (``edits[0].new_object.label``; a paraphrase names its file's entry)
    field: str
    length: int
    limit: int

    def message(self, limit_name: str = "the limit", unit: str = "tokens") -> str:
        """``the model input with it is 40012 tokens long; the model's context is 8192``."""
        return f"the model input with it is {self.length} {unit} long; {limit_name} is {self.limit}"


@dataclass(frozen=True)
class _Input:
    prompt: str
    prompt_field: str
    subject: Entity
    subject_field: str
    object: Entity
    object_field: str


def overlong(case: Case, length: Length, limit: int, prompts_file: str = "the paraphrase file") -> Overlong | None:
    """The longest input of ``case`` when it is longer than ``limit``, with the field to blame
    (the longest of its prompt, subject and object texts); None when every input fits."""
    worst: tuple[int, _Input] | None = None
    for item in _inputs(case, prompts_file):
        n = length(item.prompt.format(item.subject.label), item.object.label)
        if n > limit and (worst is None or n > worst[0]):
            worst = (n, item)
    if worst is None:
        return None
    n, item = worst
    parts = [(len(item.prompt), item.prompt_field), (len(item.subject.label), item.subject_field),
             (len(item.object.label), item.object_field)]
    return Overlong(max(parts, key=lambda part: part[0])[1], n, limit)


def _inputs(case: Case, prompts_file: str) -> Iterator[_Input]:
    if isinstance(case, StreamCase):
        for i, edit in enumerate(case.edits):
            yield from _edit(edit, f"edits[{i}]", "object", prompts_file)
            for j, fact in enumerate(case.neighbourhood[i]):
                for obj, key in ((fact.object, "object"), (edit.new, "new_object")):
                    yield from _prompts(fact.relation, f"edits[{i}]", fact.subject, obj, f"edits[{i}].{key}.label",
                                        prompts_file, f"edits[{i}].neighbourhood[{j}].label")
        for j, fact in enumerate(case.locality):
            yield from _fact(fact, f"locality[{j}]", prompts_file)
        return
    if isinstance(case, ConflictCase):
        for i, fact in enumerate(case.triples):
            yield from _fact(fact, f"triples[{i}]", prompts_file)
        for j, edit in enumerate(case.edits):
            old = "true_object" if case.split == "composite" and j == 1 else "object"
            yield from _edit(edit, f"edits[{j}]", old, prompts_file)
        return
    yield from _edit(case.edit, "edit", "object", prompts_file)
    for i, entity in enumerate(case.true_objects):
        yield from _prompts(case.edit.relation, "edit", case.edit.subject, entity, f"true_objects[{i}].label", prompts_file)


def _fact(fact: Fact, path: str, prompts_file: str) -> Iterator[_Input]:
    yield from _prompts(fact.relation, path, fact.subject, fact.object, f"{path}.object.label", prompts_file)


def _edit(edit: Edit, path: str, old: str, prompts_file: str) -> Iterator[_Input]:
    for entity, key in ((edit.old, old), (edit.new, "new_object")):
        yield from _prompts(edit.relation, path, edit.subject, entity, f"{path}.{key}.label", prompts_file)


def _prompts(relation: Relation, path: str, subject: Entity, obj: Entity, object_field: str,
             prompts_file: str, subject_field: str | None = None) -> Iterator[_Input]:
    """Every prompt of ``relation`` at ``path`` filled with ``subject`` (its field ``subject_field``,
    default ``{path}.subject.label``), followed by ``obj``."""
    fields = [f"{path}.relation.prompt", *(f"{path}.relation (paraphrase {relation.id}[{i}] in {prompts_file})"
                                          for i in range(len(relation.paraphrases)))]
    for prompt, field in zip(relation.prompts, fields):
        yield _Input(prompt, field, subject, subject_field or f"{path}.subject.label", obj, object_field)


def context_length(config: Any, tokenizer: Any) -> int | None:
    """The longest input the model takes: its configuration's positions (``max_position_embeddings``,
    GPT-2's ``n_positions``, ``n_ctx``, ``seq_length``), else the tokenizer's ``model_max_length``
    when it is a real limit (transformers puts 1e30 there when it knows none); None when neither says."""
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**9:
        return value
    return None


@dataclass(frozen=True)
class LengthLimit:
    """How long a model input may be: ``length`` counts one, in ``unit``; ``name`` says where
    ``limit`` comes from (``the context of smollm2-135m``, ``--max-tokens``)."""

    length: Length
    limit: int
    name: str
    unit: str = "tokens"


def byte_limit(limit: int) -> LengthLimit:
    """``--max-tokens`` without a model: the UTF-8 bytes of an input, which bound its tokens under
    any byte-level tokenizer (every token is at least one byte)."""
    return LengthLimit(lambda prefix, target: len(f"{prefix.rstrip()} {target.strip()}".encode()), limit,
                       "--max-tokens (without --model, a bound on bytes)", "UTF-8 bytes")


def model_limit(model: str, limit: int | None = None) -> LengthLimit:
    """The inputs counted with ``model``'s tokenizer, as the probe encodes them; ``limit`` defaults
    to the model's context. Reads the tokenizer and configuration only, no weights. ConfigError
    naming the model when they cannot be read or the model states no context and no limit is given."""
    from transformers import AutoConfig, AutoTokenizer

    from pytest_kedit.model.location import locate_model
    from pytest_kedit.model.probe import Encoder

    def read(where: str | Path) -> tuple[Any, Any]:
        with _quiet_hub():
            return AutoConfig.from_pretrained(where), AutoTokenizer.from_pretrained(where)

    try:
        config, tokenizer = locate_model(model).read(read)
    except (OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"--model: cannot read the tokenizer of {model!r}: {reason}") from None
    context = context_length(config, tokenizer)
    if limit is None and context is None:
        raise ConfigError(f"--model: {model!r} states no context length; give --max-tokens")
    encoder = Encoder(tokenizer)

    def length(prefix: str, target: str) -> int:
        try:
            encoded = encoder(prefix, target)
        except ValueError:  # an object of no tokens: the label finding's concern
            return 0
        return len(encoded.prefix) + len(encoded.target)

    name = "--max-tokens" if limit is not None else f"{model}'s context"
    return LengthLimit(length, limit if limit is not None else int(context or 0), name)


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """No warnings of huggingface_hub while a tokenizer is looked up: a failure is one error line."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
