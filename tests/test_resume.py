"""--kedit-resume: what a report folder keeps of an interrupted run, and continuing it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_kedit.errors import ConfigError
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import RUN_FILE, CaseLog, ReportError
from pytest_kedit.run.resume import check_resume, merged, read_previous

SUITES = Path(__file__).resolve().parents[1] / "suites"
PROVENANCE = {"model": "tiny", "model_fingerprint": "local:x@1", "method": "ft", "data_fingerprint": "d",
              "hparams": {"lr": 0.01, "layers": [1]}, "editor_fingerprint": None, "seed": 0, "distortion_scaling": "paper", "protocol": "paper",
              "protocol_version": 1, "probe_version": 2, "package_version": "0.1.0", "thresholds": ["cs>=1"],
              "data_files": {"coverage_edit.json": "d" * 64}}


def record(case_id: str, outcome: str = "passed", **fields: Any) -> CaseRecord:
    return CaseRecord(case_id=case_id, split=case_id.split("-")[0], relation="P36", arity=None, model="tiny",
                      method="ft", outcome=outcome, metrics={"cs": 1.0} if outcome != "error" else {},
                      error="bad" if outcome == "error" else None, **fields)


def write_log(folder: Path, records: list[CaseRecord], provenance: dict[str, Any] | None = PROVENANCE) -> None:
    with CaseLog(folder) as log:
        for item in records:
            log.append(item, provenance)


def test_a_missing_or_empty_folder_has_nothing_to_resume(tmp_path: Path):
    assert read_previous(tmp_path / "nope").records == {}
    (tmp_path / "cases.jsonl").write_text("")
    previous = read_previous(tmp_path)
    assert previous.provenance is None and previous.reusable("coverage-0000") is None
    previous.check({"model": "anything"})  # nothing recorded: any run may continue the folder


def test_recorded_cases_are_reused_except_errors(tmp_path: Path):
    write_log(tmp_path, [record("coverage-0000"), record("coverage-0001", "error"), record("reverse-0000", "failed")])
    previous = read_previous(tmp_path)
    assert previous.provenance == PROVENANCE
    assert previous.reusable("coverage-0000") == record("coverage-0000")
    assert previous.reusable("reverse-0000") is not None
    assert previous.reusable("coverage-0001") is None and previous.reusable("easy-0000") is None
    reused = previous.reusable("coverage-0000")
    assert reused is not None
    reused.nodeid = "changed"
    assert previous.records["coverage-0000"].nodeid is None  # a copy


def test_a_line_cut_short_by_a_kill_is_dropped_and_appending_goes_on_after_it(tmp_path: Path):
    write_log(tmp_path, [record("coverage-0000")])
    cases = tmp_path / "cases.jsonl"
    cases.write_text(cases.read_text() + record("coverage-0001").to_json()[:40])
    assert list(read_previous(tmp_path).records) == ["coverage-0000"]
    with CaseLog(tmp_path, resume=True) as log:
        log.append(record("coverage-0001"), PROVENANCE)
    assert [json.loads(line)["case_id"] for line in cases.read_text().splitlines()] == ["coverage-0000", "coverage-0001"]


def test_a_bad_line_in_the_middle_names_the_file_and_line(tmp_path: Path):
    (tmp_path / "cases.jsonl").write_text('{"case_id": 3}\n' + record("coverage-0000").to_json() + "\n")
    (tmp_path / RUN_FILE).write_text(json.dumps({"provenance": PROVENANCE}))
    with pytest.raises(ReportError, match=r"cases.jsonl, line 1: field 'case_id'"):
        read_previous(tmp_path)


def test_the_last_record_of_a_case_wins(tmp_path: Path):
    write_log(tmp_path, [record("coverage-0000", "error"), record("coverage-0000")])
    assert read_previous(tmp_path).reusable("coverage-0000") == record("coverage-0000")


def test_provenance_comes_from_run_json_else_the_folder_is_refused(tmp_path: Path):
    write_log(tmp_path, [record("coverage-0000")])
    (tmp_path / RUN_FILE).unlink()
    with pytest.raises(ReportError, match="cases.jsonl has cases but no run.json says how they were made"):
        read_previous(tmp_path)
    (tmp_path / RUN_FILE).write_text("[1]")
    with pytest.raises(ReportError, match="run.json: must be a JSON object"):
        read_previous(tmp_path)


@pytest.mark.parametrize("field, value, message", [
    ("hparams", {"lr": 0.5, "layers": [1]}, "hparams.lr: 0.01 recorded, 0.5 now"),
    ("thresholds", ["cs>=0.5"], "thresholds: ['cs>=1'] recorded, ['cs>=0.5'] now"),
    ("model_fingerprint", "local:x@2", "model_fingerprint: 'local:x@1' recorded, 'local:x@2' now"),
    ("seed", 1, "seed: 0 recorded, 1 now"),
])
def test_a_different_run_is_refused_in_one_line_naming_the_difference(tmp_path: Path, field: str, value: Any,
                                                                       message: str):
    write_log(tmp_path, [record("coverage-0000")])
    with pytest.raises(ConfigError) as error:
        read_previous(tmp_path).check({**PROVENANCE, field: value})
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(tmp_path) in str(error.value)


def test_before_the_model_loads_only_the_fields_the_options_give_are_compared(tmp_path: Path):
    write_log(tmp_path, [record("coverage-0000")])
    previous = read_previous(tmp_path)
    unloaded = {**PROVENANCE, "model_fingerprint": None, "hparams": {}}
    check_resume(previous, unloaded)
    with pytest.raises(ConfigError, match=r"data_fingerprint: coverage_edit.json differs \(sha256 d{12} recorded, e{12} now\)"):
        check_resume(previous, {**unloaded, "data_files": {"coverage_edit.json": "e" * 64}})
    check_resume(read_previous(tmp_path / "nothing"), {})


def test_a_fresh_run_replaces_run_json_and_a_resumed_run_keeps_it(tmp_path: Path):
    write_log(tmp_path, [record("coverage-0000")])
    with CaseLog(tmp_path, resume=True) as log:
        log.append(record("coverage-0001"), {**PROVENANCE, "seed": 9})
    assert json.loads((tmp_path / RUN_FILE).read_text())["provenance"] == PROVENANCE
    with CaseLog(tmp_path) as log:
        log.append(record("coverage-0002"), {**PROVENANCE, "seed": 9})
    assert json.loads((tmp_path / RUN_FILE).read_text())["provenance"]["seed"] == 9
    assert len((tmp_path / "cases.jsonl").read_text().splitlines()) == 1


def test_the_records_of_a_resumed_run_are_this_sessions_then_the_others():
    previous = {"coverage-0000": record("coverage-0000"), "coverage-0001": record("coverage-0001", "error")}
    again = record("coverage-0001")
    assert merged(previous, [again]) == [again, record("coverage-0000")]


def test_resume_needs_a_report_folder(pytester: pytest.Pytester):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess("--kedit-resume", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--kedit-resume: continues the run in a report folder; give --kedit-report=DIR too" in result.stderr.str()


# -- real runs, interrupted with SIGINT ---------------------------------------------------------

PACE = """
import os, signal, time
import pytest

