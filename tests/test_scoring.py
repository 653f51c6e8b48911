"""Each split's plan and scoring, without a model: the plan probes what the scoring reads, and the
metrics keep their bounds and meaning on any probabilities. The paper's splits here; streams in
tests/test_streams.py."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_kedit.benchmark.plans import Plan
from pytest_kedit.benchmark.registry import CONFLICT_EDIT, METRICS, PAPER_BENCHMARKS, SPLITS, STATES, splits_of
from pytest_kedit.strategies import conflict_cases, probabilities, round_cases

Probabilities = dict[str, dict[str, float]]
PAPER_SPLITS = [split for benchmark in PAPER_BENCHMARKS for split in splits_of(benchmark)]


def cases(split: str) -> st.SearchStrategy:
    return conflict_cases(split) if split in splits_of(CONFLICT_EDIT) else round_cases(split)


def probed(plan: Plan, p: st.DataObject) -> Probabilities:
    """A probability for every fact the plan probes, drawn at random; one value per distinct fact
    (the probe is a function of the fact, so the same fact gets the same value in a state)."""
    out: Probabilities = {}
    for stage in plan:
        values: dict[str, float] = {}
        for name, query in stage.probes:
            values[name] = p.draw(probabilities(), label=f"{stage.state}/{name}/{query.object}")
        out[stage.state] = values
    return out


def unchanged(plan: Plan, value: st.DataObject) -> Probabilities:
    """Every model state gives each fact the same probability: an editor that changed nothing."""
    per_fact: dict[tuple[str, str, str], float] = {}
    out: Probabilities = {}
    for stage in plan:
        out[stage.state] = {}
        for name, query in stage.probes:
            key = (query.relation.id, query.subject, query.object)
            if key not in per_fact:
                per_fact[key] = value.draw(probabilities(), label=str(key))
            out[stage.state][name] = per_fact[key]
    return out


@pytest.mark.parametrize("split", PAPER_SPLITS)
@settings(max_examples=30)
@given(data=st.data())
def test_scoring_reads_only_what_the_plan_probes_and_gives_the_registry_metrics(split: str, data: st.DataObject):
    case = data.draw(cases(split))
    multi_label = data.draw(st.booleans())
    plan = SPLITS[split].plan(case, multi_label)
    assert {stage.state for stage in plan} <= set(STATES)
    scores = SPLITS[split].score(case, probed(plan, data))
    assert list(scores.values) != [] and set(scores.values) == set(SPLITS[split].metrics)
    assert set(scores.evidence) == set(SPLITS[split].metrics)
    for key, value in scores.values.items():
        assert math.isfinite(value)
        if METRICS[key].binary:
            assert value in (0.0, 1.0), key


@pytest.mark.parametrize("split", PAPER_SPLITS)
@settings(max_examples=30)
@given(data=st.data())
def test_bounds_of_every_metric(split: str, data: st.DataObject):
    case = data.draw(cases(split))
    values = SPLITS[split].score(case, probed(SPLITS[split].plan(case), data)).values
    if "cm" in values:
        assert -1 <= values["cm"] <= 1
    if "tfd" in values:
        assert values["tfd"] <= 1
    if "succ" in values:
        assert values["succ"] in (0.0, 0.5, 1.0)
        assert 0 <= values["d"] <= math.log(2) and 0 <= values["ir"] <= 1
        assert values["fr"] == float(values["ir"] > 0.5)


@pytest.mark.parametrize("split", PAPER_SPLITS)
@settings(max_examples=30)
@given(data=st.data())
def test_an_editor_that_changed_nothing_conflicts_and_distorts_nothing(split: str, data: st.DataObject):
    """With every state equal to θ, the old fact keeps its probability (CM 0), the tied fact is
    undamaged (TFD 0), and the true objects' distribution does not move (D 0, IR 0, FR 0)."""
    case = data.draw(cases(split))
    values = SPLITS[split].score(case, unchanged(SPLITS[split].plan(case), data)).values
    for key in ("cm", "tfd", "d", "ir", "fr"):
        if key in values:
            assert values[key] == 0, key


@settings(max_examples=30)
@given(data=st.data())
def test_a_conflict_score_flips_when_new_and_old_facts_trade_places(data: st.DataObject):
    split = data.draw(st.sampled_from(splits_of(CONFLICT_EDIT)))
    case = data.draw(conflict_cases(split))
    plan = SPLITS[split].plan(case)
    p = probed(plan, data)
    after = p["theta_prime"]
    new_names = [name for name in after if name.startswith("k_n")]
    name = data.draw(st.sampled_from(new_names))
    if after[name] == after["k_o"]:
        return
    key = {"k_n": "cs", "k_n_exp": "cs_exp", "k_n_imp": "cs_imp"}[name]
    before = SPLITS[split].score(case, p).values[key]
    after[name], after["k_o"] = after["k_o"], after[name]
    assert SPLITS[split].score(case, p).values[key] == 1 - before


@settings(max_examples=30)
@given(data=st.data())
def test_round_trip_distortion_does_not_depend_on_the_order_of_the_other_objects(data: st.DataObject):
    """D and IR are functions of the set of true objects: scoring reads the probabilities by
    label, so listing Others in another order gives the same values."""
    case = data.draw(round_cases())
    plan = SPLITS[case.split].plan(case)
    p = probed(plan, data)
    shuffled = type(case)(case.case_id, case.split, case.index, case.arity, case.edit,
                          tuple(data.draw(st.permutations(case.true_objects))))
    first, second = SPLITS[case.split].score(case, p).values, SPLITS[case.split].score(shuffled, p).values
    assert second["ir"] == first["ir"] and second["fr"] == first["fr"]
    assert second["d"] == pytest.approx(first["d"], abs=1e-12)


@settings(max_examples=30)
@given(data=st.data())
def test_multi_label_undo_writes_every_true_object_in_one_batch(data: st.DataObject):
    case = data.draw(round_cases())
    single = SPLITS[case.split].plan(case, False)
    multi = SPLITS[case.split].plan(case, True)
    (_, undo_single), (_, undo_multi) = single[-1].edits, multi[-1].edits
    assert [r.target for r in undo_single] == [case.edit.old.label]
    assert [r.target for r in undo_multi] == [o.label for o in case.true_objects]
    assert single[:-1] == multi[:-1] and single[-1].probes == multi[-1].probes

