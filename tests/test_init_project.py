"""What a pip user gets without a clone: the suites as a package (``pytest --pyargs pytest_kedit.suites``),
``kedit init`` writing them with the ini keys, the shipped baselines and the workflow into a
repository, and ``kedit docs``; the repository's own suites/ and .kedit/ are what ``kedit init`` writes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from pytest_kedit.cli.docs import topics
from pytest_kedit.cli.init_project import WORKFLOW, baseline_files, suite_files, workflow_text
from pytest_kedit.cli.main import SUBCOMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before Python 3.11
    import tomli as tomllib


def written(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): path.read_text() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_repositorys_suites_and_baselines_are_what_kedit_init_writes():
    assert {str(path): text for path, text in suite_files().items()} == {
        f"suites/{path.name}": path.read_text() for path in (ROOT / "suites").glob("test_*.py")}
    assert {str(path): text for path, text in baseline_files().items()} == {
        str(path.relative_to(ROOT)): path.read_text() for path in (ROOT / ".kedit" / "baselines").rglob("*.json")}


def test_init_in_an_empty_folder_writes_everything_and_a_second_init_changes_nothing(tmp_path: Path, capsys):
    assert main(["init", str(tmp_path), "--method", "mine"]) == 0
    files = written(tmp_path)
    assert set(files) == {str(path) for path in [*suite_files(), *baseline_files(), WORKFLOW, Path("pytest.ini")]}
    assert files["pytest.ini"] == "[pytest]\nkedit_model = smollm2-135m\nkedit_method = mine\n"
    assert files[str(WORKFLOW)] == workflow_text()
    out = capsys.readouterr().out
    assert "suites/test_round_edit.py: written" in out and ".kedit/baselines/smollm2-135m/mine.json" in out
    assert main(["init", str(tmp_path), "--method", "other"]) == 0
    assert written(tmp_path) == files
    out = capsys.readouterr().out
    assert "written" not in out.replace("pytest.ini: sets", "") and "pytest.ini: sets kedit_model or kedit_method already" in out


def test_a_file_with_other_content_stops_init_before_it_writes_anything_unless_forced(tmp_path: Path, capsys):
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "test_round_edit.py").write_text("mine\n")
    assert main(["init", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "test_round_edit.py exists with other content; nothing was written: give --force" in error
    assert written(tmp_path) == {"suites/test_round_edit.py": "mine\n"}
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert "suites/test_round_edit.py: replaced" in capsys.readouterr().out
    assert written(tmp_path)["suites/test_round_edit.py"] == suite_files()[Path("suites/test_round_edit.py")]


def test_init_of_a_folder_that_does_not_exist_is_one_line(tmp_path: Path, capsys):
    assert main(["init", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(("name", "before", "header"), [
    ("pyproject.toml", '[project]\nname = "mine"\n', None),
    ("pyproject.toml", '[project]\nname = "mine"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n\n[tool.ruff]\nline-length = 99\n',
     "tool.pytest.ini_options"),
    ("tox.ini", "[tox]\nenvlist = py\n\n[pytest]\ntestpaths = tests\n", "pytest"),
    ("setup.cfg", "[metadata]\nname = mine\n\n[tool:pytest]\ntestpaths = tests\n", "tool:pytest"),
    ("pytest.ini", "[pytest]\ntestpaths = tests\n", "pytest"),
])
def test_the_ini_keys_go_into_the_file_pytest_reads_keeping_what_it_has(tmp_path: Path, name: str, before: str,
                                                                         header: str | None):
    (tmp_path / name).write_text(before)
    assert main(["init", str(tmp_path), "--method", "mine", "--model", "gemma3-270m"]) == 0
    after = (tmp_path / name).read_text()
    assert not (tmp_path / "pytest.ini").exists() or name == "pytest.ini"
    if name == "pyproject.toml":
        parsed = tomllib.loads(after)
        assert parsed["project"] == {"name": "mine"}
        section = parsed["tool"]["pytest"]["ini_options"]
        assert section["kedit_model"] == "gemma3-270m" and section["kedit_method"] == "mine"
        if header is not None:
            assert section["testpaths"] == ["tests"] and parsed["tool"]["ruff"] == {"line-length": 99}
        return
    import configparser

    parser = configparser.ConfigParser()
    parser.read_string(after)
    assert parser[header]["kedit_model"] == "gemma3-270m" and parser[header]["kedit_method"] == "mine"
    assert parser[header]["testpaths"] == "tests" and after.startswith(before.split("[" + header + "]")[0])


def test_pytest_reads_the_ini_keys_kedit_init_wrote(pytester: pytest.Pytester):
    (pytester.path / "pyproject.toml").write_text('[project]\nname = "mine"\n')
    assert main(["init", str(pytester.path), "--method", "rome"]) == 0
    config = pytester.parseconfig("suites")
    assert (config.getini("kedit_method"), config.getini("kedit_model")) == ("rome", "smollm2-135m")


@pytest.mark.slow
def test_the_suites_collect_every_case_from_the_package_and_from_the_files_kedit_init_writes(pytester: pytest.Pytester):
    from_package = pytester.runpytest_subprocess("--pyargs", "pytest_kedit.suites", "--collect-only", "-q",
                                                 "-p", "no:cacheprovider", "--kedit-split=reverse,easy")
    main(["init", str(pytester.path)])
    from_files = pytester.runpytest_subprocess("suites", "--collect-only", "-q", "-p", "no:cacheprovider",
                                               "--kedit-split=reverse,easy")
    cases = [re.findall(r"::(test_\w+\[[a-z]+-\d+\])$", result.stdout.str(), flags=re.M) for result in (from_package, from_files)]
    assert cases[0] == cases[1] and len(cases[0]) > 20
    assert {case.split("[")[1].split("-")[0] for case in cases[0]} == {"reverse", "easy"}


@pytest.mark.slow
def test_a_plain_pytest_run_of_another_project_collects_none_of_the_suites(pytester: pytest.Pytester):
    """pytest does not look into installed packages, nor into a virtual environment inside the project."""
    pytester.makepyfile(test_mine="def test_mine():\n    pass\n")
    venv = pytester.mkdir(".venv")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    packages = venv / "lib" / "site-packages" / "pytest_kedit" / "suites"
    packages.mkdir(parents=True)
    for source in (ROOT / "pytest_kedit" / "suites").glob("*.py"):
        (packages / source.name).write_text(source.read_text())
    result = pytester.runpytest_subprocess("--collect-only", "-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    assert [line for line in result.outlines if "::" in line] == ["test_mine.py::test_mine"]


def test_kedit_docs_lists_every_page_and_prints_one(capsys):
    assert set(topics()) == {path.stem for path in (ROOT / "docs").glob("*.md")}
    assert main(["docs"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == sorted(topics())
    assert any(line.split(None, 1)[1] == "pytest-kedit in CI" for line in listing if line.startswith("ci "))
    assert main(["docs", "ci"]) == 0
    assert capsys.readouterr().out == (ROOT / "docs" / "ci.md").read_text()
    assert main(["docs", "nowhere"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no documentation page 'nowhere'; choose from architecture, ci," in error


def help_texts(pytester: pytest.Pytester) -> str:
    """``kedit --help`` of every subcommand, and the kedit options and ini keys of ``pytest --help``
    (other plugins' help is theirs)."""
    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.choices and "init" in action.choices)
    texts = [parser.format_help(), *(sub.format_help() for sub in subparsers.choices.values())]
    assert len(texts) == len(SUBCOMMANDS) + 1
    pytest_help = pytester.runpytest_inprocess("--help").stdout.str()
    group = re.search(r"^knowledge-editing pitfalls benchmark \(pytest-kedit\):\n(.*?)\n\n", pytest_help, flags=re.M | re.S)
    assert group is not None
    texts.append(group[1])
    texts.extend(re.findall(r"^  kedit_\w+.*\n(?:   .*\n)*", pytest_help, flags=re.M))  # the ini keys
    return "\n".join(texts)


def test_help_texts_point_at_kedit_docs_pages_that_exist_never_at_a_docs_folder(pytester: pytest.Pytester):
    text = help_texts(pytester)
    assert "docs/" not in text
    named = re.findall(r"kedit docs ([a-z-]+)", text)
    assert named and set(named) <= set(topics())
