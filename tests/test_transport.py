"""What travels from a process that runs tests to the controller (``pytest_kedit.run.transport``)."""

from __future__ import annotations

from pytest_kedit.results.record import CaseRecord
from pytest_kedit.run.junit import junit_properties
from pytest_kedit.run.transport import (
    pack_case,
    pack_process,
    unpack_case,
    unpack_process,
    usage_error,
    worker_usage_error,
)

RECORD = CaseRecord(case_id="easy-0001", split="easy", relation="P1", arity="1-2", model="m", method="ft",
                    metrics={"succ": 0.5, "fr": 1.0}, probabilities={"theta": {"Paris": 0.25}})


def test_a_packed_case_unpacks_to_the_same_record_and_provenance():
    provenance = {"model": "m", "hparams": {"lr": 0.01}, "data": {"fingerprint": "abc"}}
    record, back, rest = unpack_case(pack_case(RECORD, provenance))
    assert (record, back) == (RECORD, provenance)
    assert rest == junit_properties(RECORD)
    assert unpack_case(pack_case(RECORD, None))[1] is None


def test_the_record_is_replaced_in_place_by_its_junit_properties_and_the_others_are_kept():
    properties = [("mine", 1), *pack_case(RECORD, {"seed": 3}), ("after", "x")]
    record, provenance, rest = unpack_case(properties)
    assert (record, provenance) == (RECORD, {"seed": 3})
    assert rest == [("mine", 1), ("kedit_case", "easy-0001"), ("kedit_split", "easy"), ("kedit_relation", "P1"),
                    ("Succ", "0.5"), ("FR", "1.0"), ("after", "x")]


def test_the_last_of_several_packed_cases_wins_and_none_leaves_the_properties_alone():
    first = CaseRecord("easy-0000", "easy", "P1", None, "m", "ft")
    record, provenance, rest = unpack_case([*pack_case(first, {"seed": 1}), ("mine", 1), *pack_case(RECORD, {"seed": 2})])
    assert (record, provenance) == (RECORD, {"seed": 2})
    assert rest == [("mine", 1), *junit_properties(RECORD)]
    assert unpack_case([("mine", 1)]) == (None, None, [("mine", 1)])


def test_process_facts_travel_in_the_workeroutput():
    output: dict[str, object] = {"shouldstop": False}
    pack_process(output, {"model_load": 1.5})
    assert unpack_process(output) == {"model_load": 1.5}
    assert unpack_process({}) is None


def test_the_controller_recognises_a_workers_usage_error_and_nothing_else():
    line = usage_error(ValueError("baseline b.json does not match this run"))
    assert line == "kedit: baseline b.json does not match this run"
    assert worker_usage_error({"shouldstop": line}) == line
    assert worker_usage_error({"shouldstop": "Interrupted: 1 error during collection"}) is None
    assert worker_usage_error({"shouldstop": False}) is None and worker_usage_error({}) is None
