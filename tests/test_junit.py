"""The JUnit XML of a run: one property per metric of each case, not the record's JSON, serial
and under pytest-xdist, under pytest's default junit_family (xunit2) and xunit1."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_kedit.benchmark.registry import METRICS, SPLITS
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.run.junit import junit_properties


def test_a_record_becomes_its_case_split_relation_and_one_property_per_metric() -> None:
    record = CaseRecord(case_id="reverse-0003", split="reverse", relation="P17", arity=None, model="m", method="ft",
                        metrics={"cm": 0.4182, "cs_imp": 0.0, "cs_exp": 1.0})
    assert junit_properties(record) == [("kedit_case", "reverse-0003"), ("kedit_split", "reverse"),
                                        ("kedit_relation", "P17"), ("CS_exp", "1.0"), ("CS_imp", "0.0"), ("CM", "0.4182")]
    error = CaseRecord(case_id="easy-invalid", split="easy", relation=None, arity=None, model="m", method="ft",
                       outcome="error", error="easy.json: not valid JSON")
    assert junit_properties(error) == [("kedit_case", "easy-invalid"), ("kedit_split", "easy"),
                                       ("kedit_error", "easy.json: not valid JSON")]


def test_a_stream_becomes_its_final_metrics_not_its_curve() -> None:
    metrics = {"collapse_at": 20.0, "es": 0.88, "gs": 0.84, "es_imm": 0.97, "gs_imm": 0.98, "retention": 0.9072164948453608,
               "spec": 0.8, "loc": 0.17777777777777778, "ppl": 1.9832056608802857, "norm": 2.2819573909107933}
    checkpoints = [{"edits": n, **{key: n / 100 for key in metrics if key != "collapse_at"}} for n in range(10, 101, 10)]
    batches = [{"edits": n, "norm": n / 50, "norms": {"layers.4.weight": n / 50}} for n in range(1, 101)]
    record = CaseRecord(case_id="sequential-0000", split="sequential", relation="stream", arity=None, model="m",
                        method="rome", metrics=metrics, curve={"schedule": {"edits": 100, "batch": 1, "every": 10,
                                                                             "scheme": "both"},
                                                                "checkpoints": checkpoints, "batches": batches})
    properties = junit_properties(record)
    assert properties[:3] == [("kedit_case", "sequential-0000"), ("kedit_split", "sequential"), ("kedit_relation", "stream")]
    assert properties[3:] == [(METRICS[key].label, repr(metrics[key])) for key in SPLITS["sequential"].metrics]
    assert len(properties) == 3 + len(metrics)  # one per final metric, none per checkpoint or batch


def _cases(xml_file: Path) -> dict[str, dict[str, str]]:
    """The kedit testcases of a JUnit file: case id -> {property: value}."""
    cases = {}
    for testcase in ET.parse(xml_file).getroot().iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in testcase.iter("property")}
        if "kedit_case" in properties:
            cases[properties["kedit_case"]] = properties
    return cases


@pytest.fixture
def project(kedit_project: Callable[..., pytest.Pytester]) -> pytest.Pytester:
    return kedit_project(kedit_split="reverse,easy", kedit_limit=2)


@pytest.mark.slow
@pytest.mark.parametrize("args", [(), ("-n", "2"), ("-o", "junit_family=xunit1")],
                         ids=["serial-xunit2", "xdist-xunit2", "serial-xunit1"])
def test_the_junit_file_carries_one_property_per_metric(project: pytest.Pytester, tmp_path: Path,
                                                        args: tuple[str, ...]) -> None:
    if "-n" in args:
        pytest.importorskip("xdist")
    xml_file, report = tmp_path / "junit.xml", tmp_path / "report"
    result = project.runpytest_subprocess("-p", "no:randomly", f"--junitxml={xml_file}", f"--kedit-report={report}",
                                          "--kedit-threshold=cs_exp=off", "--kedit-threshold=cs_imp=off",
                                          "--kedit-threshold=succ=off", "--kedit-threshold=fr=off", *args)
    result.assert_outcomes(passed=4)
    cases = _cases(xml_file)
    records = {r["case_id"]: r for r in map(json.loads, (report / "cases.jsonl").read_text().splitlines())}
    assert sorted(cases) == sorted(records) == ["easy-0000", "easy-0001", "reverse-0000", "reverse-0001"]
    for case_id, properties in cases.items():
        split = case_id.split("-")[0]
        labels = [METRICS[key].label for key in SPLITS[split].metrics]
        assert list(properties) == ["kedit_case", "kedit_split", "kedit_relation", *labels]
        assert properties["kedit_split"] == split
        for key in SPLITS[split].metrics:  # the exact values of the report, not rounded
            assert float(properties[METRICS[key].label]) == records[case_id]["metrics"][key]
    text = xml_file.read_text()
    assert 'name="kedit"' not in text and "probabilities" not in text  # the record's JSON is not there
    testcase = next(ET.parse(xml_file).getroot().iter("testcase"))
    assert ("file" in testcase.attrib) == ("junit_family=xunit1" in args)  # xunit2 drops file/line
