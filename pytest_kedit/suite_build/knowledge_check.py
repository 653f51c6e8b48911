"""The paper's knowledge checks: which cases test something the model knows.

* Composite cases (Appendix A.1.1, step 3): the tied fact k_f (``triples[prerequisites[0]]``) is
  known when its relation's edit prompt, filled with its subject and continued greedily (top-1
  next token) for a fixed number of new tokens, contains the object label as a whole word,
  compared case-insensitively.
* RoundEdit cases (Appendix A.1.2, step 2, "next-token generation tests ... based on generation
  probabilities"): the round-edited object o1 (``edit.object``) is kept when the model *produces*
  it, its first token being among the ``top_k`` most probable next tokens after the edit prompt
  or one of its paraphrases, and *prefers* it to the target o*: p(s, r, o1) > p(s, r, o*), with p
  the benchmark's probe averaged over those prompts. Without the preference, the round edit's
  return o* -> o1 would restore an order the model never had, and Succ would measure nothing.
* Coverage and reverse cases: no check (the plan needs no knowledge of the model).
* Streams, element by element: an edit (s, r, o -> o*) is kept when the model *produces* o (its
  first token among the ``top_k`` most probable after the edit prompt or a paraphrase) and
  *prefers* it to o*, both on the edit prompt alone and averaged over the paraphrases (as
  efficacy and generalisation probe it: on the original model they are then 0); a neighbourhood
  fact (s', r, o) of a kept edit when o is produced after some prompt filled with s' and preferred
  to o* averaged over all the prompts (as specificity probes it: 1 on the original model); a
  locality fact when its object is produced. The stream keeps what passes, in order; it is kept
  when an edit and a locality fact are left.

A case whose checked object label occurs inside its subject label is rejected without running
the model: echoing the subject would pass. Continuations are generated in batches and each
distinct prompt once (:class:`Continuations`); the RoundEdit check runs every prompt of a batch
of cases in one pass for the ranks, then probes only the cases that passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pytest_kedit.benchmark.cases import Case, ConflictCase, Edit, Fact, Query, RoundCase, StreamCase, mean_per_query
from pytest_kedit.benchmark.registry import ROUND_EDIT, SEQUENTIAL, SPLITS
from pytest_kedit.model.probe import Encoder, model_device, next_token_ranks, probe
from pytest_kedit.model.tracing import pad

#: New tokens generated per prompt, as for the built-in suites.
MAX_NEW_TOKENS = 12
#: A RoundEdit object is produced when its first token ranks among this many next-token predictions.
PRODUCED_TOP_K = 10


def criteria(max_new_tokens: int = MAX_NEW_TOKENS, top_k: int = PRODUCED_TOP_K) -> dict[str, str]:
    """The checks' definitions in words, for manifests."""
    return {
        "generation": (
            "the prompt is tokenized with the tokenizer's defaults and continued greedily (do_sample=False) "
            f"for max_new_tokens={max_new_tokens}; only the new tokens are decoded, special tokens skipped"
        ),
        "known": (
            "composite: the continuation contains the object label as a whole word (not preceded or followed "
            "by a letter or digit), compared case-insensitively"
        ),
        "produced": (
            f"RoundEdit: the first token of ' ' + o1 is among the top_k={top_k} most probable next tokens "
            "after the relation's edit prompt or one of its paraphrases, filled with the subject"
        ),
        "preferred": (
            "RoundEdit: p(s, r, o1) > p(s, r, o*), p the benchmark's probe (the geometric mean of the token "
            "probabilities of ' ' + o under teacher forcing) averaged over the edit prompt and its paraphrases"
        ),
        "trivial": "a case whose checked object label occurs inside its subject label is rejected",
        "stream": (
            f"sequential: an edit (s, r, o -> o*) is kept when o is produced (its first token among the top_k={top_k} "
            "most probable next tokens after the edit prompt or a paraphrase) and p(s, r, o) > p(s, r, o*) both on "
            "the edit prompt alone and averaged over the paraphrases; a neighbourhood fact (s', r, o) of a kept edit "
            "when o is produced after one of r's prompts filled with s' and p(s', r, o) > p(s', r, o*) averaged over "
            "them all; a locality fact when its object is produced; an object inside its subject label is never "
            "kept; the stream is kept when an edit and a locality fact are"
        ),
    }


def inside_subject(label: str, subject: str) -> bool:
    """Whether an object label occurs anywhere in its subject label, case-insensitively ("Somali" in
    "Somalia"): such a case is trivial, since a model echoing the subject would pass."""
    return label.casefold() in subject.casefold()


