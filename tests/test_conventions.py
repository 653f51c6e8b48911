"""What users of other pytest plugins expect of this one: it costs nothing and reads nothing in a
run without kedit cases, marks its cases, says what it runs in pytest's header, names its options
as one family (the old spellings kept as aliases), has real metavars, ``kedit --version`` and
``python -m pytest_kedit``, and a column in pytest-html's table."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_kedit.benchmark.registry import BENCHMARKS
from pytest_kedit.ci.regression import DEFAULT_TOLERANCE
from pytest_kedit.run.case_tests import CASE_FIXTURES, OPTIONS_ERROR_ID, count_cases, has_kedit_tests
from pytest_kedit.run.html_table import metrics_cell
from pytest_kedit.run.options import OPTIONS, read_options

ROOT = Path(__file__).resolve().parents[1]
#: What a run without kedit cases must not import.
HEAVY = ("numpy", "scipy", "torch", "transformers", "pytest_kedit.benchmark", "pytest_kedit.run.session")

UNRELATED = f'''
import sys

def test_nothing_heavy_is_imported():
    heavy = [name for name in sys.modules if name.startswith({HEAVY!r})]
    assert not heavy, heavy
'''


def python(*args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a fresh interpreter with this checkout first on its path."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, check=False)


def test_importing_the_plugin_imports_neither_the_benchmark_nor_numpy_nor_torch():
    found = python("-c", f"import sys, pytest_kedit.plugin; print([m for m in sys.modules if m.startswith({HEAVY!r})])")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_a_run_without_kedit_cases_reads_no_kedit_option_and_imports_nothing_heavy(pytester: pytest.Pytester):
    pytester.makepyfile(test_unrelated=UNRELATED)
    pytester.makeini("[pytest]\nkedit_limit = two\nkedit_thresholds = cs>=x\nkedit_gate_mode = maybe\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # the ini keys say the session is meant as a benchmark run: the header says what it would run, unchecked
    assert "kedit: smollm2-135m × ft, protocol paper, device auto, baseline none" in result.stdout.str()


def test_without_kedit_options_the_header_says_nothing(pytester: pytest.Pytester):
    pytester.makepyfile(test_unrelated="def test_one():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "kedit:" not in result.stdout.str()


def test_a_kedit_option_on_the_command_line_is_checked_at_once_and_shown_in_the_header(pytester: pytest.Pytester):
    pytester.makepyfile(test_unrelated="def test_one():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--kedit-limit=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "kedit: --kedit-limit: must be at least 1, got 0" in result.stderr.str()
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--kedit-method=rome", "--kedit-baseline-update",
                                          "--kedit-device=cpu")
    result.assert_outcomes(passed=1)
    assert "kedit: smollm2-135m × rome, protocol paper, device cpu, baseline default (updated by this run)" in \
        result.stdout.str()


@pytest.mark.slow
def test_the_cases_are_marked_kedit_and_a_bad_ini_value_stops_only_a_run_that_has_them(
        kedit_project: Callable[..., pytest.Pytester]):
    project = kedit_project(kedit_limit="two")
    project.makepyfile(test_unrelated="def test_one():\n    pass\n")
    without = project.runpytest_subprocess("-p", "no:cacheprovider", "-m", "not kedit")
    without.assert_outcomes(passed=1, deselected=2)  # the two suite tests, each one test standing for the options' error
    with_cases = project.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only")
    assert with_cases.ret == pytest.ExitCode.USAGE_ERROR
    assert with_cases.stderr.str().strip() == "ERROR: kedit: --kedit-limit: 'two' is not a whole number"
    kedit_project(kedit_limit=1)
    cases = project.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q", "-m", "kedit",
                                         "--strict-markers")
    assert cases.ret == pytest.ExitCode.OK, cases.stdout.str()
    collected = [line for line in cases.outlines if "::" in line]
    assert len(collected) == 5 and all("test_unrelated" not in line for line in collected)


@pytest.mark.slow
def test_under_xdist_a_bad_ini_value_is_one_line_of_the_controller(kedit_project: Callable[..., pytest.Pytester]):
    pytest.importorskip("xdist")
    project = kedit_project(kedit_sample="0")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: kedit: --kedit-sample: must be at least 1, got 0" in result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_the_marker_is_registered(pytester: pytest.Pytester):
    result = pytester.runpytest_inprocess("--markers")
    assert "@pytest.mark.kedit: a case of the knowledge-editing pitfalls benchmark" in result.stdout.str()


def test_help_shows_metavars_and_no_default_that_is_none(pytester: pytest.Pytester):
    text = pytester.runpytest_inprocess("--help").stdout.str()
    for shown in ("--kedit-model=MODEL", "--kedit-hparams=PATH", "--kedit-limit=N", "--kedit-shard=K/N",
                  "--kedit-threshold=SPEC", "--kedit-gate=SPEC", "--kedit-report=DIR", "--kedit-html=PATH",
                  "--kedit-baseline-update, --kedit-update-baseline", "--kedit-baseline-tolerance=T, --kedit-tolerance=T"):
        assert shown in text
    assert "(default: None)" not in text and "=KEDIT_" not in text
    assert "kedit_threshold (args)" in text and "kedit_gate (args)" in text and "kedit_baseline_update (bool)" in text


def test_the_tolerance_the_help_shows_is_the_default():
    (option,) = [option for option in OPTIONS if option.name == "baseline-tolerance"]
    assert option.default is not None and float(option.default) == DEFAULT_TOLERANCE


@pytest.mark.parametrize("spelling", ["new", "old"])
def test_old_and_new_option_names_and_ini_keys_read_the_same(pytester: pytest.Pytester, spelling: str):
    keys = {"new": ("kedit_threshold", "kedit_gate", "kedit_baseline_tolerance", "kedit_baseline_update"),
            "old": ("kedit_thresholds", "kedit_gates", "kedit_tolerance", "kedit_update_baseline")}[spelling]
    values = ("cs>=0.5", "reverse.cs_imp>=baseline-5", "0.25", "true")
    pytester.makeini("[pytest]\n" + "".join(f"{key} = {value}\n" for key, value in zip(keys, values)))
    options = read_options(pytester.parseconfig())
    assert options.thresholds.specs()[0] == "cs>=0.5"
    assert [str(gate) for gate in options.gates] == ["reverse.cs_imp>=baseline-5"]
    assert options.tolerance == 0.25 and options.update_baseline and options.baseline is not None
    flags = {"new": ["--kedit-baseline-tolerance=0.5", "--kedit-baseline-update"],
             "old": ["--kedit-tolerance=0.5", "--kedit-update-baseline"]}[spelling]
    options = read_options(pytester.parseconfig(*flags))
    assert options.tolerance == 0.5 and options.update_baseline


def test_every_case_argument_gets_the_cases_of_one_benchmark():
    assert sorted(CASE_FIXTURES.values()) == sorted(benchmark.name for benchmark in BENCHMARKS)


def test_case_tests_are_known_by_their_ids_alone():
    ids = ["t.py::test_x[reverse-0042]", "t.py::test_x[easy-invalid]", "t.py::test_y[left-0001]", "t.py::test_z",
           "t.py::test_w[reverse-0001-extra]"]
    assert count_cases(ids) == 2
    assert not has_kedit_tests(ids[2:]) and has_kedit_tests([*ids[2:], f"t.py::test_x[{OPTIONS_ERROR_ID}]"])


def test_the_html_cell_shows_a_cases_metrics_and_nothing_for_other_tests():
    properties = [("kedit_case", "reverse-0001"), ("kedit_split", "reverse"), ("CS_exp", "1.0"), ("CS_imp", "0.0"),
                  ("CM", "0.018934567"), ("other", "x")]
    assert metrics_cell(properties) == '<td class="col-kedit">CS_exp 1, CS_imp 0, CM 0.01893</td>'
    assert metrics_cell([("CM", "0.5"), ("other", "<b>")]) == '<td class="col-kedit"></td>'


def test_pytest_html_gets_a_column_of_each_cases_metrics(pytester: pytest.Pytester):
    pytest.importorskip("pytest_html")
    pytester.makepyfile(test_cases='''
def test_a_case(record_property):
    record_property("kedit_case", "reverse-0001")
    record_property("CS_imp", "0.0")
    record_property("CM", "0.25")

def test_other():
    pass
''')
    pytester.makeini("[pytest]\nkedit_limit = 1\n")  # kedit options: the session is meant as a benchmark run
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--html=page.html", "--self-contained-html")
    result.assert_outcomes(passed=2)
    page = (pytester.path / "page.html").read_text()
    assert "kedit metrics" in page and "CS_imp 0, CM 0.25" in page


def test_kedit_version_and_python_m_pytest_kedit():
    from importlib.metadata import version

    for args in (["-m", "pytest_kedit", "--version"], ["-c", "from pytest_kedit.cli.main import main; main(['--version'])"]):
        found = python(*args)
        assert found.returncode == 0 and found.stdout.strip() == f"kedit (pytest-kedit) {version('pytest-kedit')}"
    listed = python("-m", "pytest_kedit", "metrics")
    assert listed.returncode == 0 and "cs_imp" in listed.stdout
