"""The experiment of each split: which edits, in what order, which probes, and the restore.

Model states: θ the original, θm after e1, θ' after e1 then e2, θs the original with e2 alone.
p(s, r, o) is the probe averaged over the relation's edit prompt and its paraphrases.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import metrics
from .cases import Case, ConflictCase, EditRequest, Entity, Relation, RoundCase
from .editors.base import Editor, WeightDelta
from .errors import KeditError
from .original_probes import OriginalProbes
from .probe import Encoder, probe

if TYPE_CHECKING:
    from .models import LoadedModel


@dataclass(frozen=True)
class Query:
    """p(s, r, o): the probability of ``object`` after each of the relation's prompts, averaged."""

    relation: Relation
    subject: str
    object: str

    def pairs(self) -> list[tuple[str, str]]:
        return [(prompt.format(self.subject), self.object) for prompt in self.relation.prompts]


def mean_per_query(queries: Sequence[Query], probs: np.ndarray) -> list[float]:
    """p of each query: the mean of its prompts' entries in ``probs``, which holds the
    probabilities of every query's :meth:`Query.pairs`, in order."""
    out, start = [], 0
    for q in queries:
        n = len(q.relation.prompts)
        out.append(float(probs[start : start + n].mean()))
        start += n
    return out


@dataclass
class CaseResult:
    metrics: dict[str, float]
    #: every probability behind the metrics, by model state
    probabilities: dict[str, dict[str, Any]]
    #: per metric, the probabilities that decided it, for failure messages
    evidence: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)


class EditorContractError(KeditError):
    """An editor changed parameters it did not report, so the model cannot be restored."""


