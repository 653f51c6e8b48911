"""``kedit compose-stream``: a stream composed from ConflictEdit and RoundEdit records is a valid
stream whose edits, neighbours and locality facts keep the stream's rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_kedit.benchmark.cases import StreamCase
from pytest_kedit.cli.main import main
from pytest_kedit.dataset.sources import builtin_folder, load_suite
from pytest_kedit.errors import KeditError
from pytest_kedit.suite_build.stream_composition import NEIGHBOURS, compose_from_folder, compose_stream

PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "pitfalls" / "GPT2-XL"

SUBJECTS, OBJECTS, RELATIONS = ["s0", "s1", "s2", "s3", "s4", "s5"], ["o0", "o1", "o2", "o3"], ["P1", "P2", "P3"]


def entity(label: str) -> dict[str, Any]:
    return {"id": None, "label": label}


def relation(rid: str) -> dict[str, Any]:
    return {"id": rid, "prompt": f"{rid} of {{}} is", "query": f"{rid} of {{}}?", "label": rid}


@st.composite
def conflict_record(draw: st.DrawFn) -> dict[str, Any]:
    def fact() -> dict[str, Any]:
        rid, subject, obj = draw(st.sampled_from(RELATIONS)), draw(st.sampled_from(SUBJECTS)), draw(st.sampled_from(OBJECTS))
        return {"relation": relation(rid), "subject": entity(subject), "object": entity(obj)}

    triples = [fact() for _ in range(draw(st.integers(1, 3)))]
    edits = [{**fact(), "new_object": entity(draw(st.sampled_from(OBJECTS)))} for _ in range(2)]
    return {"triples": triples, "type": "coverage", "edits": edits}


@st.composite
def round_record(draw: st.DrawFn) -> dict[str, Any]:
    edit = {"relation": relation(draw(st.sampled_from(RELATIONS))), "subject": entity(draw(st.sampled_from(SUBJECTS))),
            "new_object": entity(draw(st.sampled_from(OBJECTS))), "object": entity(draw(st.sampled_from(OBJECTS)))}  # fmt: skip
    return {"type": "1-2@P1", "edit": edit, "true_objects": [edit["object"]]}


def keys(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(item["subject"]["label"], item["relation"]["id"]) for item in items]


@given(
    st.lists(conflict_record(), max_size=12),
    st.lists(round_record(), max_size=6),
    st.sets(st.sampled_from(RELATIONS), min_size=1),
    st.integers(0, 3),
    st.one_of(st.none(), st.integers(1, 5)),
)
def test_a_composed_stream_keeps_the_rules_of_a_stream(conflicts, rounds, paraphrased, seed, cap) -> None:
    records = {"coverage": conflicts, "easy": rounds}
    paraphrases = {rid: [f"{rid} paraphrase {{}}"] for rid in paraphrased}
    try:
        stream = compose_stream(records, paraphrases, ["Some text."], seed=seed, edits=cap, locality=3)
    except KeditError:
        return
    edited = keys(stream["edits"])
    assert len(set(edited)) == len(edited) and (cap is None or len(edited) <= cap)
    facts = {}  # (subject, relation) -> every object the records give it
    for record in conflicts:
        for fact in [*record["triples"], *record["edits"]]:
            facts.setdefault((fact["subject"]["label"], fact["relation"]["id"]), set()).add(fact["object"]["label"])
    every_edit = [record["edits"][0] for record in conflicts] + [record["edit"] for record in rounds]
    for edit in stream["edits"]:
        assert edit["relation"]["id"] in paraphrases and edit["new_object"] != edit["object"]
        assert any(edit == {**e, "neighbourhood": edit["neighbourhood"]} for e in every_edit)
        assert len(edit["neighbourhood"]) <= NEIGHBOURS
        for subject in edit["neighbourhood"]:
            key = (subject["label"], edit["relation"]["id"])
            assert subject["label"] != edit["subject"]["label"] and key not in edited and facts[key] == {edit["object"]["label"]}
    assert 1 <= len(stream["locality"]) <= 3
    for fact in stream["locality"]:
        key = (fact["subject"]["label"], fact["relation"]["id"])
        assert key not in edited and facts[key] == {fact["object"]["label"]} and key[1] in paraphrases
    assert stream["held_out"] == ["Some text."]


def test_the_seed_orders_the_same_edits_and_a_cap_keeps_the_first(tmp_path: Path) -> None:
    streams = [compose_from_folder(builtin_folder(), tmp_path / str(seed), seed=seed) for seed in (0, 1)]
    assert sorted(keys(streams[0]["edits"])) == sorted(keys(streams[1]["edits"])) and keys(streams[0]["edits"]) != keys(streams[1]["edits"])
    capped = compose_from_folder(builtin_folder(), tmp_path / "capped", seed=1, edits=7)
    assert capped["edits"] == [{**e, "neighbourhood": c["neighbourhood"]} for e, c in zip(streams[1]["edits"][:7], capped["edits"])]


def test_kedit_compose_stream_writes_a_stream_the_plugin_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compose-stream", "--from", "builtin", "--out", str(tmp_path), "--edits", "40", "--locality", "20"]) == 0
    assert "1 stream of 40 edits" in capsys.readouterr().out
    [case] = load_suite(str(tmp_path), ["sequential"]).splits["sequential"]
    assert isinstance(case, StreamCase) and len(case.edits) == 40 and len(case.locality) == 20
    assert all(edit.relation.paraphrases for edit in case.edits)
    assert main(["check-data", str(tmp_path)]) == 0


def test_a_folder_without_edits_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "streams").mkdir()
    for name in ("sequential.json", "sequential_prompts.json"):
        (tmp_path / "streams" / name).write_bytes((builtin_folder() / name).read_bytes())
    assert main(["compose-stream", "--from", str(tmp_path / "streams"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "has none of the ConflictEdit and RoundEdit files" in err and "\n" not in err


@pytest.mark.skipif(not PUBLISHED.is_dir(), reason="the published data is not beside the project (../shared/datasets/pitfalls)")
def test_the_published_files_compose_a_long_valid_stream(tmp_path: Path) -> None:
    record = compose_from_folder(PUBLISHED, tmp_path, edits=1000)
    [case] = load_suite(str(tmp_path), ["sequential"]).splits["sequential"]
    assert isinstance(case, StreamCase) and len(case.edits) == 1000 and len(case.locality) == 100
    assert sum(map(len, case.neighbourhood)) > 0
    assert json.loads((tmp_path / "sequential.json").read_text()) == [record]
