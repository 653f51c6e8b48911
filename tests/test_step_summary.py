"""GitHub's job summary: a run appends its tables and gates to the file GITHUB_STEP_SUMMARY names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_kedit.ci.step_summary import STEP_SUMMARY_VARIABLE, append_step_summary, run_markdown
from pytest_kedit.errors import KeditError


def test_nothing_is_written_outside_github_actions(tmp_path: Path) -> None:
    assert append_step_summary("# x", {}) is None
    assert append_step_summary("# x", {STEP_SUMMARY_VARIABLE: ""}) is None
    assert not list(tmp_path.iterdir())


def test_markdown_is_appended_after_what_earlier_steps_wrote(tmp_path: Path) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("# build\n\n")
    environ = {STEP_SUMMARY_VARIABLE: str(summary)}
    assert append_step_summary(run_markdown("kedit: m × ft", ["Table 1\n\n| a |\n|---|\n| 1 |"]), environ) == summary
    append_step_summary(run_markdown("kedit: m × rome", ["T1", "T2"], "Gates: all 1 gates held"), environ)
    assert summary.read_text() == ("# build\n\n## kedit: m × ft\n\nTable 1\n\n| a |\n|---|\n| 1 |\n\n"
                                   "## kedit: m × rome\n\nT1\n\nT2\n\nGates: all 1 gates held\n\n")


def test_a_summary_file_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(KeditError, match=rf"^{STEP_SUMMARY_VARIABLE}=.*: cannot append the job summary"):
        append_step_summary("x", {STEP_SUMMARY_VARIABLE: str(tmp_path)})  # a folder


@pytest.mark.slow
def test_a_run_appends_its_tables_and_gates_to_the_job_summary(kedit_project: Callable[..., pytest.Pytester], tiny_model_dir: Path,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester = kedit_project(kedit_split="reverse", kedit_limit=1)
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv(STEP_SUMMARY_VARIABLE, str(summary))
    result = pytester.runpytest_subprocess("--kedit-threshold=cs_exp=off", "--kedit-threshold=cs_imp=off",
                                           "--kedit-shard=1/2", "--kedit-gate=reverse.cs_exp>=0")
    result.assert_outcomes(passed=1, skipped=1)
    text = summary.read_text()
    assert text.startswith(f"## kedit: {tiny_model_dir} × ft (shard 1/2)\n\nTable 1: Knowledge Conflict")
    assert "95% confidence intervals of Table 1" in text and "Table 2" not in text  # only the splits that ran
    assert "Gates: all 1 gates held" in text and "`reverse.cs_exp>=0`" in text
    monkeypatch.delenv(STEP_SUMMARY_VARIABLE)
    pytester.runpytest_subprocess("--kedit-threshold=cs_exp=off", "--kedit-threshold=cs_imp=off")
    assert summary.read_text() == text  # unset: nothing appended
