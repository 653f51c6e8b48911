"""--kedit-carry=k: the paper's cases measured on a model that carries k edits of the data's stream.
Which edits are carried (none whose subject a case edits or probes), the option's checks, the
harness (θ probed live on the carried model, every case restored to it bit for bit) and a run on
the tiny model (k=0 as without the option, the provenance, a baseline or a folder made without carry)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_harness import assert_bit_identical, state
from test_rome import one_thread_and_private_cache  # noqa: F401
from test_stream_harness import CAPITAL, HELD_OUT, LANGUAGE
from tiny_models import tiny_loaded

from pytest_kedit.benchmark.carry import carriable, carry_batches, plan_subjects
from pytest_kedit.benchmark.cases import ConflictCase, Edit, Entity, RoundCase, StreamCase
from pytest_kedit.benchmark.registry import PAPER_BENCHMARKS, SPLITS, splits_of
from pytest_kedit.benchmark.streams import StreamSettings
from pytest_kedit.dataset.sources import builtin_folder, load_suite
from pytest_kedit.editors.ft import FTEditor, FTHyperParams
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.probe import Encoder, probe
from pytest_kedit.run.harness import Harness
from pytest_kedit.run.options import read_options
from pytest_kedit.strategies import conflict_cases, round_cases, stream_cases

PAPER_SPLITS = [split for benchmark in PAPER_BENCHMARKS for split in splits_of(benchmark)]


def paper_subjects(case: ConflictCase | RoundCase) -> set[str]:
    """The subjects of the facts a case edits or probes, as the paper defines each split's facts."""
    if isinstance(case, RoundCase):
        return {case.edit.subject.label}
    e1, e2 = case.edits
    if case.split == "coverage":  # (s, r, o1 -> o2), (s, r, o2 -> o3)
        return {e1.subject.label}
    if case.split == "reverse":  # (s1, r1, o1 -> o2), (o2, r2, s1 -> s2), implicit (s2, r1, o2)
        return {e1.subject.label, e2.subject.label, e2.new.label}
    assert case.tied_fact is not None  # composite: (s2, r, s1), (s1, r1, o -> o2), (s2, r2, o2 -> o3)
    return {e1.subject.label, e2.subject.label, case.tied_fact.subject.label}


# -- which edits are carried ---------------------------------------------------------------------


#: the cases and streams are large draws: fewer of them, and slow ones allowed on a busy machine
FEW = settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])


@FEW
@given(conflict_cases() | round_cases())
def test_a_plans_subjects_are_those_of_the_facts_the_paper_edits_and_probes(case: ConflictCase | RoundCase):
    assert plan_subjects(SPLITS[case.split].plan(case)) == {subject.casefold() for subject in paper_subjects(case)}


@FEW
@given(stream_cases(), st.lists(conflict_cases() | round_cases(), max_size=3), st.data())
def test_the_carried_edits_keep_the_streams_order_and_leave_out_exactly_the_cases_subjects(
        stream: StreamCase, others: list[ConflictCase | RoundCase], data: st.DataObject):
    # RoundEdit cases on some of the stream's subjects, written in other letter cases
    taken = data.draw(st.lists(st.sampled_from(stream.edits), max_size=len(stream.edits)))
    sharing = [dataclasses.replace(case, edit=dataclasses.replace(case.edit, subject=Entity(edit.subject.label.swapcase())))
               for case, edit in zip(data.draw(st.lists(round_cases(), min_size=len(taken), max_size=len(taken))), taken)]
    cases = [*others, *sharing]
    kept = carriable(stream, cases)
    subjects = {subject.casefold() for case in cases for subject in paper_subjects(case)}
    assert list(kept) == [edit for edit in stream.edits if edit.subject.label.casefold() not in subjects]
    assert all(edit.subject.label.casefold() in subjects for edit in stream.edits if edit not in kept)


@pytest.mark.parametrize("settings, batched, sizes", [
    (StreamSettings(), False, [1] * 7),
    (StreamSettings(), True, [1] * 7),  # a tenth of 7 edits, rounded up
    (StreamSettings(edits=2, batch=3), False, [3, 3, 1]),  # --kedit-sequential does not cut the carried edits
    (StreamSettings(every=4), True, [4, 3]),
])
def test_the_carried_edits_are_applied_in_the_batches_of_a_stream_of_them(settings, batched, sizes):
    edits = tuple(Edit(Entity(f"s{i}"), CAPITAL, Entity("Paris"), Entity("Rome")) for i in range(7))
    batches = carry_batches(edits, dataclasses.replace(settings, batched=batched))
    assert [len(batch) for batch in batches] == sizes
    assert [request for batch in batches for request in batch] == [edit.request() for edit in edits]