def contains(text: str, label: str) -> bool:
    """Whether ``label`` occurs in ``text`` as a whole word (sequence): case-insensitively, and not
    preceded or followed by a letter or digit, so that "DV" is not found in "advertising"."""
    return re.search(rf"(?<!\w){re.escape(label.casefold())}(?!\w)", text.casefold()) is not None


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
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = pad([self.tokenizer(p)["input_ids"] for p in prompts], pad_id, model_device(self.model), left=True)
        output = self.model.generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            do_sample=False,
            max_new_tokens=self.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        for prompt, new_tokens in zip(prompts, output[:, batch.input_ids.shape[1] :].cpu()):
            self._cache[prompt] = self.tokenizer.decode(new_tokens, skip_special_tokens=True)


@dataclass
class KnowledgeVerdict:
    """The outcome of the knowledge check of one case; ``evidence`` goes to the manifest."""

    passed: bool
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


class KnowledgeCheck:
    """The knowledge checks of one model: greedy continuations for composite cases, next-token
    ranks and probe probabilities for RoundEdit cases."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        max_new_tokens: int = MAX_NEW_TOKENS,
        top_k: int = PRODUCED_TOP_K,
        batch_size: int = 32,
    ) -> None:
        self.model = model
        self.continuations = Continuations(model, tokenizer, max_new_tokens, batch_size)
        self.encoder = Encoder(tokenizer)
        self.top_k = top_k

    def check_split(self, split: str, cases: Sequence[Case]) -> list[KnowledgeVerdict]:
        """The verdict of each case of ``split``, the model run in batches across the cases."""
        if split == "composite":
            return check_tied_facts([c for c in cases if isinstance(c, ConflictCase)], self.continuations)
        if SPLITS[split].benchmark is ROUND_EDIT:
            round_cases = [c for c in cases if isinstance(c, RoundCase)]
            return check_round_objects(round_cases, self.model, self.encoder, self.top_k)
        if SPLITS[split].benchmark is SEQUENTIAL:
            return check_streams([c for c in cases if isinstance(c, StreamCase)], self.model, self.encoder, self.top_k)
        return [KnowledgeVerdict(True) for _ in cases]


def check_tied_facts(cases: Sequence[ConflictCase], continuations: Continuations) -> list[KnowledgeVerdict]:
    """Composite: k_f's edit prompt, filled with its subject, must continue with its object."""
    checked = [c for c in cases if not _tied_fact_is_trivial(c)]
    continuations.generate([_tied_fact_prompt(c) for c in checked])
    return [_tied_fact_verdict(c, continuations) for c in cases]


def _tied_fact_prompt(case: ConflictCase) -> str:
    assert case.tied_fact is not None, "composite cases carry their tied fact"
    return case.tied_fact.relation.prompt.format(case.tied_fact.subject.label)


def _tied_fact_is_trivial(case: ConflictCase) -> bool:
    assert case.tied_fact is not None, "composite cases carry their tied fact"
    return inside_subject(case.tied_fact.object.label, case.tied_fact.subject.label)


def _tied_fact_verdict(case: ConflictCase, continuations: Continuations) -> KnowledgeVerdict:
    assert case.tied_fact is not None, "composite cases carry their tied fact"
    tied = case.tied_fact
    subject, obj = tied.subject.label, tied.object.label
    if _tied_fact_is_trivial(case):
        return KnowledgeVerdict(False, f"tied-fact object {obj!r} occurs in its subject {subject!r}")
    prompt = _tied_fact_prompt(case)
    continuation = continuations(prompt)
    evidence = {"tied_fact": f"({subject}, {tied.relation.id}, {obj})", "prompt": prompt, "continuation": continuation}
    if not contains(continuation, obj):
        return KnowledgeVerdict(False, f"tied fact not known: the continuation does not contain {obj!r}", evidence)
    return KnowledgeVerdict(True, evidence=evidence)


def check_round_objects(
    cases: Sequence[RoundCase], model: torch.nn.Module, encoder: Encoder, top_k: int = PRODUCED_TOP_K
) -> list[KnowledgeVerdict]:
    """RoundEdit: o1 must be produced (its first token ranks below ``top_k`` after some prompt) and
    preferred to the target (p(o1) > p(o*)). The ranks of every true object after every prompt come
    from one batched pass over the prompts; only the cases that produce o1 are probed."""
    checked = [i for i, c in enumerate(cases) if not _round_object_is_trivial(c)]
    pairs = [(prompt, o.label) for i in checked for prompt in _prompts(cases[i]) for o in cases[i].true_objects]
    flat = next_token_ranks(model, encoder, pairs)
    ranks: dict[int, np.ndarray] = {}
    start = 0
    for i in checked:
        shape = (len(cases[i].edit.relation.prompts), len(cases[i].true_objects))
        ranks[i] = flat[start : start + shape[0] * shape[1]].reshape(shape)
        start += shape[0] * shape[1]
    produced = [i for i in checked if ranks[i][:, _o1_index(cases[i])].min() < top_k]
    probabilities = dict(zip(produced, _probabilities([cases[i] for i in produced], model, encoder)))
    return [_round_verdict(c, ranks.get(i), probabilities.get(i), top_k) for i, c in enumerate(cases)]


