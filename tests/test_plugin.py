"""The plugin as a pytest user meets it, run with pytester on a tiny local model."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

SUITES = Path(__file__).resolve().parents[1] / "suites"


@pytest.fixture
def project(kedit_project: Callable[..., pytest.Pytester]) -> pytest.Pytester:
    """A folder with the project's suites and an ini file pointing at the tiny model."""
    return kedit_project(kedit_limit=2)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:randomly", *args)


def table_rows(text: str) -> list[str]:
    """The method rows of Table 1 and Table 2."""
    return [line for line in text.splitlines() if re.match(r"\| ft +\|", line)]


@pytest.mark.slow
def test_help_lists_every_option_in_the_kedit_group(pytester: pytest.Pytester):
    result = run(pytester, "--help")
    text = result.stdout.str()
    group = text[text.index("knowledge-editing pitfalls benchmark") :]
    for option in ("model", "method", "hparams", "device", "dtype", "data", "split", "limit", "sample", "report", "seed",
                   "threshold", "distortion", "by-relation"):
        assert f"--kedit-{option}" in group
    assert "kedit_model (string)" in text and "kedit_threshold (args)" in text and "kedit_by_relation (bool)" in text


@pytest.mark.slow
def test_one_test_per_case_with_readable_ids(project: pytest.Pytester):
    result = run(project, "--collect-only", "-q")
    ids = re.findall(r"\[([a-z]+-\d{4})\]", result.stdout.str())
    assert ids == [f"{split}-{i:04d}" for split in ("coverage", "reverse", "composite") for i in range(2)] + [
        f"{split}-{i:04d}" for split in ("easy", "hard") for i in range(2)
    ]


@pytest.mark.slow
def test_ini_keys_and_command_line_choose_splits_and_limit(project: pytest.Pytester):
    result = run(project, "--collect-only", "-q", "--kedit-split=reverse,hard", "--kedit-limit=3")
    ids = re.findall(r"\[([a-z]+-\d{4})\]", result.stdout.str())
    assert ids == ["reverse-0000", "reverse-0001", "reverse-0002", "hard-0000", "hard-0001", "hard-0002"]


@pytest.mark.slow
def test_run_prints_both_tables_thresholds_and_timings_and_writes_the_report(project: pytest.Pytester, tmp_path: Path):
    report = tmp_path / "report"
    result = run(project, f"--kedit-report={report}", "--kedit-threshold=cs=off", "--kedit-threshold=cs_exp=off",
                 "--kedit-threshold=cs_imp=off", "--kedit-threshold=succ=off", "--kedit-threshold=fr=off", "--kedit-threshold=tfd=off")
    out = result.stdout.str()
    result.assert_outcomes(passed=10)
    assert "Table 1" in out and "Table 2" in out and "Single Succ" in out and "EASY Succ" in out
    assert "95% confidence intervals of Table 1" in out and "95% confidence intervals of Table 2" in out
    assert "Per relation" not in out  # only with --kedit-by-relation
    assert "model load" in out.lower() and "probe" in out.lower()
    assert {p.name for p in report.iterdir()} >= {"table1.md", "table2.md", "relations.md", "cases.jsonl", "summary.json"}
    records = [json.loads(line) for line in (report / "cases.jsonl").read_text().splitlines()]
    assert len(records) == 10 and all(r["outcome"] == "passed" and r["metrics"] for r in records)
    summary = json.loads((report / "summary.json").read_text())
    assert summary["method"] == "ft" and summary["hparams"]["num_steps"] == 3 and summary["data"]["fingerprint"]
    assert summary["distortion_scaling"] == "paper" and summary["versions"]["torch"]
    assert summary["sample"] is None and set(summary["intervals"]["splits"]["reverse"]) == {"cs_exp", "cs_imp", "cm"}


@pytest.mark.slow
def test_a_sample_is_stratified_seeded_and_the_same_in_every_worker(project: pytest.Pytester):
    args = ("--collect-only", "-q", "--kedit-split=reverse,easy", "--kedit-limit=18", "--kedit-sample=6", "--kedit-seed=3")
    ids = re.findall(r"\[([a-z]+-\d{4})\]", run(project, *args).stdout.str())
    assert len(ids) == 12 and ids == re.findall(r"\[([a-z]+-\d{4})\]", run(project, *args).stdout.str())
    assert [i for i in ids if i.startswith("reverse")] != [f"reverse-{i:04d}" for i in range(6)]
    other_seed = re.findall(r"\[([a-z]+-\d{4})\]", run(project, *args, "--kedit-seed=4").stdout.str())
    assert len(other_seed) == 12 and other_seed != ids
    pytest.importorskip("xdist")
    # xdist stops with "Different tests were collected" when workers disagree; -k runs nothing.
    parallel = run(project, "-n", "2", *args[2:], "-k", "no-such-case")
    assert parallel.ret == pytest.ExitCode.NO_TESTS_COLLECTED and "Different tests" not in parallel.stdout.str()