def test_the_built_in_stream_carries_up_to_65_edits_none_on_a_subject_of_the_built_in_cases():
    suite = load_suite(None, ["easy"], limit=1, carry=65)
    assert len(suite.carried) == 65
    subjects = set()  # independently of the plans: every record's "subject" anywhere in the paper's files
    for split in PAPER_SPLITS:
        subjects |= set(_subjects(json.loads((builtin_folder() / SPLITS[split].data_file).read_text())))
    assert not {edit.subject.label for edit in suite.carried} & subjects
    stream = load_suite(None, ["sequential"]).splits["sequential"][0]
    assert isinstance(stream, StreamCase)
    positions = [stream.edits.index(edit) for edit in suite.carried]
    assert positions == sorted(positions) and positions[:3] == [0, 1, 2]  # the stream's order, from its start
    with pytest.raises(ConfigError) as caught:
        load_suite(None, ["easy"], carry=66)
    assert str(caught.value).endswith("has 65 edits (of 100) whose subject no ConflictEdit or RoundEdit case edits or "
                                      "probes; carry at most 65")


def _subjects(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["subject"]["label"]] if isinstance(value.get("subject"), dict) else []
        return own + [s for item in value.values() for s in _subjects(item)]
    return [s for item in value for s in _subjects(item)] if isinstance(value, list) else []


def test_carried_edits_enter_the_suites_files_and_fingerprint_and_k_0_reads_as_before():
    plain, carrying = load_suite(None, ["easy"], limit=1), load_suite(None, ["easy"], limit=1, carry=3)
    assert plain.carried == () and plain.fingerprint == load_suite(None, ["easy"], limit=1, carry=0).fingerprint
    assert set(carrying.files) == set(plain.files) | {"sequential.json", "sequential_prompts.json", "coverage_edit.json",
                                                      "reverse_edit.json", "composite_edit.json", "conflict_prompts.json",
                                                      "hard.json"}
    assert all(carrying.files[name] == digest for name, digest in plain.files.items())
    assert carrying.fingerprint != plain.fingerprint


# -- the option ------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, ini, carry, splits", [
    ((), "", 0, tuple(SPLITS)),
    (("--kedit-carry=0",), "", 0, tuple(SPLITS)),
    (("--kedit-carry=5",), "", 5, tuple(PAPER_SPLITS)),  # the streams are left out
    ((), "kedit_carry = 2\n", 2, tuple(PAPER_SPLITS)),
    (("--kedit-carry=3", "--kedit-split=easy"), "kedit_carry = 2\n", 3, ("easy",)),
])
def test_the_option_and_ini_key_set_the_carried_edits_and_leave_the_streams_out(
        pytester: pytest.Pytester, args, ini, carry, splits):
    if ini:
        pytester.makeini("[pytest]\n" + ini)
    options = read_options(pytester.parseconfig(*args))
    assert (options.stream.carry, options.splits) == (carry, splits)
    assert options.stream.given() == ({"carry": carry} if carry else None)


@pytest.mark.parametrize("args, message", [
    (("--kedit-carry=-1",), "--kedit-carry: must be at least 0, got -1"),
    (("--kedit-carry=2.5",), "--kedit-carry: '2.5' is not a whole number"),
    (("--kedit-carry=ten",), "--kedit-carry: 'ten' is not a whole number"),
    (("--kedit-carry=2", "--kedit-split=easy,sequential"),
     "--kedit-carry=2: carried edits are for the ConflictEdit and RoundEdit cases; a stream of the sequential split "
     "starts from the original model: leave it out of --kedit-split"),
])
def test_a_bad_carry_is_one_line_naming_it(pytester: pytest.Pytester, args, message):
    with pytest.raises(ConfigError) as caught:
        read_options(pytester.parseconfig(*args))
    assert str(caught.value) == message


# -- the harness -----------------------------------------------------------------------------------


def test_theta_is_probed_live_on_the_carried_model_and_every_case_is_restored_to_it():
    suite = load_suite(None, ["composite", "easy"], limit=1, carry=4)
    cases = [suite.splits["composite"][0], suite.splits["easy"][0]]

    def harness() -> Harness:
        loaded = tiny_loaded("llama")
        return Harness(loaded, FTEditor(FTHyperParams(layers=[1], num_steps=2, lr=1e-1), loaded))

    plain = harness()
    original = [plain.run(case).probabilities["theta"] for case in cases]  # the original θ, now in the cache
    carrying = harness()
    loaded_state = state(carrying.model)
    carrying.carry(suite.carried)
    carried_state = state(carrying.model)
    assert any(not (carried_state[name] == loaded_state[name]).all() for name in loaded_state)
    encoder = Encoder(carrying.loaded.tokenizer)
    for case, before in zip(cases, original):
        theta = carrying.run(case).probabilities["theta"]
        assert_bit_identical(carried_state, carrying.model)
        assert theta != before
        stage = SPLITS[case.split].plan(case)[0]
        assert stage.state == "theta" and not stage.edits
        live = [float(probe(carrying.model, encoder, query.pairs()).mean()) for _, query in stage.probes]
        assert list(theta.values()) == pytest.approx(live, rel=1e-6)
    # the cache of the original model's probabilities holds the original model's alone
    again = harness()
    assert [again.run(case).probabilities["theta"] for case in cases] == original


# -- a run -----------------------------------------------------------------------------------------


