"""Hypothesis strategies for testing metric code and code that consumes benchmark cases.

Needs the ``test`` extra (``pip install pytest-kedit[test]``)::

    from hypothesis import given
    from pytest_kedit.strategies import paired_probability_vectors

    @given(paired_probability_vectors())
    def test_my_distortion_is_symmetric(pair):
        p, q = pair
        assert my_distortion(p, q) == my_distortion(q, p)

Floats are never NaN, infinite or subnormal: probes do not produce them, and they would make
relative-error properties meaningless.
"""

from __future__ import annotations

import sys

from hypothesis import strategies as st

from pytest_kedit.benchmark.cases import ConflictCase, Edit, Entity, Fact, Relation, RoundCase, StreamCase, case_id
from pytest_kedit.benchmark.registry import CONFLICT_EDIT, ROUND_EDIT, SEQUENTIAL, splits_of

__all__ = [
    "conflict_cases",
    "paired_probability_vectors",
    "probabilities",
    "probability_vectors",
    "round_cases",
    "stream_cases",
]


def probabilities(allow_zero: bool = False) -> st.SearchStrategy[float]:
    """Probabilities in (0, 1], or in [0, 1] with ``allow_zero=True``."""
    smallest = 0.0 if allow_zero else sys.float_info.min
    return st.floats(min_value=smallest, max_value=1.0, allow_subnormal=False)


def probability_vectors(min_size: int = 2, max_size: int = 10) -> st.SearchStrategy[list[float]]:
    """Lists of probabilities (zeros allowed) with at least one positive entry, so a positive sum.

    They need not sum to 1: probes of different objects are independent.
    """
    if min_size < 1:
        raise ValueError(f"min_size must be at least 1, got {min_size}")
    return st.lists(probabilities(allow_zero=True), min_size=min_size, max_size=max_size).filter(any)


def paired_probability_vectors(
    min_size: int = 2, max_size: int = 10
) -> st.SearchStrategy[tuple[list[float], list[float]]]:
    """Pairs of ``probability_vectors`` of the same length: the same objects probed before and after."""
    return st.integers(min_size, max_size).flatmap(
        lambda n: st.tuples(probability_vectors(n, n), probability_vectors(n, n))
    )


_text = st.text(st.characters(codec="utf-8", exclude_characters="{}"), max_size=12)
_labels = _text.filter(str.strip)
_prompts = st.builds("{}".join, st.tuples(_text, _text))


def _distinct_labels(n: int) -> st.SearchStrategy[list[str]]:
    return st.lists(_labels, min_size=n, max_size=n, unique=True)


def _entity(label: str) -> st.SearchStrategy[Entity]:
    return st.builds(Entity, st.just(label), st.none() | st.integers(1, 10**8).map("Q{}".format))


def _relations(n: int) -> st.SearchStrategy[list[Relation]]:
    """``n`` relations with distinct ids, each with an edit prompt and 1 to 10 paraphrases."""
    ids = st.lists(st.integers(1, 99_999).map("P{}".format), min_size=n, max_size=n, unique=True)
    return ids.flatmap(
        lambda rel_ids: st.tuples(
            *(
                st.builds(
                    Relation,
                    id=st.just(rel_id),
                    prompt=_prompts,
                    paraphrases=st.lists(_prompts, min_size=1, max_size=10).map(tuple),
                    label=st.none() | _labels,
                )
                for rel_id in rel_ids
            )
        ).map(list)
    )


