"""The run summary (``summary.json``): written and read back unchanged, and every bad field a
one-line error naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from run_summaries import run_summary

from pytest_kedit.benchmark.metrics import DISTORTION_SCALINGS
from pytest_kedit.benchmark.protocol import PROTOCOLS
from pytest_kedit.benchmark.registry import METRICS, SPLITS
from pytest_kedit.benchmark.thresholds import Threshold, Thresholds
from pytest_kedit.dataset.shards import Shard
from pytest_kedit.errors import KeditError
from pytest_kedit.results.provenance import DATA_FILES, PROVENANCE_FIELDS
from pytest_kedit.results.summary import RunData, RunSummary, SummaryError

PATH = Path("run") / "summary.json"

texts = st.text(max_size=8)
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6)
json_values = st.recursive(st.none() | st.booleans() | numbers | texts,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
                           max_leaves=8)
json_objects = st.dictionaries(texts, json_values, max_size=4)
shards = st.integers(1, 9).flatmap(lambda count: st.builds(Shard, st.integers(1, count), st.just(count)))


def threshold(metric: str) -> st.SearchStrategy[Threshold]:
    return st.builds(Threshold, st.just(metric), st.sampled_from([">=", "<=", ">", "<"]),
                     st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def thresholds(draw: st.DrawFn) -> Thresholds:
    """Global thresholds on any metrics, and per split some of the split's metrics set or off."""
    globals_ = {metric: draw(threshold(metric)) for metric in draw(st.lists(st.sampled_from(list(METRICS)), unique=True))}
    per_split = {}
    for split in draw(st.lists(st.sampled_from(list(SPLITS)), unique=True)):
        metrics = draw(st.lists(st.sampled_from(SPLITS[split].metrics), min_size=1, unique=True))
        per_split[split] = {metric: draw(st.none() | threshold(metric)) for metric in metrics}
    return Thresholds(globals_, per_split)


@st.composite
def summaries(draw: st.DrawFn) -> RunSummary:
    optional_text = st.none() | texts
    merged = draw(st.booleans())
    return RunSummary(
        model=draw(texts.filter(bool)), method=draw(texts.filter(bool)), hparams_file=draw(optional_text),
        device=draw(texts), dtype=draw(texts), splits=tuple(draw(st.lists(st.sampled_from(list(SPLITS)), unique=True))),
        limit=draw(st.none() | st.integers(1, 10**6)),
        sample=draw(st.none() | st.fixed_dictionaries({"size": st.integers(1, 100), "seed": st.integers(0, 10**6)})),
        shard=None if merged else draw(st.none() | shards), seed=draw(st.integers(0, 2**32)),
        distortion_scaling=draw(st.sampled_from(DISTORTION_SCALINGS)), protocol=draw(st.sampled_from(list(PROTOCOLS))),
        thresholds=draw(thresholds()), hparams=draw(json_objects), model_source=draw(optional_text),
        model_fingerprint=draw(optional_text), editor_fingerprint=draw(optional_text),
        probe_version=draw(st.none() | st.integers(1, 100)), statistics=draw(json_objects),
        data=RunData(draw(optional_text), draw(optional_text), draw(st.dictionaries(texts, texts, max_size=3))),
        versions=draw(st.dictionaries(texts, texts, max_size=3)), complete=draw(st.booleans()),
        cases_expected=draw(st.integers(0, 10**6)), cases_done=draw(st.integers(0, 10**6)),
        outcomes=draw(st.dictionaries(texts, st.integers(0, 100), max_size=4)),
        timings=draw(st.dictionaries(texts, numbers, max_size=4)),
        counts=draw(st.none() | json_objects), intervals=draw(st.none() | json_objects),
        shards=tuple(draw(st.lists(shards, max_size=3))) if merged else None,
        shards_missing=tuple(draw(st.lists(shards, max_size=3))) if merged else (),
    )


@given(summaries())
def test_a_summary_reads_back_from_its_file_as_it_was_written(summary: RunSummary) -> None:
    text = summary.to_json()
    again = RunSummary.from_json(text, PATH)
    assert again == summary
    assert again.to_json() == text
    assert RunSummary.from_json(json.loads(text), PATH) == summary
    assert again.provenance() == summary.provenance()  # a provenance read back equals the one written


