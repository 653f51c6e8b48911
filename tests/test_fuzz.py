"""Fuzzing the inputs a user hands over: benchmark records and report folders, mutated at random.

Whatever a record becomes (a field dropped, retyped, emptied, a very long or unusual unicode
string, nested junk) or however a file is cut short, ``kedit check-data``, pytest's collection
and ``kedit report`` answer without a traceback, name the file and the record (or line), and keep
the good cases of the same folder. The fast tests only collect; the slow one runs a good case.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from run_summaries import run_summary

from pytest_kedit.cli.main import main
from pytest_kedit.dataset.sources import SPLIT_FILES, builtin_folder, load_suite
from pytest_kedit.errors import DataError
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import write_report

SUITES = Path(__file__).resolve().parents[1] / "suites"
#: Records 0..LIMIT-1 of each split take part: the fuzzed record is one of them.
LIMIT = 3
FAST = settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

JUNK: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
REPLACEMENTS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([None, 0, -1, 1.5, True, "", " ", [], {}, "{}", "{} {}", "{0}"]),
    st.text(min_size=1, max_size=30),  # any unicode, surrogates excluded by JSON
    st.integers(min_value=2_000, max_value=50_000).map(lambda n: "x" * n),
    JUNK,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path inside a JSON value."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield (*prefix, i)
            yield from paths(child, (*prefix, i))


def mutate(value: Any, path: tuple[Any, ...], how: str, replacement: Any) -> None:
    """Drop, or replace, the field at ``path`` in ``value``."""
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if how == "drop":
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement


@st.composite
def broken_folders(draw: st.DrawFn) -> tuple[str, int | None, dict[str, bytes]]:
    """(split file, index of the fuzzed record or None for a file cut short, every data file's bytes)."""
    files = {path.name: path.read_bytes() for path in builtin_folder().glob("*.json") if path.name != "manifest.json"}
    name = draw(st.sampled_from(sorted(name for name in SPLIT_FILES.values() if name in files)))
    if draw(st.integers(0, 9)) == 0:
        raw = files[name]
        files[name] = raw[: draw(st.integers(1, len(raw) - 1))]
        return name, None, files
    records = json.loads(files[name])
    index = draw(st.integers(0, min(LIMIT, len(records)) - 1))
    path = draw(st.sampled_from([(index, *p) for p in paths(records[index])] + [(index,)]))
    how = "replace" if len(path) == 1 else draw(st.sampled_from(["drop", "replace"]))
    mutate(records, path, how, draw(REPLACEMENTS))
    files[name] = json.dumps(records).encode()
    return name, index, files


@contextlib.contextmanager
def folder_of(files: dict[str, bytes]) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        for name, raw in files.items():
            (folder / name).write_bytes(raw)
        yield folder


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


def bad_record_error(folder: Path, name: str, index: int | None) -> DataError | None:
    """The loader's error for the fuzzed record (or file), if it rejects it."""
    split = next(split for split, file in SPLIT_FILES.items() if file == name)
    entries = load_suite(str(folder), [split], limit=LIMIT).splits[split]
    errors = [entry for entry in entries if isinstance(entry, DataError)]
    if index is None:
        return errors[0] if errors else None
    return next((error for error in errors if error.record == index), None)


@FAST
@given(broken=broken_folders())
def test_check_data_names_file_and_record_and_never_shows_a_traceback(broken: tuple[str, int | None, dict[str, bytes]]):
    name, index, files = broken
    with folder_of(files) as folder:
        status, out, err = cli("check-data", str(folder))
        assert status in (0, 1) and "Traceback" not in out + err
        findings = [line for line in out.splitlines() if not line.startswith(("summary:", "  ")) and " finding" not in line
                    and not line.startswith("no findings")]
        assert all(line.startswith(str(folder)) for line in findings), findings
        error = bad_record_error(folder, name, index)
        if error is not None:  # what the loader rejects, check-data reports at the same place
            where = f"{folder / name}" + ("" if index is None else f":record {index}")
            assert any(line.startswith(where) for line in findings), (where, out)
            assert str(folder / name) in str(error) and (index is None or f"record {index}" in str(error))


@FAST
@given(broken=broken_folders())
def test_collection_keeps_every_good_case_and_names_the_bad_one(pytester: pytest.Pytester,
                                                                 broken: tuple[str, int | None, dict[str, bytes]]):
    name, index, files = broken
    for suite in SUITES.glob("test_*.py"):
        pytester.makepyfile(**{suite.stem: suite.read_text()})
    with folder_of(files) as folder:
        result = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:randomly", f"--kedit-data={folder}",
                                              f"--kedit-limit={LIMIT}")
        out = result.stdout.str() + result.stderr.str()
        assert "Traceback" not in out and "INTERNALERROR" not in out
        expected = load_suite(str(folder), list(SPLIT_FILES), limit=LIMIT).entries(list(SPLIT_FILES))
        if result.ret == pytest.ExitCode.USAGE_ERROR:  # only when nothing at all can run
            assert "ERROR: kedit: " in out
            return
        # a suite whose split the data lacks collects its empty parameter set
        collected = {line.rsplit("[", 1)[1].rstrip("]") for line in result.stdout.lines if "::test_" in line} - {"NOTSET"}
        assert collected == {ident for ident, _ in expected}
        good = {ident for ident, entry in expected if not isinstance(entry, DataError)}
        untouched = {f"{split}-{i:04d}" for split, file in SPLIT_FILES.items() if file != name and file in files
                     for i in range(min(LIMIT, len(json.loads(files[file]))))}
        assert untouched <= good  # every other file's cases still parse and are collected