@pytest.mark.slow
def test_by_relation_prints_the_breakdown_and_the_summary_names_the_sample(project: pytest.Pytester, tmp_path: Path):
    report = tmp_path / "report"
    result = run(project, "--kedit-split=easy", "--kedit-limit=6", "--kedit-sample=2", "--kedit-by-relation",
                 f"--kedit-report={report}", "--kedit-threshold=succ=off", "--kedit-threshold=fr=off")
    out = result.stdout.str()
    result.assert_outcomes(passed=2, skipped=1)
    assert "stratified sample of 2 cases per split (by relation, seed 0)" in out
    assert "easy by relation" in out and "easy by arity (1-N: N true objects)" in out
    assert (report / "relations.md").read_text().startswith("Per relation")
    assert json.loads((report / "summary.json").read_text())["sample"] == {"size": 2, "seed": 0}


@pytest.mark.slow
def test_a_failing_threshold_names_the_metric_and_its_probabilities(project: pytest.Pytester):
    result = run(project, "--kedit-split=reverse", "--kedit-limit=1", "--kedit-threshold=cm>=2")
    result.assert_outcomes(failed=1, skipped=1)  # no RoundEdit split selected: its test has no cases
    result.stdout.re_match_lines([r".*CM = -?[\d.e-]+: p_θm\(k_o\)=[\d.e-]+, p_θ'\(k_o\)=[\d.e-]+ \(threshold CM >= 2\).*"])


@pytest.mark.slow
def test_xdist_gives_the_same_tables_as_a_serial_run(project: pytest.Pytester):
    """The records travel from the workers to the controller whole. The thread layouts differ (a
    worker gets its share of the cores), which on the tiny model moves no printed digit; on a real
    model it can move the last one (README)."""
    pytest.importorskip("xdist")
    args = ("--kedit-threshold=cs=off", "--kedit-limit=2")
    serial = table_rows(run(project, *args).stdout.str())
    parallel = table_rows(run(project, "-n", "2", *args).stdout.str())
    assert len(serial) == 4 and serial == parallel  # Table 1, Table 2 and their intervals