finished = []

@pytest.fixture(autouse=True)
def pace():
    yield
    finished.append(True)
    if len(finished) == int(os.environ.get("KEDIT_TEST_SIGNAL_AFTER", "0")):
        signal.raise_signal(signal.Signals[os.environ["KEDIT_TEST_SIGNAL"]])
    time.sleep(float(os.environ.get("KEDIT_TEST_PACE", "0")))
"""


def make_project(tmp_path: Path, tiny_model_dir: Path, tiny_ft_hparams: Path) -> Path:
    """The project's suites, a conftest that can slow each test down (so that an interrupt lands
    between cases), and an ini file pointing at the tiny model."""
    folder = tmp_path / "project"
    folder.mkdir()
    for suite in SUITES.glob("test_*_edit.py"):  # the paper's suites
        (folder / suite.name).write_text(suite.read_text())
    (folder / "conftest.py").write_text(PACE)
    (folder / "pytest.ini").write_text(f"[pytest]\nkedit_model = {tiny_model_dir}\nkedit_hparams = {tiny_ft_hparams}\n"
                                       "kedit_limit = 2\n")
    return folder


@pytest.fixture
def project(tmp_path: Path, tiny_model_dir: Path, tiny_ft_hparams: Path) -> Path:
    return make_project(tmp_path, tiny_model_dir, tiny_ft_hparams)


def pytest_command(report: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q",
            f"--kedit-report={report}", *args]


def run_env(cache: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "KEDIT_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", **extra}


def _interruptible() -> None:
    """In the child, before exec: a session of its own (so that SIGINT reaches its xdist workers
    too), and SIGINT's default action. A process started in the background by a non-interactive
    shell (``cmd &``, nohup, some CI runners) inherits SIGINT as ignored, and Python then never
    raises KeyboardInterrupt: the run would finish instead of stopping."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_cases(process: subprocess.Popen[Any], report: Path, count: int) -> None:
    """Wait until ``report``'s cases.jsonl holds ``count`` lines, the run ended, or 300 s passed."""
    cases = report / "cases.jsonl"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if cases.is_file() and len(cases.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)