# -- kedit report on a fuzzed report folder --------------------------------------------------------


def report_folder(folder: Path) -> None:
    records = [CaseRecord(case_id=f"coverage-{i:04d}", split="coverage", relation="P36", arity=None, model="m",
                          method="ft", outcome="passed", metrics={"single_succ": 1.0, "cs": 1.0, "cm": 0.5},
                          probabilities={"theta": {"k_o": 0.5}}, timings={"edit": 0.1}) for i in range(3)]
    write_report(folder, run_summary(), records)


@FAST
@given(data=st.data())
def test_kedit_report_names_the_file_and_line_of_a_broken_record(data: st.DataObject):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "report"
        report_folder(folder)
        name = data.draw(st.sampled_from(["cases.jsonl", "summary.json"]))
        target = folder / name
        line = None
        if data.draw(st.booleans()):  # cut short
            raw = target.read_bytes()
            target.write_bytes(raw[: data.draw(st.integers(1, len(raw) - 1))])
        elif name == "cases.jsonl":
            lines = target.read_text().splitlines()
            line = data.draw(st.integers(0, len(lines) - 1))
            record = json.loads(lines[line])
            path = data.draw(st.sampled_from(list(paths(record))))
            mutate(record, path, data.draw(st.sampled_from(["drop", "replace"])), data.draw(REPLACEMENTS))
            lines[line] = json.dumps(record)
            target.write_text("\n".join(lines) + "\n")
        else:
            summary = json.loads(target.read_text())
            key = data.draw(st.sampled_from(sorted(summary)))
            mutate(summary, (key,), data.draw(st.sampled_from(["drop", "replace"])), data.draw(REPLACEMENTS))
            target.write_text(json.dumps(summary))
        status, out, err = cli("report", str(folder))
        assert "Traceback" not in out + err
        if status != 0:
            assert status == 2 and err.count("\n") == 1 and err.startswith(f"kedit: error: {folder}")
            if line is not None and "cases.jsonl" in err:
                assert f"cases.jsonl, line {line + 1}:" in err


# -- a good case still runs ----------------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=3, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(broken=broken_folders())
def test_a_good_case_beside_a_fuzzed_one_still_runs(pytester: pytest.Pytester, tiny_model_dir: Path,
                                                   tiny_ft_hparams: Path, broken: tuple[str, int | None, dict[str, bytes]]):
    name, _, files = broken
    split = next(split for split, file in SPLIT_FILES.items() if file == name)
    for suite in SUITES.glob("test_*.py"):
        pytester.makepyfile(**{suite.stem: suite.read_text()})
    with folder_of(files) as folder:
        result = pytester.runpytest_subprocess(
            "-p", "no:randomly", f"--kedit-data={folder}", f"--kedit-split={split},coverage" if split != "coverage"
            else "--kedit-split=coverage,easy", "--kedit-limit=1", f"--kedit-model={tiny_model_dir}",
            f"--kedit-hparams={tiny_ft_hparams}", *(f"--kedit-threshold={m}=off" for m in
                                                     ("cs", "cs_exp", "cs_imp", "succ", "fr", "tfd")))
        out = result.stdout.str() + result.stderr.str()
        assert "Traceback" not in out and "INTERNALERROR" not in out
        outcomes = result.parseoutcomes()
        assert outcomes.get("passed", 0) >= 1  # the other split's good case ran