@st.composite
def conflict_cases(draw: st.DrawFn, split: str | None = None) -> ConflictCase:
    """ConflictCases shaped like the upstream records of ``split`` (any ConflictEdit split if None).

    - coverage:  e1 = (s, r, o1 -> o2),   e2 = (s, r, o2 -> o3)
    - reverse:   e1 = (s1, r1, o1 -> o2), e2 = (o2, r2, s1 -> s2)
    - composite: k_f = (s2, r, s1),       e1 = (s1, r1, o -> o2), e2 = (s2, r2, o2 -> o3)

    The entities of a case have distinct labels; parsing the record the case came from gives
    the same case back.
    """
    splits = splits_of(CONFLICT_EDIT)
    if split is None:
        split = draw(st.sampled_from(splits))
    if split not in splits:
        raise ValueError(f"unknown ConflictEdit split {split!r}; expected one of {splits}")
    index = draw(st.integers(0, 9999))
    if split == "coverage":
        s, o1, o2, o3 = (draw(_entity(label)) for label in draw(_distinct_labels(4)))
        [r] = draw(_relations(1))
        triples: tuple[Fact, ...] = (Fact(s, r, o1),)
        edits = (Edit(s, r, o1, o2), Edit(s, r, o2, o3))
        rule = tied = None
    elif split == "reverse":
        s1, o1, o2, s2 = (draw(_entity(label)) for label in draw(_distinct_labels(4)))
        r1, r2 = draw(_relations(2))
        triples = (Fact(s1, r1, o1), Fact(o1, r2, s1))
        edits = (Edit(s1, r1, o1, o2), Edit(o2, r2, s1, s2))
        rule, tied = f"{r1.id}>{r2.id}", None
    else:
        s1, s2, o, o2, o3 = (draw(_entity(label)) for label in draw(_distinct_labels(5)))
        r, r1, r2 = draw(_relations(3))
        triples = (Fact(s2, r, s1), Fact(s1, r1, o), Fact(s2, r2, o))
        edits = (Edit(s1, r1, o, o2), Edit(s2, r2, o2, o3))
        rule, tied = f"{r.id}&{r1.id}>{r2.id}", triples[0]
    return ConflictCase(case_id(split, index), split, index, rule, triples, edits, tied)


@st.composite
def round_cases(draw: st.DrawFn, split: str | None = None) -> RoundCase:
    """RoundCases: e1 = (s, r, o1 -> o*) with o1 one of 2 to 10 true objects and o* none of them.

    ``split`` is "easy" or "hard" (either if None); the arity is "1-|Obj|@<relation id>" as in
    the upstream records.
    """
    splits = splits_of(ROUND_EDIT)
    if split is None:
        split = draw(st.sampled_from(splits))
    if split not in splits:
        raise ValueError(f"unknown RoundEdit split {split!r}; expected one of {splits}")
    index = draw(st.integers(0, 9999))
    n_objects = draw(st.integers(2, 10))
    subject, o_star, *true_objects = (draw(_entity(label)) for label in draw(_distinct_labels(n_objects + 2)))
    o1 = draw(st.sampled_from(true_objects))
    [r] = draw(_relations(1))
    return RoundCase(
        case_id=case_id(split, index),
        split=split,
        index=index,
        arity=f"1-{n_objects}@{r.id}",
        edit=Edit(subject, r, o1, o_star),
        true_objects=tuple(true_objects),
    )


@st.composite
def stream_cases(draw: st.DrawFn, max_edits: int = 8) -> StreamCase:
    """StreamCases of 1 to ``max_edits`` edits over 1 to 3 relations, each edit with 0 to 2
    neighbourhood subjects, 1 to 4 locality facts and 1 or 2 held-out texts.

    Every entity of a case has its own label, so no (subject, relation) is edited twice and no
    neighbourhood or locality fact is edited: parsing the record the case came from gives the
    same case back.
    """
    if max_edits < 1:
        raise ValueError(f"max_edits must be at least 1, got {max_edits}")
    (split,) = splits_of(SEQUENTIAL)
    index = draw(st.integers(0, 9999))
    n = draw(st.integers(1, max_edits))
    neighbours = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    n_locality = draw(st.integers(1, 4))
    labels = iter(draw(_distinct_labels(3 * n + sum(neighbours) + 2 * n_locality)))
    relations = draw(_relations(draw(st.integers(1, 3))))
    edits, neighbourhood = [], []
    for count in neighbours:
        subject, old, new = (draw(_entity(next(labels))) for _ in range(3))
        relation = draw(st.sampled_from(relations))
        edits.append(Edit(subject, relation, old, new))
        neighbourhood.append(tuple(Fact(draw(_entity(next(labels))), relation, old) for _ in range(count)))
    locality = tuple(Fact(draw(_entity(next(labels))), draw(st.sampled_from(relations)), draw(_entity(next(labels))))
                     for _ in range(n_locality))
    held_out = tuple(draw(st.lists(_labels, min_size=1, max_size=2)))
    return StreamCase(case_id(split, index), split, index, tuple(edits), tuple(neighbourhood), locality, held_out)
