"""The experiment of each split, as data: which edits reach which model state, and which facts
are probed there. No model here: :class:`pytest_kedit.run.harness.Harness` carries a plan out, and
:mod:`pytest_kedit.benchmark.scoring` turns the probabilities into metrics.

Model states: θ the original (``theta``), θs the original with e2 alone (``theta_s``), θm after
e1 (``theta_m``), θ' after e1 then e2 (``theta_prime``). p(s, r, o) is the probe averaged over
the relation's edit prompt and its paraphrases (:class:`pytest_kedit.benchmark.cases.Query`).

A plan's stages run in order. A stage whose edits extend the previous stage's continues from
that model state (θm, then θ' by adding e2); any other stage starts again from θ. The facts of
a stage are probed together, in the order given, so the order is part of the plan.

A stream's plan (:func:`sequential`) is a stage per batch, each extending the one before, so the
whole stream runs without a restore; its states are named as in :mod:`pytest_kedit.benchmark.streams`.
Besides facts, a stage may measure the perplexity of texts and the update norms of the edited
matrices; their values sit beside the facts' under the names :data:`PERPLEXITY` and :func:`norm_name`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_kedit.benchmark.cases import ConflictCase, Edit, EditRequest, Entity, Fact, Query, RoundCase, StreamCase
from pytest_kedit.benchmark.protocol import PAPER, Protocol
from pytest_kedit.benchmark.streams import DEFAULT_STREAM, THETA, Schedule, StreamSettings, state_after

#: A batch of edit requests applied in one editor call (one request unless Multi-Label Edit).
EditBatch = tuple[EditRequest, ...]


@dataclass(frozen=True)
class Stage:
    """A model state, reached from θ by applying ``edits`` in order, and the facts probed in it."""

    state: str
    edits: tuple[EditBatch, ...]
    #: (name, fact): the name keys the probability in the case's record
    probes: tuple[tuple[str, Query], ...]
    #: texts whose perplexity is measured in this state (under :data:`PERPLEXITY`); none: not measured
    perplexity: tuple[str, ...] = ()
    #: measure ‖W − W₀‖_F / ‖W₀‖_F of every parameter the edits so far changed (under :func:`norm_name`)
    norms: bool = False


Plan = tuple[Stage, ...]
#: The name of a state's perplexity of the held-out texts.
PERPLEXITY = "perplexity"
_NORM = "norm:"


def norm_name(parameter: str) -> str:
    """The name of a parameter's update norm in a state's values: ``norm:<parameter>``."""
    return _NORM + parameter


def norms_of(values: Mapping[str, float]) -> dict[str, float]:
    """The update norms among a state's values, by parameter."""
    return {name.removeprefix(_NORM): value for name, value in values.items() if name.startswith(_NORM)}


def coverage(case: ConflictCase, multi_label: bool = False, protocol: Protocol = PAPER,
             stream: StreamSettings = DEFAULT_STREAM) -> Plan:
    """e1 = (s, r, o1→o2), e2 = (s, r, o2→o3); k_o = (s, r, o2), k_n = (s, r, o3)."""
    e1, e2 = case.edits
    k_o = Query(e1.relation, e1.subject.label, e1.new.label)
    k_n = Query(e2.relation, e2.subject.label, e2.new.label)
    first, second = (e1.request(),), (e2.request(),)
    return (
        Stage("theta_s", (second,), (("o3", k_n), ("o2", k_o))),
        Stage("theta_m", (first,), (("k_o", k_o),)),
        Stage("theta_prime", (first, second), (("k_o", k_o), ("k_n", k_n))),
    )


def reverse(case: ConflictCase, multi_label: bool = False, protocol: Protocol = PAPER,
            stream: StreamSettings = DEFAULT_STREAM) -> Plan:
    """e1 = (s1, r1, o1→o2), e2 = (o2, r2, s1→s2); k_o = (s1, r1, o2); the explicit new fact is
    e2's own (o2, r2, s2), the implicit one (s2, r1, o2) on e1's prompts."""
    e1, e2 = case.edits
    k_o = Query(e1.relation, e1.subject.label, e1.new.label)
    k_n_exp = Query(e2.relation, e2.subject.label, e2.new.label)
    k_n_imp = Query(e1.relation, e2.new.label, e1.new.label)
    first, second = (e1.request(),), (e2.request(),)
    return (
        Stage("theta_m", (first,), (("k_o", k_o),)),
        Stage("theta_prime", (first, second), (("k_o", k_o), ("k_n_exp", k_n_exp), ("k_n_imp", k_n_imp))),
    )


def composite(case: ConflictCase, multi_label: bool = False, protocol: Protocol = PAPER,
              stream: StreamSettings = DEFAULT_STREAM) -> Plan:
    """Tied fact k_f; e1 = (s1, r1, o→o2), e2 = (s2, r2, o→o3); k_o = (s1, r1, o2); the explicit
    new fact is (s2, r2, o3), the implicit one (s1, r1, o3)."""
    if case.tied_fact is None:
        raise ValueError(f"{case.case_id}: a composite case needs its tied fact")
    e1, e2 = case.edits
    tied = case.tied_fact
    k_f = Query(tied.relation, tied.subject.label, tied.object.label)
    k_o = Query(e1.relation, e1.subject.label, e1.new.label)
    k_n_exp = Query(e2.relation, e2.subject.label, e2.new.label)
    k_n_imp = Query(e1.relation, e1.subject.label, e2.new.label)
    first, second = (e1.request(),), (e2.request(),)
    return (
        Stage("theta", (), (("k_f", k_f),)),
        Stage("theta_m", (first,), (("k_o", k_o),)),
        Stage("theta_prime", (first, second), (("k_o", k_o), ("k_n_exp", k_n_exp), ("k_n_imp", k_n_imp), ("k_f", k_f))),
    )


