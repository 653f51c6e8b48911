"""The data fingerprint per file: a baseline made on every split matches a run of some of them on
the same data, and a changed record is named by its file (baseline, resume); end to end, a
baseline of all splits gates a --kedit-split=reverse run of a tiny model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from run_summaries import run_summary

from pytest_kedit.benchmark.registry import PROMPT_FILES, SPLITS
from pytest_kedit.ci.baseline import Baseline, baseline_difference, mismatch_message
from pytest_kedit.dataset.sources import SPLIT_FILES, builtin_folder, load_suite
from pytest_kedit.errors import ConfigError
from pytest_kedit.results.provenance import PROVENANCE_FIELDS, run_difference
from pytest_kedit.results.summary import RunData
from pytest_kedit.run.resume import PreviousRun


def data_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(builtin_folder(), folder, ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__"))
    return folder


def run_provenance(data: Path, splits: tuple[str, ...]) -> dict[str, Any]:
    suite = load_suite(str(data), splits)
    return run_summary(data=RunData(suite.source, suite.fingerprint, suite.files)).provenance()


def change_a_record(path: Path) -> None:
    records = json.loads(path.read_text())
    records[0], records[1] = records[1], records[0]
    path.write_text(json.dumps(records, indent=2))


def test_a_suite_fingerprints_each_file_it_reads(tmp_path: Path) -> None:
    data = data_copy(tmp_path)
    whole = load_suite(str(data), tuple(SPLITS))
    assert set(whole.files) == {name for name in (*SPLIT_FILES.values(), *PROMPT_FILES) if (data / name).is_file()}
    reverse = load_suite(str(data), ("reverse",), limit=2)
    assert reverse.files == {name: whole.files[name] for name in ("reverse_edit.json", "conflict_prompts.json")}
    assert reverse.fingerprint != whole.fingerprint  # the overall fingerprint still covers what was read


def test_a_run_of_some_splits_matches_a_baseline_of_all_and_a_changed_file_is_named(tmp_path: Path) -> None:
    data = data_copy(tmp_path)
    recorded = run_provenance(data, tuple(SPLITS))
    baseline = Baseline(tmp_path / "b.json", recorded, {})
    assert baseline_difference(baseline, run_provenance(data, ("reverse",))) is None
    assert baseline_difference(baseline, run_provenance(data, ("easy", "hard"))) is None
    change_a_record(data / "easy.json")
    assert baseline_difference(baseline, run_provenance(data, ("reverse",))) is None  # easy.json is not read
    difference = baseline_difference(baseline, run_provenance(data, ("easy", "reverse")))
    assert difference is not None and difference.startswith("data_fingerprint: easy.json differs (sha256 ")
    message = mismatch_message(baseline, difference)
    assert "easy.json differs" in message and message.endswith("--kedit-baseline-ignore=data_fingerprint")
    assert baseline_difference(baseline, run_provenance(data, ("easy",)), ["data_fingerprint"]) is None


def test_runs_that_read_no_file_in_common_agree_on_the_data() -> None:
    assert run_difference({"data_fingerprint": "abc", "data_files": {"x.json": "1"}},
                          {"data_fingerprint": "def", "data_files": {"y.json": "2"}}, PROVENANCE_FIELDS) is None


def test_resuming_compares_the_files_both_runs_read(tmp_path: Path) -> None:
    data = data_copy(tmp_path)
    previous = PreviousRun(tmp_path, run_provenance(data, tuple(SPLITS)))
    previous.check(run_provenance(data, ("reverse",)), ["data_fingerprint"])
    change_a_record(data / "reverse_edit.json")
    with pytest.raises(ConfigError, match=r"holds a different run \(data_fingerprint: reverse_edit\.json differs"):
        previous.check(run_provenance(data, ("reverse",)), ["data_fingerprint"])


# --- end to end, on a tiny model --------------------------------------------------------------

@pytest.mark.slow
def test_a_baseline_of_all_splits_gates_a_run_of_one_and_a_changed_record_is_named(
        kedit_project: Callable[..., pytest.Pytester], tmp_path: Path) -> None:
    data = data_copy(tmp_path)
    pytester = kedit_project(kedit_data=data, kedit_limit=2)
    args = ("-p", "no:randomly", "-p", "no:cacheprovider")
    updated = pytester.runpytest_subprocess(*args, "--kedit-baseline-update")
    assert updated.ret == pytest.ExitCode.OK, updated.stdout.str()
    reverse = pytester.runpytest_subprocess(*args, "--kedit-baseline", "--kedit-split=reverse")
    assert reverse.ret == pytest.ExitCode.OK, reverse.stdout.str() + reverse.stderr.str()
    assert "baseline .kedit/baselines/" in reverse.stdout.str() and "regressed" not in reverse.stdout.str()
    change_a_record(data / "reverse_edit.json")
    changed = pytester.runpytest_subprocess(*args, "--kedit-baseline", "--kedit-split=reverse")
    assert changed.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = [line for line in changed.errlines + changed.outlines if "does not match this run" in line]
    assert "data_fingerprint: reverse_edit.json differs (sha256 " in line
    assert "--kedit-baseline-ignore=data_fingerprint" in line