class Harness:
    """Runs cases on one model with one editor; after every case the model is as it was."""

    def __init__(self, loaded: LoadedModel, editor: Editor, distortion_scaling: str = "paper", seed: int = 0):
        if distortion_scaling not in metrics.DISTORTION_SCALINGS:
            raise KeditError(f"unknown distortion scaling {distortion_scaling!r}; use one of {metrics.DISTORTION_SCALINGS}")
        self.loaded = loaded
        self.model = loaded.model
        self.editor = editor
        self.encoder = Encoder(loaded.tokenizer)
        self.distortion_scaling = distortion_scaling
        self.seed = seed
        self.original_probes = OriginalProbes(loaded.fingerprint, loaded.dtype, loaded.device)
        self._timings: dict[str, float] = {}

    def run(self, case: Case) -> CaseResult:
        self._timings = {"edit": 0.0, "probe": 0.0, "restore": 0.0}
        torch.manual_seed(self.seed + zlib.crc32(case.case_id.encode()))
        if isinstance(case, ConflictCase):
            result = self._conflict(case)
        else:
            result = self._round(case)
        result.timings = dict(self._timings)
        return result

    # -- model states ------------------------------------------------------------------------

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._timings[phase] += time.perf_counter() - start

    def _measure(self, queries: Sequence[Query], original: bool = False) -> list[float]:
        """p of each query on the current model; ``original``: the model is θ, look in the cache first."""
        pairs = [pair for q in queries for pair in q.pairs()]
        with self._timed("probe"):
            probs = self.original_probes.lookup(pairs) if original else None
            if probs is None:
                probs = probe(self.model, self.encoder, pairs)
                if original:
                    self.original_probes.remember(pairs, probs)
        return mean_per_query(queries, probs)

    def _edit(self, requests: Sequence[EditRequest]) -> WeightDelta:
        with self._timed("edit"):
            if self.editor.batched:
                return self.editor.apply(self.model, self.loaded.tokenizer, list(requests))
            delta = WeightDelta()
            for request in requests:
                delta = delta.then(self.editor.apply(self.model, self.loaded.tokenizer, [request]))
            return delta

    @contextmanager
    def _edits(self) -> Iterator[Callable[[Sequence[EditRequest]], None]]:
        """Yield a function that applies an edit batch; on exit restore the original weights."""
        before = _parameter_versions(self.model)
        delta = WeightDelta()

        def apply(requests: Sequence[EditRequest]) -> None:
            nonlocal delta
            delta = delta.then(self._edit(requests))

        try:
            yield apply
        finally:
            with self._timed("restore"):
                delta.restore(self.model)
            changed = [n for n, v in _parameter_versions(self.model).items() if v != before[n] and n not in delta.originals]
            if changed:
                raise EditorContractError(
                    f"editor {self.editor.name!r} changed {changed[:5]} without saving them in its WeightDelta "
                    "(call pytest_kedit.editors.base.snapshot before changing a parameter)"
                )

    def _sequential(
        self, e1: Sequence[EditRequest], e2: Sequence[EditRequest], mid: Sequence[Query], after: Sequence[Query]
    ) -> tuple[list[float], list[float]]:
        """Probe ``mid`` after e1 (θm), then ``after`` after e1 and e2 (θ')."""
        with self._edits() as edit:
            edit(e1)
            p_mid = self._measure(mid)
            edit(e2)
            p_after = self._measure(after)
        return p_mid, p_after

    # -- ConflictEdit --------------------------------------------------------------------------

    def _conflict(self, case: ConflictCase) -> CaseResult:
        e1, e2 = case.edits
        if case.split == "coverage":
            return self._coverage(case)
        k_o = Query(e1.relation, e1.subject.label, e1.new.label)
        if case.split == "reverse":
            # e2 = (o2, r2, s1 -> s2): explicit k_n = (o2, r2, s2); implicit k_n = (s2, r1, o2).
            k_n_exp = Query(e2.relation, e2.subject.label, e2.new.label)
            k_n_imp = Query(e1.relation, e2.new.label, e1.new.label)
            (p_mid_ko,), (p_ko, p_exp, p_imp) = self._sequential([e1.request()], [e2.request()], [k_o], [k_o, k_n_exp, k_n_imp])
            probabilities = {"theta_m": {"k_o": p_mid_ko}, "theta_prime": {"k_o": p_ko, "k_n_exp": p_exp, "k_n_imp": p_imp}}
            values, evidence = _conflict_metrics(p_mid_ko, p_ko, {"cs_exp": p_exp, "cs_imp": p_imp})
            return CaseResult(values, probabilities, evidence)
        # composite: tied fact k_f; e1 = (s1, r1, o -> o2), e2 = (s2, r2, o -> o3).
        assert case.tied_fact is not None
        k_f = Query(case.tied_fact.relation, case.tied_fact.subject.label, case.tied_fact.object.label)
        k_n_exp = Query(e2.relation, e2.subject.label, e2.new.label)
        k_n_imp = Query(e1.relation, e1.subject.label, e2.new.label)
        (p_kf_before,) = self._measure([k_f], original=True)
        (p_mid_ko,), (p_ko, p_exp, p_imp, p_kf_after) = self._sequential(
            [e1.request()], [e2.request()], [k_o], [k_o, k_n_exp, k_n_imp, k_f]
        )
        values, evidence = _conflict_metrics(p_mid_ko, p_ko, {"cs_exp": p_exp, "cs_imp": p_imp})
        values["tfd"] = metrics.tied_fact_damage(p_kf_before, p_kf_after)
        evidence["tfd"] = f"p_θ(k_f)={p_kf_before:.3g}, p_θ'(k_f)={p_kf_after:.3g}"
        probabilities = {
            "theta": {"k_f": p_kf_before},
            "theta_m": {"k_o": p_mid_ko},
            "theta_prime": {"k_o": p_ko, "k_n_exp": p_exp, "k_n_imp": p_imp, "k_f": p_kf_after},
        }
        return CaseResult(values, probabilities, evidence)

    def _coverage(self, case: ConflictCase) -> CaseResult:
        e1, e2 = case.edits
        o2 = Query(e1.relation, e1.subject.label, e1.new.label)  # k_o
        o3 = Query(e2.relation, e2.subject.label, e2.new.label)  # k_n
        with self._edits() as edit:
            edit([e2.request()])
            p_single_new, p_single_old = self._measure([o3, o2])
        (p_mid_ko,), (p_ko, p_kn) = self._sequential([e1.request()], [e2.request()], [o2], [o2, o3])
        values, evidence = _conflict_metrics(p_mid_ko, p_ko, {"cs": p_kn})
        values["single_succ"] = float(metrics.single_success(p_single_new, p_single_old))
        evidence["single_succ"] = _versus("p_θs(o3)", p_single_new, "p_θs(o2)", p_single_old)
        probabilities = {
            "theta_s": {"o3": p_single_new, "o2": p_single_old},
            "theta_m": {"k_o": p_mid_ko},
            "theta_prime": {"k_o": p_ko, "k_n": p_kn},
        }
        return CaseResult(values, probabilities, evidence)

    # -- RoundEdit ------------------------------------------------------------------------------

    def _round(self, case: RoundCase) -> CaseResult:
        edit = case.edit
        o1, o_star = edit.old, edit.new
        objects = [o1, *case.others]
        query = lambda o: Query(edit.relation, edit.subject.label, o.label)  # noqa: E731
        e1 = [edit.request()]
        if self.editor.multi_label:
            e2 = [edit.request(target=o) for o in case.true_objects]
        else:
            e2 = [edit.request(target=o1)]
        before = self._measure([query(o) for o in objects], original=True)
        mid, after = self._sequential(e1, e2, [query(o_star), query(o1)], [query(o_star)] + [query(o) for o in objects])
        p_mid_star, p_mid_o1 = mid
        p_after_star, after_objects = after[0], after[1:]
        values = {
            "succ": metrics.round_success(p_mid_star, p_mid_o1, after_objects[0], p_after_star),
            "d": metrics.distortion(before, after_objects, scaling=self.distortion_scaling),
            "ir": metrics.ignore_rate(before[1:], after_objects[1:]),
        }
        values["fr"] = float(metrics.failure(values["ir"]))
        lost = [o.label for o, b, a in zip(case.others, before[1:], after_objects[1:]) if b > a]
        evidence = {
            "succ": "; ".join(
                (_versus("p_θm(o*)", p_mid_star, "p_θm(o1)", p_mid_o1), _versus("p_θ'(o1)", after_objects[0], "p_θ'(o*)", p_after_star))
            ),
            "d": f"P_θ={_fmt(before)}, P_θ'={_fmt(after_objects)}",
            "ir": f"{len(lost)} of {len(case.others)} other true objects lost probability: {lost}",
        }
        evidence["fr"] = evidence["ir"]
        probabilities = {
            "theta": dict(zip(_labels(objects), before)),
            "theta_m": {"o*": p_mid_star, "o1": p_mid_o1},
            "theta_prime": {"o*": p_after_star, **dict(zip(_labels(objects), after_objects))},
        }
        return CaseResult(values, probabilities, evidence)


def _conflict_metrics(
    p_mid_ko: float, p_ko: float, p_new: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, str]]:
    """CM, and a conflict score per entry of ``p_new`` (metric name -> p_θ'(k_n) of that mode)."""
    values = {name: float(metrics.conflict_score(p_kn, p_ko)) for name, p_kn in p_new.items()}
    evidence = {name: _versus("p(k_n)", p_kn, "p(k_o)", p_ko) for name, p_kn in p_new.items()}
    values["cm"] = metrics.conflict_magnitude(p_mid_ko, p_ko)
    evidence["cm"] = f"p_θm(k_o)={p_mid_ko:.3g}, p_θ'(k_o)={p_ko:.3g}"
    return values, evidence


def _versus(name_a: str, a: float, name_b: str, b: float) -> str:
    return f"{name_a}={a:.3g} {'>' if a > b else '<='} {name_b}={b:.3g}"


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


def _labels(objects: Sequence[Entity]) -> list[str]:
    return [o.label for o in objects]


def _parameter_versions(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """In-place changes bump a tensor's version counter; reassigning ``.data`` changes its pointer."""
    return {name: (p._version, p.data_ptr()) for name, p in model.named_parameters()}