def _prompts(case: RoundCase) -> list[str]:
    """The edit prompt and its paraphrases, filled with the subject."""
    return [template.format(case.edit.subject.label) for template in case.edit.relation.prompts]


def _o1_index(case: RoundCase) -> int:
    return [o.label for o in case.true_objects].index(case.edit.old.label)


def _round_object_is_trivial(case: RoundCase) -> bool:
    return inside_subject(case.edit.old.label, case.edit.subject.label)


def _probabilities(cases: Sequence[RoundCase], model: torch.nn.Module, encoder: Encoder) -> list[tuple[list[float], float]]:
    """p(s, r, o) of every true object and p(s, r, o*) of the target, for each case (one probe call)."""
    queries = [
        [Query(c.edit.relation, c.edit.subject.label, o.label) for o in (*c.true_objects, c.edit.new)] for c in cases
    ]
    pairs = [pair for case_queries in queries for q in case_queries for pair in q.pairs()]
    p = iter(mean_per_query([q for case_queries in queries for q in case_queries], probe(model, encoder, pairs)))
    result = []
    for c in cases:
        p_true = [next(p) for _ in c.true_objects]
        result.append((p_true, next(p)))
    return result


def _round_verdict(
    case: RoundCase, ranks: np.ndarray | None, probabilities: tuple[list[float], float] | None, top_k: int
) -> KnowledgeVerdict:
    subject, o1 = case.edit.subject.label, case.edit.old.label
    if _round_object_is_trivial(case):
        return KnowledgeVerdict(False, f"round-edited object {o1!r} occurs in the subject {subject!r}")
    assert ranks is not None, "every case that is not trivial is ranked"
    prompts = _prompts(case)
    labels = ", ".join(o.label for o in case.true_objects)
    evidence: dict[str, Any] = {
        "fact": f"({subject}, {case.edit.relation.id}, {{{labels}}})",
        "o1": o1,
        "target": case.edit.new.label,
        "true_objects": [
            {"label": o.label, "rank": int(ranks[:, k].min()), "prompt": prompts[int(ranks[:, k].argmin())]}
            for k, o in enumerate(case.true_objects)
        ],
    }
    best = int(ranks[:, _o1_index(case)].min())
    if probabilities is None:
        reason = f"round-edited object {o1!r} not produced: its first token ranks {best} at best, top_k={top_k}"
        return KnowledgeVerdict(False, reason, evidence)
    p_true, p_target = probabilities
    evidence.update(p_true=p_true, p_target=p_target)
    p_o1 = p_true[_o1_index(case)]
    if not p_o1 > p_target:
        reason = f"target preferred: p({o1!r}) = {p_o1:.3g} <= p({case.edit.new.label!r}) = {p_target:.3g}"
        return KnowledgeVerdict(False, reason, evidence)
    return KnowledgeVerdict(True, evidence=evidence)


def check_streams(cases: Sequence[StreamCase], model: torch.nn.Module, encoder: Encoder,
                  top_k: int = PRODUCED_TOP_K) -> list[KnowledgeVerdict]:
    """Streams, element by element (see the module docstring). The ranks of every fact's object
    after every prompt come from one batched pass, the preferences from one probe call. A verdict's
    evidence lists every edit (with its neighbourhood) and locality fact: ``kept``, the reason when
    not, the object's best rank and the probabilities compared; :func:`kept_stream` reads it."""
    facts = [fact for case in cases for fact in _stream_facts(case)]
    pairs = [(prompt.format(fact.subject.label), fact.object.label) for fact in facts for prompt in fact.relation.prompts]
    flat = iter(next_token_ranks(model, encoder, pairs))
    ranks = iter([min(int(next(flat)) for _ in fact.relation.prompts) for fact in facts])
    queries = [query for case in cases for query in _stream_queries(case)]
    p = iter(mean_per_query(queries, probe(model, encoder, [pair for q in queries for pair in q.pairs()])))
    return [_stream_verdict(case, ranks, p, top_k) for case in cases]


def _stream_facts(case: StreamCase) -> list[Fact]:
    """Every fact of a stream whose object must be produced, in the order :func:`_stream_verdict`
    reads their ranks: each edit's old fact then its neighbours', then the locality facts."""
    olds = [Fact(edit.subject, edit.relation, edit.old) for edit in case.edits]
    return [*(fact for old, facts in zip(olds, case.neighbourhood) for fact in (old, *facts)), *case.locality]