def round_trip(case: RoundCase, multi_label: bool = False, protocol: Protocol = PAPER,
               stream: StreamSettings = DEFAULT_STREAM) -> Plan:
    """e1 = (s, r, o1→o*), e2 = (s, r, o*→o1), or with Multi-Label Edit e2 = one batch writing
    every true object. The true objects are probed on θ and θ' under their labels, o* and o1
    on θm (and o* on θ') under the names ``o*`` and ``o1``. Others as ``protocol`` defines them
    (:func:`others`)."""
    edit = case.edit

    def query(entity: Entity) -> Query:
        return Query(edit.relation, edit.subject.label, entity.label)

    o1, o_star = edit.old, edit.new
    objects = [(o.label, query(o)) for o in (o1, *others(case, protocol))]
    undo = tuple(edit.request(target=o) for o in case.true_objects) if multi_label else (edit.request(target=o1),)
    first = (edit.request(),)
    return (
        Stage("theta", (), tuple(objects)),
        Stage("theta_m", (first,), (("o*", query(o_star)), ("o1", query(o1)))),
        Stage("theta_prime", (first, undo), (("o*", query(o_star)), *objects)),
    )


def others(case: RoundCase, protocol: Protocol = PAPER) -> tuple[Entity, ...]:
    """Others = Obj \\ {o1}: every copy of o1 removed, or under ``protocol.remove_first_o1_only``
    the first copy only (a repeated o1 then stays among Others, as in the published code)."""
    return case.others_first_o1_removed if protocol.remove_first_o1_only else case.others


def sequential(case: StreamCase, multi_label: bool = False, protocol: Protocol = PAPER,
               stream: StreamSettings = DEFAULT_STREAM) -> Plan:
    """θ (the locality facts, the held-out perplexity), then a state per batch of the stream's
    schedule (``stream.schedule``), each reached by all batches so far: its update norms, under
    the immediate scheme its batch's edit facts, and at a checkpoint the edit facts of every edit
    so far (final scheme), their neighbourhood facts, the locality facts and the perplexity.

    An edit's facts (:func:`edit_probes`): p(o*) and p(o) on its edit prompt alone and averaged
    over its paraphrases; a neighbourhood fact's (:func:`neighbour_probes`) and a locality fact's
    (``locality:j``), p(s, r, o) over all the relation's prompts. The batches of later stages are
    the very objects of earlier ones, so the harness sees each stage continue the last by identity."""
    schedule = stream.schedule(len(case.edits))
    batches = stream_batches(case.edits, schedule)
    ends = schedule.batch_ends()
    checkpoints = set(schedule.checkpoints())
    locality = tuple((f"locality:{j}", _fact_query(fact)) for j, fact in enumerate(case.locality))
    stages = [Stage(THETA, (), locality, perplexity=case.held_out)]
    start = 0
    for count, end in enumerate(ends, start=1):
        checkpoint = end in checkpoints
        scored = range(0, end) if checkpoint and schedule.final else range(start, end) if schedule.immediate else range(0)
        probes = [probe for i in scored for probe in edit_probes(i, case.edits[i])]
        if checkpoint:
            probes += [probe for i in range(end) for j, fact in enumerate(case.neighbourhood[i])
                       for probe in neighbour_probes(i, j, fact, case.edits[i].new)]
            probes += locality
        stages.append(Stage(state_after(end), batches[:count], tuple(probes),
                            perplexity=case.held_out if checkpoint else (), norms=True))
        start = end
    return tuple(stages)


def stream_batches(edits: Sequence[Edit], schedule: Schedule) -> tuple[EditBatch, ...]:
    """The requests of the first ``schedule.edits`` of ``edits``, cut at the schedule's batch ends."""
    requests = [edit.request() for edit in edits[: schedule.edits]]
    ends = schedule.batch_ends()
    return tuple(tuple(requests[start:end]) for start, end in zip((0, *ends), ends))


def edit_probes(i: int, edit: Edit) -> tuple[tuple[str, Query], ...]:
    """Edit ``i``'s facts: ``edit:i:new`` and ``edit:i:old`` (p(s, r, o*) and p(s, r, o) on the
    edit prompt alone), ``paraphrases:i:new`` and ``paraphrases:i:old`` (averaged over the
    paraphrases alone)."""
    subject = edit.subject.label
    return tuple((f"{where}:{i}:{which}", Query(relation, subject, target.label))
                 for where, relation in (("edit", edit.relation.edit_prompt_only()), ("paraphrases", edit.relation.paraphrases_only()))
                 for which, target in (("new", edit.new), ("old", edit.old)))


def neighbour_probes(i: int, j: int, fact: Fact, new: Entity) -> tuple[tuple[str, Query], ...]:
    """Neighbourhood fact ``j`` of edit ``i``, (s', r, o): ``neighbour:i:j:true`` its true object
    o and ``neighbour:i:j:new`` the edit's new object o*, each p(s', r, ·) over all the prompts."""
    return ((f"neighbour:{i}:{j}:true", _fact_query(fact)),
            (f"neighbour:{i}:{j}:new", Query(fact.relation, fact.subject.label, new.label)))


def _fact_query(fact: Fact) -> Query:
    return Query(fact.relation, fact.subject.label, fact.object.label)
