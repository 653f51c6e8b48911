"""``kedit check-data``: every finding of a dataset, with its file, record, field and kind."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from test_datasets import UPSTREAM, copy_builtin, needs_upstream

from pytest_kedit.benchmark.registry import CONFLICT_EDIT, ROUND_EDIT, SPLIT_NAMES
from pytest_kedit.cli.main import main
from pytest_kedit.dataset.check import check_data
from pytest_kedit.dataset.sources import builtin_folder, load_suite
from pytest_kedit.dataset.validation import Finding
from pytest_kedit.errors import DataError

CANDIDATES = Path(__file__).resolve().parents[1] / "scripts" / "builtin_candidates"


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def where(findings) -> list[tuple[str, int | None, str | None, str]]:
    return [(Path(f.file).name, f.record, f.field, f.kind) for f in findings]


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    """The built-in suites with exactly one problem of each kind (two schema errors, in two records)."""
    folder = copy_builtin(tmp_path)

    def coverage(records: list[Any]) -> None:
        del records[1]["edits"][0]["new_object"]
        records[3]["edits"] = records[3]["edits"][:1]

    def reverse(records: list[Any]) -> None:
        edit = records[2]["edits"][1]
        edit["relation"]["prompt"] = f"{edit['subject']['label']} is the capital of"

    def composite(records: list[Any]) -> None:
        records[0]["edits"][0]["relation"]["prompt"] = "The {{}} book was written by"

    def easy(records: list[Any]) -> None:
        records[4]["edit"]["new_object"]["label"] = "1989"

    def hard(records: list[Any]) -> None:
        records[1]["edit"]["new_object"]["label"] = " "
        records.append(records[0])

    def conflict_prompts(prompts: dict[str, Any]) -> None:
        prompts["P36"][3] = "The capital city is"

    def round_prompts(prompts: dict[str, Any]) -> None:
        prompts["P47"][0] = "{} borders {name}"

    changes = {"coverage_edit": coverage, "reverse_edit": reverse, "composite_edit": composite, "easy": easy,
               "hard": hard, "conflict_prompts": conflict_prompts, "round_prompts": round_prompts}
    for name, change in changes.items():
        edit_json(folder / f"{name}.json", change)
    return folder


def test_built_in_data_has_no_findings():
    assert check_data(str(builtin_folder())) == []


def test_each_kind_is_found_once_where_it_is(bad_folder: Path):
    hard_records = len(json.loads((bad_folder / "hard.json").read_text()))
    assert where(check_data(str(bad_folder))) == [
        ("conflict_prompts.json", None, "P36[3]", "placeholder"),
        ("coverage_edit.json", 1, "edits[0].new_object", "schema"),
        ("coverage_edit.json", 3, "edits", "schema"),
        ("reverse_edit.json", 2, "edits[1].relation.prompt", "placeholder"),
        ("composite_edit.json", 0, "edits[0].relation.prompt", "subject"),
        ("round_prompts.json", None, "P47[0]", "subject"),
        ("easy.json", 4, "edit.new_object.label", "label"),
        ("hard.json", 1, "edit.new_object.label", "label"),
        ("hard.json", hard_records - 1, "edit", "duplicate"),
    ]


def test_messages_say_what_is_wrong(bad_folder: Path):
    messages = {(Path(f.file).name, f.record): f.message for f in check_data(str(bad_folder))}
    subject = json.loads((bad_folder / "reverse_edit.json").read_text())[2]["edits"][1]["subject"]["label"]
    assert messages["coverage_edit.json", 1] == "missing"
    assert messages["coverage_edit.json", 3] == "expected 2 edits (e1, e2), got 1"
    assert f"the subject {subject!r} is written out: put '{{}}' in its place" in messages["reverse_edit.json", 2]
    assert messages["composite_edit.json", 0].startswith("prompt.format(subject) leaves the subject out")
    assert messages["round_prompts.json", None].startswith("prompt.format(subject) fails (KeyError: 'name')")
    assert messages["easy.json", 4] == "numeric-only label '1989'"
    assert messages["hard.json", 1] == "is empty"
    assert messages["conflict_prompts.json", None] == "has no '{}' for the subject: 'The capital city is'"


def first_errors(findings: Iterable[Finding]) -> set[tuple[str, int | None, str | None, str]]:
    """(file, record, field, message) of the first error found in each file (record None) and record."""
    first: dict[tuple[str, int | None], tuple[str, int | None, str | None, str]] = {}
    for f in findings:
        if not f.warning:
            first.setdefault((f.file, f.record), (f.file, f.record, f.field, f.message))
    return set(first.values())


def loader_errors(folder: Path) -> set[tuple[str, int | None, str | None, str]]:
    """(file, record, field, message) of every error the loader puts in place of a split or a case."""
    suite = load_suite(str(folder), SPLIT_NAMES)
    return {(e.path, e.record, e.field, e.message) for entries in suite.splits.values() for e in entries
            if isinstance(e, DataError)}


def test_the_loader_refuses_a_file_or_record_for_the_first_error_check_data_finds_there(bad_folder: Path):
    # Both paraphrase files are broken, so each split is the one error of its paraphrase file.
    assert loader_errors(bad_folder) == first_errors(f for f in check_data(str(bad_folder)) if f.record is None)
    for name in (CONFLICT_EDIT.prompts_file, ROUND_EDIT.prompts_file):  # the two broken ones
        shutil.copy(builtin_folder() / name, bad_folder / name)
    errors = loader_errors(bad_folder)
    assert errors == first_errors(check_data(str(bad_folder)))
    assert {(Path(file).name, record) for file, record, _, _ in errors} == {
        ("coverage_edit.json", 1), ("coverage_edit.json", 3), ("reverse_edit.json", 2), ("composite_edit.json", 0),
        ("hard.json", 1)}  # the warnings (a numeric label, a duplicate) leave their cases to run


def test_a_prompt_with_two_slots_is_a_placeholder_finding(tmp_path: Path):
    folder = copy_builtin(tmp_path)
    edit_json(folder / "easy.json", lambda records: records[0]["edit"]["relation"].update(prompt="{} and {} speak"))
    assert where(check_data(str(folder / "easy.json"))) == [("easy.json", 0, "edit.relation.prompt", "placeholder")]


def test_a_split_file_alone_is_checked_with_its_paraphrase_file(bad_folder: Path):
    assert where(check_data(str(bad_folder / "easy.json"))) == [
        ("round_prompts.json", None, "P47[0]", "subject"),
        ("easy.json", 4, "edit.new_object.label", "label"),
    ]


def test_a_missing_paraphrase_file_is_one_finding_and_the_records_are_still_checked(bad_folder: Path):
    (bad_folder / "round_prompts.json").unlink()
    assert where(check_data(str(bad_folder / "easy.json"))) == [
        ("round_prompts.json", None, None, "schema"),
        ("easy.json", 4, "edit.new_object.label", "label"),
    ]


def test_an_unreadable_split_is_one_file_level_finding(tmp_path: Path):
    folder = copy_builtin(tmp_path)
    (folder / "hard.json").write_text("[{")
    (finding,) = check_data(str(folder / "hard.json"))
    assert (finding.record, finding.field, finding.kind) == (None, None, "schema")
    assert str(finding).startswith(f"{folder / 'hard.json'}: not valid JSON")


def test_cli_prints_one_line_per_finding_then_the_summary_and_exits_1(bad_folder: Path, capsys):
    assert main(["check-data", str(bad_folder)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{bad_folder / 'conflict_prompts.json'}: P36[3]: has no '{{}}' for the subject: 'The capital city is'"
    assert lines[1] == f"{bad_folder / 'coverage_edit.json'}:record 1: edits[0].new_object: missing"
    assert lines[9:] == [
        "summary:",
        f"  {bad_folder / 'conflict_prompts.json'}: placeholder 1",
        f"  {bad_folder / 'coverage_edit.json'}: schema 2",
        f"  {bad_folder / 'reverse_edit.json'}: placeholder 1",
        f"  {bad_folder / 'composite_edit.json'}: subject 1",
        f"  {bad_folder / 'round_prompts.json'}: subject 1",
        f"  {bad_folder / 'easy.json'}: label 1",
        f"  {bad_folder / 'hard.json'}: label 1, duplicate 1",
        "9 findings in 7 files: 7 errors, 2 warnings",
    ]


def test_cli_exits_0_on_clean_data(capsys):
    assert main(["check-data", str(builtin_folder())]) == 0
    assert capsys.readouterr().out == f"no findings in {builtin_folder()}\n"


@pytest.mark.parametrize(
    "name, message",
    [("nowhere", "nowhere: no such file or folder"), ("notes.txt", "notes.txt: not a dataset file; expected one named"),
     ("empty", "empty: holds none of coverage_edit.json")],
)
def test_cli_usage_errors_exit_2_with_one_line(tmp_path: Path, capsys, name, message):
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "empty").mkdir()
    assert main(["check-data", str(tmp_path / name)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"kedit: error: {tmp_path / message}") and err.count("\n") == 1


def test_cli_without_a_path_is_a_usage_error(capsys):
    assert main(["check-data"]) == 2
    assert "kedit: error: the following arguments are required: PATH" in capsys.readouterr().err


@needs_upstream
@pytest.mark.parametrize("name", ["GPT2-XL", "GPT-J"])
def test_published_data_has_no_schema_or_prompt_findings(name):
    kinds = {f.kind for f in check_data(str(UPSTREAM / name))}
    assert kinds <= {"label", "duplicate"}


# --------------------------------------------------------------------------- warnings and --strict


def test_a_numeric_label_and_a_duplicate_are_warnings_that_pass_unless_strict(tmp_path: Path, capsys):
    folder = copy_builtin(tmp_path)
    edit_json(folder / "easy.json", lambda records: records[4]["edit"]["new_object"].update(label="1989"))
    edit_json(folder / "hard.json", lambda records: records.append(records[0]))
    assert [(f.kind, f.warning) for f in check_data(str(folder))] == [("label", True), ("duplicate", True)]
    assert main(["check-data", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{folder / 'easy.json'}:record 4: edit.new_object.label: warning: numeric-only label '1989'"
    assert lines[-1] == "2 findings in 2 files: 0 errors, 2 warnings"
    assert main(["check-data", "--strict", str(folder)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{folder / 'easy.json'}:record 4: edit.new_object.label: numeric-only label '1989'"
    assert lines[-1] == "2 findings in 2 files: 2 errors, 0 warnings"


@pytest.mark.parametrize("folder", [builtin_folder(), CANDIDATES], ids=["data", "candidates"])
def test_built_in_suites_and_their_candidates_pass_strict(folder: Path):
    assert check_data(str(folder), strict=True) == []


@pytest.fixture
def strict_folder(tmp_path: Path) -> Path:
    """The built-in suites with one problem that only --strict finds per record or file."""
    folder = copy_builtin(tmp_path)

    def coverage(records: list[Any]) -> None:
        records[0]["edits"][1]["object"] = dict(records[0]["edits"][1]["new_object"])  # e2 no longer starts at o2
        record = records[1]
        records[1] = {key: record[key] for key in ("type", "triples", "prerequisites", "edits")}
        records[2]["edits"][0]["relation"]["label"] = "capital city"  # P36 defined another way

    def reverse(records: list[Any]) -> None:
        records[0]["rule"] = "P36>P36"
        records[1]["edits"][0]["relation"]["prompt"] += " "

    def composite(records: list[Any]) -> None:
        records[0]["prerequisites"] = [1]

    def easy(records: list[Any]) -> None:
        records[0]["type"] = "1-2@P37"
        del records[12:]

    def round_prompts(prompts: dict[str, Any]) -> None:
        prompts["P47"][1] = prompts["P47"][0]
        prompts["P37"].pop()

    changes = {"coverage_edit": coverage, "reverse_edit": reverse, "composite_edit": composite, "easy": easy,
               "round_prompts": round_prompts}
    for name, change in changes.items():
        edit_json(folder / f"{name}.json", change)
    return folder


def test_strict_finds_layout_semantics_paraphrase_and_size_problems(strict_folder: Path):
    easy_cases = len(json.loads((strict_folder / "easy.json").read_text()))
    assert easy_cases == 12
    assert where(check_data(str(strict_folder))) == [("easy.json", 0, "type", "type")]  # found without --strict too
    edit_json(strict_folder / "easy.json", lambda records: records.pop())
    assert where(check_data(str(strict_folder), strict=True)) == [
        ("coverage_edit.json", 0, "edits[1]", "semantics"),
        ("coverage_edit.json", 1, None, "layout"),
        ("coverage_edit.json", 2, "edits[0].relation", "semantics"),
        ("reverse_edit.json", 0, "rule", "semantics"),
        ("reverse_edit.json", 1, "edits[0].relation.prompt", "layout"),
        ("reverse_edit.json", 1, "edits[0].relation", "semantics"),
        ("composite_edit.json", 0, "prerequisites", "semantics"),
        ("round_prompts.json", None, "P37", "paraphrases"),
        ("round_prompts.json", None, "P47", "paraphrases"),
        ("easy.json", 0, "type", "type"),
        ("easy.json", None, None, "size"),
    ]


def test_strict_messages_say_what_is_expected(strict_folder: Path):
    messages = {(Path(f.file).name, f.record, f.field): f.message for f in check_data(str(strict_folder), strict=True)}
    assert messages["coverage_edit.json", 1, None] == (
        "keys ['type', 'triples', 'prerequisites', 'edits'], expected ['triples', 'prerequisites', 'type', 'edits'] "
        "(the upstream schema, in order)"
    )
    assert messages["coverage_edit.json", 2, "edits[0].relation"] == (
        "relation P36 differs from its definition in coverage_edit.json record 0, triples[0].relation"
    )
    assert messages["reverse_edit.json", 0, "rule"] == "'P36>P36', expected 'P36>P1376'"
    assert messages["round_prompts.json", None, "P47"] == "9 distinct paraphrases in 10, expected 10 distinct"
    assert messages["round_prompts.json", None, "P37"] == "9 distinct paraphrases in 9, expected 10 distinct"
    assert messages["easy.json", 0, "type"] == "'1-2@P37' says 2 true objects, the record has 4"


def test_strict_wants_every_split_file(tmp_path: Path, capsys):
    folder = copy_builtin(tmp_path)
    (folder / "hard.json").unlink()
    assert check_data(str(folder)) == []
    assert main(["check-data", "--strict", str(folder)]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"{folder / 'hard.json'}: missing: a strict suite has every split file"


# -- type, length, empty true objects (issue 11) --------------------------------------------------


def test_a_type_that_contradicts_its_file_is_a_type_finding(tmp_path: Path):
    folder = copy_builtin(tmp_path)
    edit_json(folder / "coverage_edit.json", lambda records: records[3].update(type="reverse"))
    easy = json.loads((folder / "easy.json").read_text())
    count, relation = len(easy[2]["true_objects"]), easy[2]["edit"]["relation"]["id"]

    def retype(records: list[Any]) -> None:
        records[0]["type"] = "reverse"
        records[1]["type"] = f"1-{len(records[1]['true_objects']) + 1}@{records[1]['edit']['relation']['id']}"
        records[2]["type"] = f"1-{count}@P9999"

    edit_json(folder / "easy.json", retype)
    findings = check_data(str(folder))
    assert where(findings) == [("coverage_edit.json", 3, "type", "type"), ("easy.json", 0, "type", "type"),
                               ("easy.json", 1, "type", "type"), ("easy.json", 2, "type", "type")]
    messages = [f.message for f in findings]
    assert messages[0] == "'reverse' contradicts coverage_edit.json: its records have type 'coverage'"
    assert messages[1].startswith("'reverse' contradicts easy.json: this record's type is '1-")
    assert "true objects, the record has" in messages[2]
    assert messages[3] == f"'1-{count}@P9999' says relation P9999, the edit's is {relation}"


def test_an_empty_true_object_list_is_reported_as_exactly_that(tmp_path: Path):
    folder = copy_builtin(tmp_path)
    edit_json(folder / "hard.json", lambda records: records[0].update(true_objects=[]))
    findings = [f for f in check_data(str(folder / "hard.json")) if f.kind == "schema"]
    assert [(f.record, f.field, f.message) for f in findings] == [
        (0, "true_objects", "is empty: a RoundEdit case needs the edited object and at least one other")]


def test_max_tokens_without_a_model_bounds_the_bytes_of_each_model_input(tmp_path: Path, capsys):
    folder = copy_builtin(tmp_path)
    edit_json(folder / "coverage_edit.json", lambda records: records[1]["edits"][0]["new_object"].update(label="x" * 40_000))
    assert main(["check-data", str(folder), "--max-tokens", "2048"]) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "record 1" in line]
    assert line.startswith(f"{folder / 'coverage_edit.json'}:record 1: edits[0].new_object.label: the model input with it is")
    assert "UTF-8 bytes long; --max-tokens (without --model, a bound on bytes) is 2048" in line
    assert main(["check-data", str(builtin_folder()), "--max-tokens", "2048"]) == 0


def test_with_a_model_the_limit_is_its_context_counted_with_its_tokenizer(tmp_path: Path, tiny_model_dir: Path, capsys):
    folder = copy_builtin(tmp_path)
    record = json.loads((folder / "easy.json").read_text())[2]
    other = next(i for i, o in enumerate(record["true_objects"]) if o["label"] != record["edit"]["object"]["label"])
    edit_json(folder / "easy.json", lambda records: records[2]["true_objects"][other].update(label="Paris " * 70))
    assert main(["check-data", str(folder / "easy.json"), "--model", str(tiny_model_dir)]) == 1
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "record 2" in line]
    assert re.search(rf"true_objects\[{other}\]\.label: the model input with it is 7\d tokens long; "
                     f"{re.escape(str(tiny_model_dir))}'s context is 64$", line)
    assert main(["check-data", str(folder / "easy.json"), "--model", str(tiny_model_dir), "--max-tokens", "1000"]) == 0


def test_a_model_whose_tokenizer_cannot_be_read_is_one_line(tmp_path: Path, capsys):
    assert main(["check-data", str(builtin_folder()), "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kedit: error: --model: cannot read the tokenizer of {str(tmp_path)!r}") and err.count("\n") == 1
