"""Every ``kedit`` subcommand ends a user error in one line, and stops quietly on a closed pipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from run_summaries import run_summary

from pytest_kedit.cli.main import BROKEN_PIPE, main
from pytest_kedit.dataset import check as data_check
from pytest_kedit.dataset.sources import builtin_folder
from pytest_kedit.errors import ConfigError
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import write_report


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("kedit: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def report_folder(folder: Path) -> Path:
    record = CaseRecord(case_id="coverage-0000", split="coverage", relation="P36", arity=None, model="m", method="ft",
                        metrics={"single_succ": 1.0, "cs": 1.0, "cm": 0.5})
    write_report(folder, run_summary(), [record] * 200)
    return folder


def test_report_on_a_file_says_it_is_a_file(tmp_path: Path, capsys):
    (tmp_path / "file").write_text("x")
    assert "file: a file, not a report directory" in one_line_error(capsys, "report", str(tmp_path / "file"))


def test_train_mend_names_its_own_options(tmp_path: Path, capsys):
    err = one_line_error(capsys, "train-mend", "--model", "m", "--from", "builtin", "--out", str(tmp_path))
    assert "--from: builtin is not a folder" in err
    err = one_line_error(capsys, "train-mend", "--model", "m", "--from", str(builtin_folder()), "--out", str(tmp_path),
                         "--evaluated-data", str(tmp_path / "nope"))
    assert f"--evaluated-data: {tmp_path / 'nope'} is not a folder" in err
    err = one_line_error(capsys, "train-mend", "--model", "m", "--from", "x", "--out", "y", "--max-minutes", "nan")
    assert "argument --max-minutes: expected a finite number greater than 0, got nan" in err


@pytest.mark.parametrize("argv, message", [
    (("--max-tokens", "0"), "argument --max-tokens: expected a whole number of at least 1, got 0"),
    (("--max-tokens", "many"), "argument --max-tokens: invalid integer >= 1 value: 'many'"),
])
def test_check_data_length_options(capsys, argv: tuple[str, ...], message: str):
    assert message in one_line_error(capsys, "check-data", str(builtin_folder()), *argv)


def test_a_message_of_several_lines_is_printed_on_one(monkeypatch: pytest.MonkeyPatch, capsys):
    def fail(*args: object, **kwargs: object) -> None:
        raise ConfigError("cannot load model 'x'; tried, in order:\n  - embedded alias: no\n  - local directory: no")

    monkeypatch.setattr(data_check, "check_data", fail)
    err = one_line_error(capsys, "check-data", "somewhere")
    assert err == "kedit: error: cannot load model 'x'; tried, in order: - embedded alias: no - local directory: no\n"


@pytest.mark.slow
@pytest.mark.parametrize("argv", [("report", "{run}", "--by-relation"), ("check-data", "{bad}"), ("metrics",)],
                         ids=["report", "check-data", "metrics"])
def test_a_closed_pipe_ends_quietly(tmp_path: Path, argv: tuple[str, ...]):
    run = report_folder(tmp_path / "run")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "coverage_edit.json").write_text("[" + ",".join(["{}"] * 3000) + "]")  # many findings
    command = [sys.executable, "-c", "from pytest_kedit.cli.main import main; raise SystemExit(main())",
               *(arg.format(run=run, bad=bad) for arg in argv)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before anything is written, as with `| head -0`
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == BROKEN_PIPE
    assert err == ""
