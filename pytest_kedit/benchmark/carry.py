"""Carrying edits (``--kedit-carry=k``): the paper's ConflictEdit and RoundEdit cases measured on
a model that already holds k edits of the data's stream. Pure: which edits are carried, and in
which batches.

The carried edits are the first k edits of the data's first stream whose subject is not the subject
of a fact that a ConflictEdit or RoundEdit case of the data edits or probes (:func:`carriable`):
a carried edit then never rewrites a fact a case measures, not even through the subject's
representation, which locate-and-edit methods change for every relation of that subject. The cases
are all those of the data's files, not of the run's selection, so the carried model is the same
whatever ``--kedit-split``, ``--kedit-limit``, ``--kedit-sample`` or ``--kedit-shard`` choose.
They are applied in the batches a stream of k edits is (:func:`carry_batches`), once per process;
every case then starts from, and is restored to, the carried model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from pytest_kedit.benchmark.cases import Case, Edit, StreamCase
from pytest_kedit.benchmark.plans import EditBatch, Plan, stream_batches
from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.benchmark.streams import StreamSettings


def plan_subjects(plan: Plan) -> frozenset[str]:
    """The subjects of every fact ``plan`` edits or probes, case-folded."""
    edited = (request.subject for stage in plan for batch in stage.edits for request in batch)
    probed = (query.subject for stage in plan for _, query in stage.probes)
    return frozenset(subject.casefold() for subject in (*edited, *probed))


def carriable(stream: StreamCase, cases: Iterable[Case]) -> tuple[Edit, ...]:
    """The edits of ``stream``, in order, whose subject (case-folded) is a subject of no fact that
    the plan of one of ``cases`` edits or probes."""
    taken = frozenset().union(*(plan_subjects(SPLITS[case.split].plan(case)) for case in cases))
    return tuple(edit for edit in stream.edits if edit.subject.label.casefold() not in taken)


def carry_batches(edits: Sequence[Edit], stream: StreamSettings) -> tuple[EditBatch, ...]:
    """The batches in which ``edits`` are carried: those of a stream of exactly these edits under
    ``stream`` (its batch size B, or the default of its editor; ``stream.edits`` does not apply)."""
    schedule = dataclasses.replace(stream, edits=None).schedule(len(edits))
    return stream_batches(edits, schedule)