@pytest.mark.slow
def test_k_selects_cases_and_last_failed_reruns_only_failures(project: pytest.Pytester):
    result = run(project, "-k", "reverse", "--kedit-threshold=cs_imp>=2")
    result.assert_outcomes(failed=2)
    again = project.runpytest_subprocess("--lf", "--kedit-threshold=cs_imp>=2")
    again.assert_outcomes(failed=2, deselected=8) if "deselected" in again.stdout.str() else again.assert_outcomes(failed=2)
    stop = run(project, "-x", "--kedit-threshold=cm>=2")
    stop.assert_outcomes(failed=1)
    assert "stopping after 1 failures" in stop.stdout.str()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (("--kedit-split=sideways",), "kedit: --kedit-split: unknown"),
        (("--kedit-limit=zero",), "kedit: --kedit-limit: 'zero' is not a whole number"),
        (("--kedit-sample=0",), "kedit: --kedit-sample: must be at least 1, got 0"),
        (("--kedit-threshold=cs_imp>=x",), "is not a number"),
        (("--kedit-distortion=median",), "choose from paper, upstream"),
    ],
)
def test_bad_options_are_usage_errors(project: pytest.Pytester, args, message):
    result = run(project, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.slow
def test_unknown_method_stops_with_one_clear_message(project: pytest.Pytester):
    result = run(project, "--kedit-method=rmoe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    available = "alphaedit, alphaedit-mle, emmet, ft, memit, memit-mle, mend, r-rome, rome"
    assert f"unknown editing method 'rmoe'; available: {available}" in result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stdout.str()


@pytest.mark.slow
def test_unknown_model_says_what_was_tried(project: pytest.Pytester, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run(project, "--kedit-model=no-such-model-xyz", "--kedit-limit=1")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--kedit-model: 'no-such-model-xyz' is not in the Hugging Face cache" in out and "HF_HUB_OFFLINE is set" in out
    assert "embedded aliases: smollm2-135m" in out and "Traceback" not in out


@pytest.mark.slow
def test_hparams_typo_names_the_key(project: pytest.Pytester, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [1]\nnum_step: 3\n")
    result = run(project, f"--kedit-hparams={bad}")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{bad}: unknown hyper-parameter 'num_step'; did you mean 'num_steps'?" in out


@pytest.mark.slow
def test_a_bad_file_fails_its_split_only_and_a_bad_record_its_case(project: pytest.Pytester, tmp_path: Path):
    from pytest_kedit.dataset.sources import builtin_folder

    data = tmp_path / "data"
    data.mkdir()
    for path in builtin_folder().glob("*.json"):
        (data / path.name).write_text(path.read_text())
    (data / "reverse_edit.json").write_text("{ not json")
    records = json.loads((data / "easy.json").read_text())
    del records[1]["true_objects"]
    (data / "easy.json").write_text(json.dumps(records))
    result = run(project, f"--kedit-data={data}", "--kedit-split=reverse,coverage,easy", "--kedit-threshold=cs=off",
                 "--kedit-threshold=succ=off", "--kedit-threshold=fr=off", f"--kedit-report={tmp_path / 'report'}")
    out = result.stdout.str()
    result.assert_outcomes(passed=3, errors=2)  # bad data: errors of the tests' setup, not threshold failures
    assert "ERROR at setup of test_conflict_edit[reverse-invalid]" in out and "reverse_edit.json: not valid JSON" in out
    assert "easy.json, record 1, field 'true_objects': missing" in out
    assert "2 cases could not run: bad data" in out
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["outcomes"] == {"passed": 3, "failed": 0, "error": 2, "xfailed": 0}


@pytest.mark.slow
@pytest.mark.parametrize("option, content, message", [
    ("--kedit-method=nope", None, "unknown editing method 'nope'"),
    ("--kedit-hparams={file}", "layers: [1]\nnum_stepz: 3\n", "unknown hyper-parameter 'num_stepz'; did you mean 'num_steps'?"),
    ("--kedit-hparams={file}", b"\xff\xfe\x00\xd8 broken", "not valid YAML"),
    ("--kedit-hparams={file}", "layers: [1\n", "not valid YAML"),
    ("--kedit-model={file}", "not a folder", "has no config.json"),
    ("--kedit-model=/no/such/model/folder", None, "no folder /no/such/model/folder exists"),
    ("--kedit-device=cuda:7", None, "--kedit-device: device 'cuda:7' asked for"),
    ("--kedit-device=tpu", None, "unknown device 'tpu'"),
    ("--kedit-dtype=half", None, "unknown dtype 'half'"),
    ("--kedit-report={file}", "a file", "--kedit-report: "),
    ("--kedit-html={file}/report.html", "a file", "--kedit-html: cannot create"),
    ("--kedit-html={folder}", None, "--kedit-html: "),
    ("--kedit-threshold=cs>=nan", None, "not a finite number"),
    ("--kedit-split=composite", None, "--kedit-split: composite asked for"),
])
def test_collect_only_checks_every_option_and_file_before_any_model_loads(
    project: pytest.Pytester, tmp_path: Path, option: str, content: str | bytes | None, message: str
):
    file = tmp_path / "input"
    if isinstance(content, bytes):
        file.write_bytes(content)
    elif content is not None:
        file.write_text(content)
    args = ["--collect-only", option.format(file=file, folder=tmp_path)]
    if "split" in option:  # a data folder without the composite file
        data = tmp_path / "data"
        data.mkdir()
        for name in ("coverage_edit.json", "conflict_prompts.json"):
            (data / name).write_bytes((SUITES.parent / "data" / name).read_bytes())
        args.append(f"--kedit-data={data}")
    result = run(project, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.slow
def test_a_run_that_starts_no_case_leaves_the_previous_report_whole(project: pytest.Pytester, tmp_path: Path):
    report = tmp_path / "report"
    threshold_off = [f"--kedit-threshold={m}=off" for m in ("cs", "cs_exp", "cs_imp", "succ", "fr", "tfd")]
    run(project, f"--kedit-report={report}", "--kedit-split=reverse", "--kedit-limit=1", *threshold_off).assert_outcomes(
        passed=1, skipped=1)  # the RoundEdit test has no case to run
    before = {path.name: path.read_bytes() for path in report.iterdir()}
    assert json.loads(before["summary.json"])["complete"] is True
    run(project, f"--kedit-report={report}", "--collect-only")
    assert run(project, f"--kedit-report={report}", "--kedit-method=nope").ret == pytest.ExitCode.USAGE_ERROR
    assert {path.name: path.read_bytes() for path in report.iterdir()} == before


@pytest.mark.slow
def test_an_input_longer_than_the_context_is_an_error_of_its_case_only(project: pytest.Pytester, tmp_path: Path):
    from pytest_kedit.dataset.sources import builtin_folder

    data = tmp_path / "data"
    data.mkdir()
    for path in builtin_folder().glob("*.json"):
        (data / path.name).write_text(path.read_text())
    records = json.loads((data / "coverage_edit.json").read_text())
    records[1]["edits"][0]["new_object"]["label"] = "Paris " * 100  # the tiny model's context is 64
    (data / "coverage_edit.json").write_text(json.dumps(records))
    report = tmp_path / "report"
    result = run(project, f"--kedit-data={data}", "--kedit-split=coverage", "--kedit-threshold=cs=off",
                 f"--kedit-report={report}", "-rE")
    result.assert_outcomes(passed=1, errors=1, skipped=1)  # skipped: the RoundEdit test, without cases
    out = result.stdout.str()
    assert (f"{data / 'coverage_edit.json'}, record 1, field 'edits[0].new_object.label': the model input with it is "
            "110 tokens long; the model's context is 64") in out
    assert "1 case could not run: bad data" in out and "Traceback" not in out
    outcomes = {json.loads(line)["case_id"]: json.loads(line)["outcome"] for line in (report / "cases.jsonl").read_text().splitlines()}
    assert outcomes == {"coverage-0000": "passed", "coverage-0001": "error"}


@pytest.mark.slow
def test_under_xdist_a_bad_option_is_checked_by_the_controller_in_one_line(project: pytest.Pytester):
    result = run(project, "-n", "2", "--kedit-method=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: kedit: unknown editing method 'nope'" in result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()

