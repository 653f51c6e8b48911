"""Parsing and validation of the upstream schema, the built-in suites and upstream folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_kedit.benchmark.cases import ConflictCase, RoundCase, StreamCase
from pytest_kedit.benchmark.registry import CONFLICT_EDIT, ROUND_EDIT, splits_of
from pytest_kedit.benchmark.registry import SPLIT_NAMES as SPLITS
from pytest_kedit.dataset.sources import SPLIT_FILES, builtin_folder, load_suite
from pytest_kedit.errors import ConfigError, DataError

UPSTREAM = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "pitfalls"
needs_upstream = pytest.mark.skipif(
    not UPSTREAM.is_dir(), reason=f"the upstream pitfalls datasets are not at {UPSTREAM} (they sit beside the project in CI)"
)


def copy_builtin(tmp_path: Path) -> Path:
    folder = tmp_path / "suite"
    shutil.copytree(builtin_folder(), folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return folder


#: The splits of the paper's two benchmarks, the only ones the published files have.
PAPER_SPLITS = (*splits_of(CONFLICT_EDIT), *splits_of(ROUND_EDIT))


def test_builtin_suites_have_at_least_12_valid_cases_per_split_of_the_paper():
    suite = load_suite(None, SPLITS)
    for split in PAPER_SPLITS:
        entries = suite.splits[split]
        assert len(entries) >= 12, split
        assert not [e for e in entries if isinstance(e, DataError)], split
    assert len(suite.fingerprint) == 64


def test_builtin_suites_have_every_split_and_a_100_edit_stream_for_the_main_test_tier():
    suite = load_suite(None, SPLITS)
    assert list(suite.splits) == list(SPLITS)
    (stream,) = suite.splits["sequential"]
    assert isinstance(stream, StreamCase) and len(stream.edits) == 100
    assert 20 <= len(stream.locality) <= 50 and sum(map(len, stream.neighbourhood)) > 0
    assert len(" ".join(stream.held_out).split()) >= 200  # a few hundred tokens of plain text
    assert len({edit.relation.id for edit in stream.edits}) > 1


def test_builtin_relations_have_ten_paraphrases():
    suite = load_suite(None, SPLITS)
    for entries in suite.splits.values():
        for case in entries:
            if isinstance(case, StreamCase):
                relations = [e.relation for e in case.edits] + [f.relation for f in case.locality]
            else:
                relations = [e.relation for e in case.edits] if isinstance(case, ConflictCase) else [case.edit.relation]
            for relation in relations:
                assert len(relation.paraphrases) == 10, (case.case_id, relation.id)


@needs_upstream
@pytest.mark.parametrize(
    "model, counts", [("GPT2-XL", (2500, 2500, 2000, 2500, 2500)), ("GPT-J", (2500, 2500, 2500, 2500, 2500))]
)
def test_full_upstream_folders_load_without_errors(model, counts):
    suite = load_suite(str(UPSTREAM / model), SPLITS)
    assert tuple(len(suite.splits[s]) for s in PAPER_SPLITS) == counts and set(suite.splits) == set(PAPER_SPLITS)
    assert not [e for entries in suite.splits.values() for e in entries if isinstance(e, DataError)]
    composite = suite.splits["composite"][0]
    assert isinstance(composite, ConflictCase) and composite.tied_fact == composite.triples[0]
    e1, e2 = composite.edits
    assert (e1.subject, e2.subject) == (composite.tied_fact.object, composite.tied_fact.subject)
    round_case = suite.splits["easy"][0]
    assert isinstance(round_case, RoundCase) and round_case.edit.old not in round_case.others


def test_limit_keeps_the_first_cases_and_their_ids():
    suite = load_suite(None, ["reverse"], limit=3)
    assert [ident for ident, _ in suite.entries(["reverse"])] == ["reverse-0000", "reverse-0001", "reverse-0002"]


def test_bad_json_is_one_error_for_its_split_and_other_splits_still_load(tmp_path):
    folder = copy_builtin(tmp_path)
    (folder / SPLIT_FILES["reverse"]).write_text('[{"triples": ')
    suite = load_suite(str(folder), ["reverse", "coverage"])
    (ident, error), = suite.entries(["reverse"])
    assert ident == "reverse-invalid" and isinstance(error, DataError)
    assert "reverse_edit.json" in str(error) and "not valid JSON" in str(error)
    assert all(isinstance(c, ConflictCase) for c in suite.splits["coverage"])


def test_bad_record_names_file_record_and_field(tmp_path):
    folder = copy_builtin(tmp_path)
    path = folder / SPLIT_FILES["coverage"]
    records = json.loads(path.read_text())
    records[2]["edits"][1]["relation"]["prompt"] = "no placeholder here"
    del records[4]["edits"][0]["new_object"]
    path.write_text(json.dumps(records))
    entries = dict(load_suite(str(folder), ["coverage"]).entries(["coverage"]))
    bad_prompt, missing = entries["coverage-0002"], entries["coverage-0004"]
    assert isinstance(bad_prompt, DataError) and bad_prompt.record == 2 and bad_prompt.field == "edits[1].relation.prompt"
    assert isinstance(missing, DataError) and "record 4" in str(missing) and "edits[0].new_object" in str(missing)
    assert isinstance(entries["coverage-0003"], ConflictCase)


def test_round_record_whose_object_is_not_a_true_object_is_an_error(tmp_path):
    folder = copy_builtin(tmp_path)
    path = folder / SPLIT_FILES["easy"]
    records = json.loads(path.read_text())
    records[0]["edit"]["object"]["label"] = "Atlantis"
    path.write_text(json.dumps(records))
    error = load_suite(str(folder), ["easy"]).splits["easy"][0]
    assert isinstance(error, DataError) and error.field == "edit.object" and "Atlantis" in str(error)


def test_relation_without_paraphrases_is_a_record_error(tmp_path):
    folder = copy_builtin(tmp_path)
    prompts = json.loads((folder / "round_prompts.json").read_text())
    relation = json.loads((folder / SPLIT_FILES["hard"]).read_text())[0]["edit"]["relation"]["id"]
    del prompts[relation]
    (folder / "round_prompts.json").write_text(json.dumps(prompts))
    error = load_suite(str(folder), ["hard"]).splits["hard"][0]
    assert isinstance(error, DataError) and relation in str(error) and "round_prompts.json" in str(error)


def test_not_a_folder_and_unknown_split_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        load_suite(str(tmp_path / "nowhere"), SPLITS)
    with pytest.raises(ConfigError, match="holds none of"):
        load_suite(str(tmp_path), SPLITS)
    with pytest.raises(ConfigError, match="unknown split"):
        load_suite(None, ["reverse", "sideways"])
