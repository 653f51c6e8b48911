"""Streams without a model: the record's parser, the schedule of a stream, its plan and its scoring
(the metrics of tests/test_metrics.py read at every checkpoint, the curve, the two schemes)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pytest_kedit.benchmark.cases import Entity, Relation, StreamCase, parse_stream_case
from pytest_kedit.benchmark.plans import PERPLEXITY, Plan, norm_name
from pytest_kedit.benchmark.registry import METRICS, SPLITS
from pytest_kedit.benchmark.streams import SCHEMES, THETA, StreamSettings, state_after
from pytest_kedit.errors import DataError
from pytest_kedit.strategies import probabilities, stream_cases

SEQUENTIAL = SPLITS["sequential"]
Probabilities = dict[str, dict[str, float]]

settings_of_a_stream = st.builds(StreamSettings, edits=st.none() | st.integers(1, 10), batch=st.none() | st.integers(1, 4),
                                 every=st.none() | st.integers(1, 5), scheme=st.sampled_from(SCHEMES), batched=st.booleans())


# -- the record --------------------------------------------------------------------------------


def _entity(entity: Entity) -> dict[str, Any]:
    return {"id": entity.id, "label": entity.label}


def _relation(relation: Relation) -> dict[str, Any]:
    return {"id": relation.id, "prompt": relation.prompt, "query": None, "label": relation.label}


def stream_record(case: StreamCase) -> dict[str, Any]:
    """The sequential.json record of ``case`` (the schema of pytest_kedit.benchmark.cases)."""
    return {
        "type": "sequential",
        "edits": [{"relation": _relation(edit.relation), "subject": _entity(edit.subject), "object": _entity(edit.old),
                   "new_object": _entity(edit.new), "neighbourhood": [_entity(fact.subject) for fact in facts]}
                  for edit, facts in zip(case.edits, case.neighbourhood)],
        "locality": [{"relation": _relation(f.relation), "subject": _entity(f.subject), "object": _entity(f.object)}
                     for f in case.locality],
        "held_out": list(case.held_out),
    }


def paraphrases_of(case: StreamCase) -> dict[str, list[str]]:
    return {relation.id: list(relation.paraphrases)
            for relation in (*(e.relation for e in case.edits), *(f.relation for f in case.locality))}


def parse(record: Any, paraphrases: dict[str, list[str]]) -> StreamCase:
    return parse_stream_case(record, "sequential", 3, "sequential.json", paraphrases, "sequential_prompts.json")


@settings(max_examples=30)
@given(stream_cases())
def test_stream_cases_parse_back_from_their_records(case: StreamCase):
    assert parse(stream_record(case), paraphrases_of(case)) == dataclasses.replace(case, case_id="sequential-0003", index=3)


def _break(record: dict[str, Any], how: str) -> str:
    """Break ``record`` as ``how`` says; the field the error must name."""
    edits = record["edits"]
    if how == "twice":
        edits.append({**edits[0], "object": edits[0]["new_object"], "new_object": edits[0]["object"]})
        return f"edits[{len(edits) - 1}]"
    if how == "same object":
        edits[0]["new_object"] = dict(edits[0]["object"])
        return "edits[0].new_object"
    if how == "neighbour edited":
        edits[0]["neighbourhood"] = [dict(edits[0]["subject"])]
        return "edits[0].neighbourhood[0]"
    if how == "locality edited":
        record["locality"][0] = {key: edits[0][key] for key in ("relation", "subject", "object")}
        return "locality[0]"
    if how == "no locality":
        record["locality"] = []
        return "locality"
    if how == "no text":
        record["held_out"] = []
        return "held_out"
    if how == "empty text":
        record["held_out"] = [" "]
        return "held_out[0]"
    if how == "no edits":
        record["edits"] = []
        return "edits"
    del edits[0]["subject"]["label"]
    return "edits[0].subject.label"


@settings(max_examples=20)
@given(stream_cases(), st.sampled_from(["twice", "same object", "neighbour edited", "locality edited", "no locality",
                                        "no text", "empty text", "no edits", "no label"]))
def test_a_bad_stream_record_is_a_data_error_naming_file_record_and_field(case: StreamCase, how: str):
    record = stream_record(case)
    field = _break(record, how)
    with pytest.raises(DataError) as caught:
        parse(record, paraphrases_of(case))
    assert (caught.value.path, caught.value.record, caught.value.field) == ("sequential.json", 3, field)
    assert str(caught.value).startswith(f"sequential.json, record 3, field '{field}': ")


# -- the schedule ------------------------------------------------------------------------------


@given(settings_of_a_stream, st.integers(1, 40))
def test_a_schedule_applies_n_edits_in_order_in_batches_and_measures_the_last_batch(stream: StreamSettings, length: int):
    schedule = stream.schedule(length)
    ends = schedule.batch_ends()
    assert schedule.edits == (length if stream.edits is None else min(stream.edits, length))
    assert ends[-1] == schedule.edits and list(ends) == sorted(set(ends))
    assert all(b - a == schedule.batch for a, b in zip((0, *ends[:-1]), ends[:-1]))
    assert 0 < ends[-1] - (ends[-2] if len(ends) > 1 else 0) <= schedule.batch
    checkpoints = schedule.checkpoints()
    assert set(checkpoints) <= set(ends) and list(checkpoints) == sorted(set(checkpoints)) and checkpoints[-1] == schedule.edits
    for j in range(1, math.ceil(schedule.edits / schedule.every) + 1):  # a checkpoint at or soon after every K edits
        assert any(j * schedule.every <= c < j * schedule.every + schedule.batch or c == schedule.edits for c in checkpoints)


@given(st.integers(1, 400), st.integers(1, 20), st.booleans())
def test_by_default_a_stream_has_ten_checkpoints_and_a_batched_editor_one_batch_per_checkpoint(n: int, k: int, batched: bool):
    schedule = StreamSettings(batched=batched).schedule(n)
    assert len(schedule.checkpoints()) == math.ceil(n / math.ceil(n / 10)) <= 10
    assert schedule.batch == (schedule.every if batched else 1)
    if batched:
        assert schedule.checkpoints() == schedule.batch_ends()
    explicit = StreamSettings(batch=k, every=k * 2).schedule(n)
    assert explicit.checkpoints() == tuple(sorted({*range(2 * k, n, 2 * k), n}))


@pytest.mark.parametrize("settings, message", [
    (StreamSettings(scheme="later"), "unknown scheme 'later'"), (StreamSettings(batch=0), "batch must be at least 1"),
])
def test_a_schedule_refuses_what_no_option_gives(settings: StreamSettings, message: str):
    with pytest.raises(ValueError, match=message):
        settings.schedule(5)


# -- the plan ----------------------------------------------------------------------------------


@settings(max_examples=40)
@given(stream_cases(), settings_of_a_stream)
def test_a_streams_stages_extend_each_other_by_the_same_batches_so_the_harness_never_restores(case: StreamCase,
                                                                                                stream: StreamSettings):
    plan = SEQUENTIAL.plan(case, False, None, stream)
    schedule = stream.schedule(len(case.edits))
    assert [stage.state for stage in plan] == [THETA, *(state_after(end) for end in schedule.batch_ends())]
    assert plan[0].edits == () and plan[0].perplexity == case.held_out
    for before, after in zip(plan[1:], plan[2:]):
        assert len(after.edits) == len(before.edits) + 1
        assert all(a is b for a, b in zip(after.edits, before.edits))  # identity: the harness's check is cheap
    requests = [request for batch in plan[-1].edits for request in batch]
    assert requests == [edit.request() for edit in case.edits[: schedule.edits]]
    measured = {stage.state for stage in plan if stage.perplexity}
    assert measured == {THETA, *(state_after(n) for n in schedule.checkpoints())}
    assert all(stage.norms for stage in plan[1:])


# -- scoring -----------------------------------------------------------------------------------


def measured(plan: Plan, value: Any, norm: Any = None) -> Probabilities:
    """What the harness would measure: ``value(stage, name)`` for every probed fact, the held-out
    perplexity where asked for (``value(stage, PERPLEXITY)`` + 1) and one matrix's update norm
    (``norm(stage)``, 0 without)."""
    out: Probabilities = {}
    for stage in plan:
        values = {name: value(stage, name) for name, _ in stage.probes}
        if stage.perplexity:
            values[PERPLEXITY] = 1 + value(stage, PERPLEXITY)
        if stage.norms:
            values[norm_name("model.layers.1.mlp.down_proj.weight")] = norm(stage) if norm else 0.0
        out[stage.state] = values
    return out


def drawn(data: st.DataObject) -> Any:
    return lambda stage, name: data.draw(probabilities(), label=f"{stage.state}/{name}")


def unchanged(data: st.DataObject) -> Any:
    """The original model in every state, which prefers each edit's and neighbour's old object to
    the new one: an editor that changed nothing."""
    per_fact: dict[str, float] = {}

    def value(stage: Any, name: str) -> float:
        fact = name.rsplit(":", 1)[0] if name.endswith((":new", ":old", ":true")) else name
        if fact not in per_fact:
            per_fact[fact] = data.draw(st.floats(0.3, 1.0), label=fact)
        return per_fact[fact] * (0.5 if name.endswith(":new") else 1.0)

    return value


@settings(max_examples=40)
@given(stream_cases(), settings_of_a_stream, st.data())
def test_scoring_reads_only_what_the_plan_measures_and_gives_the_schemes_metrics(case: StreamCase, stream: StreamSettings,
                                                                                  data: st.DataObject):
    plan = SEQUENTIAL.plan(case, False, None, stream)
    scores = SEQUENTIAL.score(case, measured(plan, drawn(data), lambda stage: data.draw(st.floats(0, 3))), None, stream)
    schedule = stream.schedule(len(case.edits))
    expected = {"loc", "ppl", "norm", "collapse_at"}
    expected |= {"es", "gs"} if stream.scheme != "immediate" else set()
    expected |= {"es_imm", "gs_imm"} if stream.scheme != "final" else set()
    expected |= {"retention"} if stream.scheme == "both" else set()
    expected |= {"spec"} if any(case.neighbourhood[: schedule.edits]) else set()
    assert set(scores.values) == expected == set(scores.evidence) and expected <= set(SEQUENTIAL.metrics)
    for key, value in scores.values.items():
        assert math.isfinite(value) and not METRICS[key].binary
        if key not in ("ppl", "norm", "collapse_at"):
            assert 0 <= value <= 1, key
    assert scores.values["collapse_at"] in schedule.checkpoints()


@settings(max_examples=40)
@given(stream_cases(), settings_of_a_stream, st.data())
def test_the_curve_has_every_checkpoint_and_batch_and_ends_in_the_cases_metrics(case: StreamCase, stream: StreamSettings,
                                                                                data: st.DataObject):
    plan = SEQUENTIAL.plan(case, False, None, stream)
    scores = SEQUENTIAL.score(case, measured(plan, drawn(data), lambda stage: data.draw(st.floats(0, 3))), None, stream)
    schedule = stream.schedule(len(case.edits))
    curve = scores.curve
    assert curve is not None and curve["schedule"] == {"edits": schedule.edits, "batch": schedule.batch,
                                                       "every": schedule.every, "scheme": schedule.scheme}
    assert [point["edits"] for point in curve["checkpoints"]] == list(schedule.checkpoints())
    assert [point["edits"] for point in curve["batches"]] == list(schedule.batch_ends())
    last = curve["checkpoints"][-1]
    assert {key: value for key, value in last.items() if key != "edits"} == {
        key: value for key, value in scores.values.items() if key != "collapse_at"}
    collapsed = [p["edits"] for p in curve["checkpoints"] if p["ppl"] >= 2 or p["loc"] < 0.5]
    assert scores.values["collapse_at"] == (collapsed[0] if collapsed else schedule.edits)


@settings(max_examples=40)
@given(stream_cases(), settings_of_a_stream, st.data())
def test_an_editor_that_changes_nothing_makes_no_edit_and_breaks_nothing(case: StreamCase, stream: StreamSettings,
                                                                         data: st.DataObject):
    """Efficacy 0, generalisation 0, retention 0 (nothing took), specificity 1, locality 1, the
    PPL ratio exactly 1, update norm 0, collapse at N."""
    plan = SEQUENTIAL.plan(case, False, None, stream)
    scores = SEQUENTIAL.score(case, measured(plan, unchanged(data)), None, stream)
    for key, value in scores.values.items():
        expected = {"spec": 1.0, "loc": 1.0, "ppl": 1.0, "collapse_at": stream.schedule(len(case.edits)).edits}.get(key, 0.0)
        assert value == expected, key
    for point in scores.curve["checkpoints"]:
        assert point["ppl"] == 1.0 and point["norm"] == 0.0 and point["loc"] == 1.0


@settings(max_examples=40)
@given(stream_cases(), st.data())
def test_immediate_and_final_agree_when_the_stream_is_one_batch(case: StreamCase, data: st.DataObject):
    stream = StreamSettings(batch=len(case.edits))
    plan = SEQUENTIAL.plan(case, False, None, stream)
    values = SEQUENTIAL.score(case, measured(plan, drawn(data)), None, stream).values
    assert values["es"] == values["es_imm"] and values["gs"] == values["gs_imm"]
    assert values["retention"] == (1.0 if values["es"] > 0 else 0.0)


@settings(max_examples=40)
@given(stream_cases(), st.integers(1, 3), st.data())
def test_a_final_score_counts_the_edits_that_take_on_the_last_model(case: StreamCase, batch: int, data: st.DataObject):
    """An independent count: the final efficacy is the share of edits whose p(o*) beats p(o) on the
    edit prompt in the last state; retention counts those of them that also did in their batch's."""
    stream = StreamSettings(batch=batch)
    plan = SEQUENTIAL.plan(case, False, None, stream)
    p = measured(plan, drawn(data))
    values = SEQUENTIAL.score(case, p, None, stream).values
    last = p[plan[-1].state]
    takes = [last[f"edit:{i}:new"] > last[f"edit:{i}:old"] for i in range(len(case.edits))]
    assert values["es"] == sum(takes) / len(takes)
    at_batch = [p[state_after(min(batch * (i // batch + 1), len(case.edits)))] for i in range(len(case.edits))]
    took = [state[f"edit:{i}:new"] > state[f"edit:{i}:old"] for i, state in enumerate(at_batch)]
    assume(any(took))
    assert values["retention"] == sum(a and b for a, b in zip(took, takes)) / sum(took)
