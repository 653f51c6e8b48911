"""The paper's knowledge check: does the model, continuing a fact's prompt greedily, name the object?

Appendix A.1.1, step 3: the prompt of a fact, filled with its subject, is continued greedily
(top-1 next token) for a fixed number of new tokens, and the model knows the fact when the
continuation contains the object label, compared case-insensitively. A fact whose object label
occurs inside its subject label is rejected without generating: echoing the subject would pass.

* Composite cases: the tied fact k_f (``triples[prerequisites[0]]``) on its relation's edit prompt.
* RoundEdit cases: the round-edited object o1 (``edit.object``) on the edit prompt or on one of the
  relation's paraphrases, tried in that order.
* Coverage and reverse cases: no check (the protocol needs no knowledge of the model).

Continuations are generated in batches and each distinct prompt once (:class:`Continuations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .cases import ROUND_SPLITS, Case, ConflictCase, RoundCase
from .probe import model_device

#: New tokens generated per prompt, as for the built-in suites.
MAX_NEW_TOKENS = 12


def criteria(max_new_tokens: int) -> dict[str, str]:
    """The check's definition in words, for manifests."""
    return {
        "generation": (
            "the prompt is tokenized with the tokenizer's defaults and continued greedily (do_sample=False) "
            f"for max_new_tokens={max_new_tokens}; only the new tokens are decoded, special tokens skipped"
        ),
        "known": "the continuation contains the object label, compared case-insensitively",
        "trivial": "a case whose checked object label occurs inside its subject label is rejected",
    }


def contains(text: str, label: str) -> bool:
    """Whether ``label`` occurs in ``text``, compared case-insensitively."""
    return label.casefold() in text.casefold()