def data_with_a_stream(folder: Path) -> Path:
    """The built-in suites of the paper and a stream of four edits on subjects none of their cases has."""
    shutil.copytree(builtin_folder(), folder, ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__", "sequential*"))
    stream = {"type": "sequential", "edits": [
        {"relation": {"id": relation.id, "prompt": relation.prompt, "query": None, "label": None},
         "subject": {"id": None, "label": subject}, "object": {"id": None, "label": old},
         "new_object": {"id": None, "label": new}}
        for subject, relation, old, new in (("Alice", CAPITAL, "Paris", "Rome"), ("Bob", LANGUAGE, "French", "German"),
                                            ("Carol", CAPITAL, "Rome", "Berlin"), ("Dave", LANGUAGE, "English", "Italian"))],
        "locality": [{"relation": {"id": LANGUAGE.id, "prompt": LANGUAGE.prompt, "query": None, "label": None},
                      "subject": {"id": None, "label": "Eve"}, "object": {"id": None, "label": "German"}}],
        "held_out": list(HELD_OUT)}
    (folder / "sequential.json").write_text(json.dumps([stream]))
    (folder / "sequential_prompts.json").write_text(json.dumps(
        {relation.id: list(relation.paraphrases) for relation in (CAPITAL, LANGUAGE)}))
    return folder


@pytest.fixture
def carry_project(kedit_project: Callable[..., pytest.Pytester], tmp_path: Path) -> pytest.Pytester:
    return kedit_project(kedit_data=data_with_a_stream(tmp_path / "data"), kedit_limit=1, kedit_split="easy")


def records(report: Path) -> list[dict[str, Any]]:
    lines = (report / "cases.jsonl").read_text().splitlines()
    return [{key: value for key, value in json.loads(line).items() if key != "timings"} for line in lines]


def test_carrying_0_edits_is_the_run_without_the_option_and_carrying_some_is_in_the_provenance(
        carry_project: pytest.Pytester, tmp_path: Path):
    runs = {}
    for name, args in (("without", ()), ("zero", ("--kedit-carry=0",)), ("two", ("--kedit-carry=2",))):
        report = tmp_path / name
        result = carry_project.runpytest_inprocess("-p", "no:randomly", f"--kedit-report={report}",
                                                   "--kedit-threshold=succ=off", "--kedit-threshold=fr=off", *args)
        result.assert_outcomes(passed=1, skipped=1)
        assert ("(protocol: paper, carrying 2 edits)" in result.stdout.str()) == (name == "two")
        runs[name] = report
    assert records(runs["zero"]) == records(runs["without"])
    (without,), (carried,) = records(runs["without"]), records(runs["two"])
    assert without["probabilities"]["theta"] != carried["probabilities"]["theta"]
    provenance = {name: json.loads((report / "run.json").read_text())["provenance"] for name, report in runs.items()}
    assert provenance["zero"] == provenance["without"] and provenance["without"]["sequential"] is None
    assert provenance["two"]["sequential"] == {"carry": 2}
    assert json.loads((runs["two"] / "summary.json").read_text())["sequential"] == {"carry": 2}


def test_a_baseline_or_a_report_folder_made_without_carry_refuses_a_run_with_it(carry_project: pytest.Pytester,
                                                                                 tmp_path: Path):
    baseline, report = tmp_path / "baseline.json", tmp_path / "report"
    carry_project.runpytest_inprocess("-p", "no:randomly", f"--kedit-baseline={baseline}", "--kedit-baseline-update",
                                      f"--kedit-report={report}")
    gated = carry_project.runpytest_inprocess("-p", "no:randomly", f"--kedit-baseline={baseline}", "--kedit-carry=2")
    assert gated.ret == pytest.ExitCode.USAGE_ERROR
    resumed = carry_project.runpytest_inprocess("-p", "no:randomly", f"--kedit-report={report}", "--kedit-resume",
                                                "--kedit-carry=2")
    assert resumed.ret == pytest.ExitCode.USAGE_ERROR
    for result in (gated, resumed):
        (line,) = result.stderr.str().strip().splitlines()
        assert "sequential: None recorded, {'carry': 2} now" in line


@pytest.mark.parametrize("carry, data, message", [
    (5, "stream", "--kedit-carry=5: the first stream of {data}/sequential.json has 4 edits (of 4) whose subject no "
                  "ConflictEdit or RoundEdit case edits or probes; carry at most 4"),
    (1, "no stream", "--kedit-carry=1: {data} has no sequential.json, the stream whose first edits are carried"),
])
def test_data_without_a_stream_or_with_too_few_edits_stops_the_run_before_the_model_loads(
        kedit_project: Callable[..., pytest.Pytester], tiny_model_dir: Path, tmp_path: Path, carry, data, message):
    folder = data_with_a_stream(tmp_path / "data")
    if data == "no stream":
        (folder / "sequential.json").unlink()
    weightless = tmp_path / "weightless"  # a model that cannot load: the run must stop before trying
    weightless.mkdir()
    shutil.copy(tiny_model_dir / "config.json", weightless)
    project = kedit_project(kedit_data=folder, kedit_limit=1, kedit_split="easy", kedit_model=weightless)
    result = project.runpytest_inprocess("-p", "no:randomly", f"--kedit-carry={carry}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.str().strip().splitlines() == [f"ERROR: kedit: {message.format(data=folder)}"]