def _stream_queries(case: StreamCase) -> list[Query]:
    """Per edit: p(o) and p(o*) on the edit prompt alone, then over the paraphrases alone, then
    each neighbour's p(o) and p(o*) over all the prompts."""
    queries = []
    for edit, facts in zip(case.edits, case.neighbourhood):
        subject = edit.subject.label
        for relation in (edit.relation.edit_prompt_only(), edit.relation.paraphrases_only()):
            queries += [Query(relation, subject, edit.old.label), Query(relation, subject, edit.new.label)]
        for fact in facts:
            queries += [Query(edit.relation, fact.subject.label, edit.old.label), Query(edit.relation, fact.subject.label, edit.new.label)]
    return queries


def _stream_verdict(case: StreamCase, ranks: Iterator[int], p: Iterator[float], top_k: int) -> KnowledgeVerdict:
    """The verdict of one stream: ``ranks`` yields the best rank of each fact of
    :func:`_stream_facts`, ``p`` the probabilities of :func:`_stream_queries`, both in their order."""
    edits: list[dict[str, Any]] = []
    for i, (edit, facts) in enumerate(zip(case.edits, case.neighbourhood)):
        rank = next(ranks)
        on_prompt, on_paraphrases = (next(p), next(p)), (next(p), next(p))
        reason = _unknown(Fact(edit.subject, edit.relation, edit.old), rank, top_k) or _preferred(edit, on_prompt, on_paraphrases)
        neighbours = []
        for j, fact in enumerate(facts):
            fact_rank, p_true, p_new = next(ranks), next(p), next(p)
            why = ("its edit is not kept" if reason else _unknown(fact, fact_rank, top_k)
                   or (None if p_true > p_new else f"p({fact.object.label!r}) = {p_true:.3g} <= p({edit.new.label!r}) = {p_new:.3g}"))
            neighbours.append({"index": j, "subject": fact.subject.label, "rank": fact_rank, "p_true": p_true,
                               "p_new": p_new, "kept": why is None, **({"reason": why} if why else {})})
        edits.append({"index": i, "fact": f"({edit.subject.label}, {edit.relation.id}, {edit.old.label} -> {edit.new.label})",
                      "rank": rank, "p_prompt": list(on_prompt), "p_paraphrases": list(on_paraphrases),
                      "kept": reason is None, **({"reason": reason} if reason else {}), "neighbourhood": neighbours})
    locality: list[dict[str, Any]] = []
    for j, fact in enumerate(case.locality):
        rank = next(ranks)
        why = _unknown(fact, rank, top_k)
        locality.append({"index": j, "fact": f"({fact.subject.label}, {fact.relation.id}, {fact.object.label})",
                         "rank": rank, "kept": why is None, **({"reason": why} if why else {})})
    counts = {"edits_kept": sum(e["kept"] for e in edits), "locality_kept": sum(f["kept"] for f in locality),
              "neighbours_kept": sum(n["kept"] for e in edits for n in e["neighbourhood"])}
    evidence = {**counts, "edits": edits, "locality": locality}
    if not counts["edits_kept"] or not counts["locality_kept"]:
        return KnowledgeVerdict(False, "no edit or no locality fact of the stream is known", evidence)
    return KnowledgeVerdict(True, evidence=evidence)


def _unknown(fact: Fact, rank: int, top_k: int) -> str | None:
    """Why the model does not know ``fact`` (its object inside its subject, or not produced), or None."""
    if inside_subject(fact.object.label, fact.subject.label):
        return f"object {fact.object.label!r} occurs in the subject {fact.subject.label!r}"
    if rank >= top_k:
        return f"{fact.object.label!r} not produced: its first token ranks {rank} at best, top_k={top_k}"
    return None


def _preferred(edit: Edit, on_prompt: tuple[float, float], on_paraphrases: tuple[float, float]) -> str | None:
    """Why the model does not prefer the edit's old object to the new one on its edit prompt and over its paraphrases, or None."""
    for where, (p_old, p_new) in (("the edit prompt", on_prompt), ("the paraphrases", on_paraphrases)):
        if not p_old > p_new:
            return f"target preferred on {where}: p({edit.old.label!r}) = {p_old:.3g} <= p({edit.new.label!r}) = {p_new:.3g}"
    return None


def kept_stream(record: dict[str, Any], evidence: dict[str, Any], edits: int | None = None) -> dict[str, Any]:
    """The sequential record ``record`` with only what ``evidence`` (of :func:`check_streams`) kept:
    its kept edits, at most the first ``edits`` of them, each with its kept neighbours, and its
    kept locality facts; every key in its place."""
    kept = [e for e in evidence["edits"] if e["kept"]][:edits]
    out = dict(record)
    out["edits"] = [{**record["edits"][e["index"]],
                     "neighbourhood": [record["edits"][e["index"]]["neighbourhood"][n["index"]] for n in e["neighbourhood"] if n["kept"]]}
                    for e in kept]
    out["locality"] = [record["locality"][f["index"]] for f in evidence["locality"] if f["kept"]]
    return out