class Continuations:
    """Greedy continuations of prompts by one model, generated in batches; each prompt once.

    A batch is left-padded, so that the new tokens of every row start at the same column, and
    generation reads the attention mask (padding is neither attended to nor counted as a position).
    """

    def __init__(
        self, model: torch.nn.Module, tokenizer: Any, max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 32
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self._cache: dict[str, str] = {}

    def generate(self, prompts: Sequence[str]) -> list[str]:
        """The continuation of each prompt; the ones not generated before go in batches of ``batch_size``."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        for start in range(0, len(missing), self.batch_size):
            self._generate_batch(missing[start : start + self.batch_size])
        return [self._cache[p] for p in prompts]

    def __call__(self, prompt: str) -> str:
        return self.generate([prompt])[0]

    @property
    def generated(self) -> int:
        """How many distinct prompts were generated."""
        return len(self._cache)

    @torch.no_grad()
    def _generate_batch(self, prompts: Sequence[str]) -> None:
        inputs = self.tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left")
        device = model_device(self.model)
        input_ids = inputs["input_ids"].to(device)
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=inputs["attention_mask"].to(device),
            do_sample=False,
            max_new_tokens=self.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        for prompt, new_tokens in zip(prompts, output[:, input_ids.shape[1] :].cpu()):
            self._cache[prompt] = self.tokenizer.decode(new_tokens, skip_special_tokens=True)


@dataclass
class Verdict:
    """The outcome of the knowledge check of one case; ``evidence`` goes to the manifest."""

    passed: bool
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


def check_split(
    split: str, cases: Sequence[Case], continuations: Continuations, all_objects: bool = True
) -> list[Verdict]:
    """The verdict of each case of ``split``, their prompts generated in batches across the cases.

    ``all_objects``: RoundEdit cases keep trying prompts until every true object was found (to
    record which ones the model knows); otherwise they stop at the first prompt that names o1.
    """
    if split == "composite":
        return check_tied_facts([c for c in cases if isinstance(c, ConflictCase)], continuations)
    if split in ROUND_SPLITS:
        return check_round_objects([c for c in cases if isinstance(c, RoundCase)], continuations, all_objects)
    return [Verdict(True) for _ in cases]


def check_tied_facts(cases: Sequence[ConflictCase], continuations: Continuations) -> list[Verdict]:
    """Composite: k_f's edit prompt, filled with its subject, must continue with its object."""
    checked = [c for c in cases if not _tied_fact_is_trivial(c)]
    continuations.generate([_tied_fact_prompt(c) for c in checked])
    return [_tied_fact_verdict(c, continuations) for c in cases]


def _tied_fact_prompt(case: ConflictCase) -> str:
    assert case.tied_fact is not None, "composite cases carry their tied fact"
    return case.tied_fact.relation.prompt.format(case.tied_fact.subject.label)


def _tied_fact_is_trivial(case: ConflictCase) -> bool:
    assert case.tied_fact is not None, "composite cases carry their tied fact"
    return contains(case.tied_fact.subject.label, case.tied_fact.object.label)


def _tied_fact_verdict(case: ConflictCase, continuations: Continuations) -> Verdict:
    assert case.tied_fact is not None, "composite cases carry their tied fact"
    tied = case.tied_fact
    subject, obj = tied.subject.label, tied.object.label
    if _tied_fact_is_trivial(case):
        return Verdict(False, f"tied-fact object {obj!r} occurs in its subject {subject!r}")
    prompt = _tied_fact_prompt(case)
    continuation = continuations(prompt)
    evidence = {"tied_fact": f"({subject}, {tied.relation.id}, {obj})", "prompt": prompt, "continuation": continuation}
    if not contains(continuation, obj):
        return Verdict(False, f"tied fact not known: the continuation does not contain {obj!r}", evidence)
    return Verdict(True, evidence=evidence)


class _RoundSearch:
    """Where the true objects of one RoundEdit case were found, prompt by prompt.

    Each object is credited to the first prompt (edit prompt first, then the paraphrases) whose
    continuation contains it.
    """

    def __init__(self, case: RoundCase, all_objects: bool) -> None:
        self.case = case
        self.all_objects = all_objects
        self.prompts = [template.format(case.edit.subject.label) for template in case.edit.relation.prompts]
        self.found: dict[str, dict[str, str]] = {}
        self.tried = 0

    @property
    def trivial(self) -> bool:
        return contains(self.case.edit.subject.label, self.case.edit.old.label)

    def wants(self, k: int) -> bool:
        """Whether prompt ``k`` can still change what is recorded."""
        if self.trivial or k >= len(self.prompts):
            return False
        if self.all_objects:
            return len(self.found) < len({o.label for o in self.case.true_objects})
        return self.case.edit.old.label not in self.found

    def read(self, k: int, continuation: str) -> None:
        self.tried = k + 1
        for obj in self.case.true_objects:
            if obj.label not in self.found and contains(continuation, obj.label):
                self.found[obj.label] = {"prompt": self.prompts[k], "continuation": continuation}

    def verdict(self) -> Verdict:
        subject, o1 = self.case.edit.subject.label, self.case.edit.old.label
        if self.trivial:
            return Verdict(False, f"round-edited object {o1!r} occurs in the subject {subject!r}")
        labels = ", ".join(o.label for o in self.case.true_objects)
        evidence = {
            "fact": f"({subject}, {self.case.edit.relation.id}, {{{labels}}})",
            "o1": o1,
            "prompts_tried": self.tried,
            "true_objects": [
                {"label": o.label, "known": o.label in self.found, **self.found.get(o.label, {})}
                for o in self.case.true_objects
            ],
        }
        if o1 not in self.found:
            paraphrases = len(self.prompts) - 1
            reason = f"round-edited object {o1!r} not known on the edit prompt or any of its {paraphrases} paraphrases"
            return Verdict(False, reason, evidence)
        return Verdict(True, evidence=evidence)


def check_round_objects(cases: Sequence[RoundCase], continuations: Continuations, all_objects: bool = True) -> list[Verdict]:
    """RoundEdit: o1 must be known on the edit prompt or a paraphrase.

    Prompt k of every case that still needs it is generated in one batched round; a case stops
    once o1 (or, with ``all_objects``, every true object) was found, since later prompts cannot
    change its outcome.
    """
    searches = [_RoundSearch(case, all_objects) for case in cases]
    k = 0
    while active := [s for s in searches if s.wants(k)]:
        for search, continuation in zip(active, continuations.generate([s.prompts[k] for s in active])):
            search.read(k, continuation)
        k += 1
    return [s.verdict() for s in searches]