def signal_after_two_cases(name: str) -> dict[str, str]:
    """The environment in which the project's conftest raises signal ``name`` in the run's own
    main thread once its second case has ended (a serial run: the signal lands at the same point
    in every run, whatever the machine's load)."""
    return {"KEDIT_TEST_SIGNAL": name, "KEDIT_TEST_SIGNAL_AFTER": "2"}


def interrupt_after_two_cases(project: Path, report: Path, cache: Path, *args: str) -> None:
    """Run the suites and press Ctrl-C once two cases are in cases.jsonl. Under pytest-xdist,
    SIGINT goes to the process group, as a terminal sends it; a serial run raises it in its own
    main thread after its second case, so that the interrupt lands at the same point in every run."""
    output = report.with_name(f"{report.name}.out")
    serial = "-n" not in args
    env = run_env(cache, KEDIT_TEST_PACE="1", **(signal_after_two_cases("SIGINT") if serial else {}))
    with output.open("wb") as sink:
        process = subprocess.Popen(pytest_command(report, *args), cwd=project, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT, preexec_fn=_interruptible)
    if not serial:
        wait_for_cases(process, report, 2)
        os.killpg(process.pid, signal.SIGINT)
    status = process.wait(timeout=300)
    text = output.read_text(errors="replace")
    assert status == pytest.ExitCode.INTERRUPTED, text[:3000] + "\n[...]\n" + text[-3000:]


def case_set(report: Path) -> set[str]:
    """The records of cases.jsonl without their timings, as comparable lines."""
    lines = set()
    for line in (report / "cases.jsonl").read_text().splitlines():
        data = json.loads(line)
        del data["timings"]
        lines.add(json.dumps(data, sort_keys=True))
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(project: Path, tmp_path: Path, workers: tuple[str, ...]):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    subprocess.run(pytest_command(whole, *workers), cwd=project, env=run_env(tmp_path / "cache-whole"),
                   capture_output=True, check=False)
    assert json.loads((whole / "summary.json").read_text())["complete"] is True

    interrupt_after_two_cases(project, resumed, tmp_path / "cache-resumed", *workers)
    partial = json.loads((resumed / "summary.json").read_text())
    assert partial["complete"] is False and partial["cases_done"] < partial["cases_expected"] == 10
    assert f"partial: {partial['cases_done']} of 10 cases" in (resumed / "table1.md").read_text()

    result = subprocess.run(pytest_command(resumed, "--kedit-resume", *workers), cwd=project,
                            env=run_env(tmp_path / "cache-resumed"), capture_output=True, text=True, check=False)
    assert f"resumed {resumed}: {partial['cases_done']} cases reported from their records" in result.stdout
    assert case_set(resumed) == case_set(whole)
    for table in ("table1.md", "table2.md", "relations.md"):
        assert (resumed / table).read_text() == (whole / table).read_text()
    summary = json.loads((resumed / "summary.json").read_text())
    assert (summary["complete"], summary["cases_done"], summary["cases_expected"]) == (True, 10, 10)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_resuming_with_other_hparams_is_refused_and_the_folder_is_left_as_it_was(project: Path, tmp_path: Path,
                                                                                 workers: tuple[str, ...]):
    report, cache = tmp_path / "report", tmp_path / "cache"
    subprocess.run(pytest_command(report, "--kedit-split=coverage"), cwd=project, env=run_env(cache),
                   capture_output=True, check=False)
    before = {path.name: path.read_bytes() for path in report.iterdir()}
    other = tmp_path / "other.yaml"
    other.write_text("layers: [1]\nnum_steps: 4\nlr: 1.0e-2\n")
    result = subprocess.run(pytest_command(report, "--kedit-split=coverage", "--kedit-resume", f"--kedit-hparams={other}",
                                           *workers), cwd=project, env=run_env(cache), capture_output=True, text=True,
                            check=False)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "holds a different run (hparams.num_steps: 3 recorded, 4 now)" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert {path.name: path.read_bytes() for path in report.iterdir()} == before
    # and known from the options alone, before any model loads: another seed
    result = subprocess.run(pytest_command(report, "--kedit-split=coverage", "--kedit-resume", "--kedit-seed=1",
                                           "--collect-only"), cwd=project, env=run_env(cache), capture_output=True,
                            text=True, check=False)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: kedit: --kedit-resume: " in result.stderr and "(seed: 0 recorded, 1 now)" in result.stderr