@given(summaries())
def test_the_file_has_every_field_once_and_shards_only_in_a_merge(summary: RunSummary) -> None:
    written = json.loads(summary.to_json())
    merge_fields = {"shards", "shards_missing"}
    assert set(written) | merge_fields == {"model", "method", "hparams_file", "device", "dtype", "splits", "limit",
                                           "sample", "shard", "seed", "distortion_scaling", "protocol", "thresholds",
                                           "hparams", "model_source", "model_fingerprint", "editor_fingerprint", "probe_version",
                                           "statistics", "data", "versions", "complete", "cases_expected",
                                           "cases_done", "outcomes", "timings", "counts", "intervals", "sequential",
                                           *merge_fields}
    assert (merge_fields <= set(written)) == (summary.shards is not None)


def test_the_provenance_holds_what_must_agree_and_the_data_files() -> None:
    summary = run_summary(data=RunData("builtin", "abc", {"easy.json": "1" * 64}), hparams={"layers": (1, 2)},
                          thresholds=["cs>=1"], versions={"pytest_kedit": "9.9"})
    found = summary.provenance()
    assert set(found) == {*PROVENANCE_FIELDS, "package_version", "thresholds", DATA_FILES}  # the version recorded, not matched
    assert "package_version" not in PROVENANCE_FIELDS and found["probe_version"] == summary.probe_version == 2
    assert (found["data_fingerprint"], found[DATA_FILES], found["package_version"]) == ("abc", {"easy.json": "1" * 64}, "9.9")
    assert found["hparams"] == {"layers": [1, 2]} and found["thresholds"] == ["cs>=1.0"]


def good() -> dict[str, Any]:
    return run_summary().to_mapping()


@pytest.mark.parametrize("change, message", [
    ({"model": ""}, "field 'model' must be a non-empty string"),
    ({"protocol": None}, "field 'protocol' must be one of paper, upstream, got None"),
    ({"distortion_scaling": "log2"}, "field 'distortion_scaling' must be one of paper, upstream, got 'log2'"),
    ({"splits": ["reverse", "nowhere"]}, "field 'splits' has 'nowhere', not one of coverage, reverse, composite, easy, hard"),
    ({"splits": "reverse"}, "field 'splits' must be a list of strings"),
    ({"shard": "1of3"}, "field 'shard' is '1of3', not K/N"),
    ({"shards": ["1/3", "4/3"], "shards_missing": []}, "field 'shards' is '4/3', not K/N"),
    ({"shards": ["1/3"]}, "field 'shards_missing' is missing"),
    ({"thresholds": ["cs~1"]}, "field 'thresholds' has threshold 'cs~1': expected"),
    ({"complete": "yes"}, "field 'complete' must be true or false"),
    ({"cases_done": True}, "field 'cases_done' must be a whole number"),
    ({"limit": 2.5}, "field 'limit' must be a whole number or null"),
    ({"data": {"source": None, "fingerprint": 3, "files": {}}}, "field 'data.fingerprint' must be a string or null"),
    ({"data": {"source": None, "fingerprint": None}}, "field 'data.files' is missing"),
    ({"timings": {"edit": "slow"}}, "field 'timings' must be an object of numbers"),
    ({"versions": {"torch": 2}}, "field 'versions' must be an object of strings"),
    ({"counts": []}, "field 'counts' must be an object or null"),
])
def test_a_bad_field_is_one_line_naming_the_file_and_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SummaryError) as caught:
        RunSummary.from_json(json.dumps({**good(), **change}), PATH)
    assert isinstance(caught.value, KeditError)
    assert str(caught.value).startswith(f"{PATH}: {message}") and "\n" not in str(caught.value)


@pytest.mark.parametrize("field", sorted(set(good()) - {"sequential"}))
def test_every_field_is_required(field: str) -> None:
    mapping = good()
    del mapping[field]
    with pytest.raises(SummaryError, match=f"^{PATH}: field '{field}' is missing$"):
        RunSummary.from_json(mapping, PATH)


def test_a_summary_without_stream_options_reads_as_a_run_at_their_defaults() -> None:
    mapping = good()
    del mapping["sequential"]
    assert RunSummary.from_json(mapping, PATH).sequential is None
    changed = RunSummary.from_json({**good(), "sequential": {"edits": 20}}, PATH)
    assert changed.sequential == {"edits": 20} == changed.provenance()["sequential"]
    with pytest.raises(SummaryError, match=f"^{PATH}: field 'sequential' must be an object or null$"):
        RunSummary.from_json({**good(), "sequential": 20}, PATH)


def test_a_summary_that_is_not_a_json_object_names_the_file_and_line() -> None:
    with pytest.raises(SummaryError, match=rf"^{PATH}, line 2: not valid JSON: "):
        RunSummary.from_json('{"model": "m",\n oops}', PATH)
    with pytest.raises(SummaryError, match=rf"^{PATH}: must be a JSON object$"):
        RunSummary.from_json("[1]", PATH)
