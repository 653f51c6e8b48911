"""``kedit init [DIR]``: what an editing method's repository needs to run pytest-kedit's suites and to
gate on them in CI, written into DIR.

- ``suites/test_conflict_edit.py``, ``suites/test_round_edit.py``, ``suites/test_sequential.py``: each imports the test of the
  package's suite module (:mod:`pytest_kedit.suites`), so a newer pytest-kedit brings its suites along;
- the ini block, ``kedit_model`` and ``kedit_method``: put under the pytest section of the file pytest
  reads in DIR (``pytest.ini``, ``.pytest.ini``, ``pyproject.toml``, ``tox.ini``, ``setup.cfg``, in
  pytest's order), left as it is when that section sets either key already; appended to
  ``pyproject.toml`` as ``[tool.pytest.ini_options]`` when pytest reads no file there; else a new
  ``pytest.ini``;
- ``.kedit/baselines/``: the baselines shipped for the built-in suites on the embedded model
  (``pytest_kedit.baselines``);
- ``.github/workflows/kedit.yml``: the GitHub Actions workflow that ``kedit docs ci`` shows.

A file that exists with other content stops the command before anything is written, in one line,
unless ``--force`` (then it is replaced); one with the same content is left as it is.
"""

from __future__ import annotations

import argparse
import ast
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_kedit.ci.baseline import DEFAULT_FOLDER, default_path
from pytest_kedit.errors import ConfigError
from pytest_kedit.run.options import DEFAULT_METHOD, DEFAULT_MODEL

#: The workflow's place in the repository, and its template's in the package.
WORKFLOW = Path(".github") / "workflows" / "kedit.yml"
WORKFLOW_TEMPLATE = "workflow.yml"
#: The folder of the suite files in the repository.
SUITES = Path("suites")

#: The files pytest reads its configuration from, in the order it looks for them, each with the
#: headers of its pytest section; the first header is the one a new section gets.
INI_FILES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pytest.ini", ("[pytest]",)),
    (".pytest.ini", ("[pytest]",)),
    ("pyproject.toml", ("[tool.pytest.ini_options]", "[tool.pytest]")),
    ("tox.ini", ("[pytest]",)),
    ("setup.cfg", ("[tool:pytest]",)),
)
#: Files that are pytest's configuration whatever they hold.
ALWAYS_CONFIG = ("pytest.ini", ".pytest.ini")


@dataclass(frozen=True)
class Planned:
    """A file ``kedit init`` writes: its path relative to DIR, its new text, and what the
    terminal line says about it."""

    path: Path
    text: str
    line: str


def workflow_text() -> str:
    """The GitHub Actions workflow ``kedit init`` writes (package data; docs/ci.md shows the same text)."""
    return resources.files("pytest_kedit.cli").joinpath(WORKFLOW_TEMPLATE).read_text(encoding="utf-8")


def suite_files() -> dict[Path, str]:
    """``suites/<module>.py`` -> its text, for every test module of :mod:`pytest_kedit.suites`: the
    first line of the module's docstring, and an import of its tests (listed in ``__all__``)."""
    files = {}
    for source in sorted(resources.files("pytest_kedit.suites").iterdir(), key=lambda item: item.name):
        if not (source.name.startswith("test_") and source.name.endswith(".py")):
            continue
        module = ast.parse(source.read_text(encoding="utf-8"))
        summary = (ast.get_docstring(module) or "").splitlines()[0]
        tests = [node.name for node in module.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
        name, listed = source.name.removesuffix(".py"), ", ".join(f'"{test}"' for test in tests)
        files[SUITES / source.name] = (
            f'"""{summary}\n\nThe test is pytest-kedit\'s own (pytest_kedit.suites.{name}): a newer pytest-kedit brings its\n'
            f'changes. `kedit docs metrics` tells what each metric measures."""\n\n'
            f"from pytest_kedit.suites.{name} import {', '.join(tests)}\n\n"
            f"__all__ = [{listed}]\n"
        )
    return files


def baseline_files() -> dict[Path, str]:
    """``.kedit/baselines/<model>/<method>.json`` -> its text, for every baseline the package ships."""
    root = resources.files("pytest_kedit.baselines")
    return {DEFAULT_FOLDER / model.name / baseline.name: baseline.read_text(encoding="utf-8")
            for model in sorted(root.iterdir(), key=lambda item: item.name) if model.is_dir()
            for baseline in sorted(model.iterdir(), key=lambda item: item.name) if baseline.name.endswith(".json")}


def ini_lines(model: str, method: str, toml: bool) -> list[str]:
    """The ini block's keys, as TOML (quoted strings) or as ini lines."""
    quote = '"' if toml else ""
    return [f"kedit_model = {quote}{model}{quote}", f"kedit_method = {quote}{method}{quote}"]


def _section(lines: list[str], headers: tuple[str, ...]) -> tuple[int, int] | None:
    """The line span (header, end) of the first section of ``lines`` under one of ``headers``."""
    start = next((index for index, line in enumerate(lines) if line.strip() in headers), None)
    if start is None:
        return None
    end = next((index for index in range(start + 1, len(lines)) if lines[index].lstrip().startswith("[")), len(lines))
    return start, end


def plan_ini(folder: Path, model: str, method: str) -> Planned | str:
    """The file that gets the ini block (see the module docstring), with its new text; the line
    saying so when the pytest section of DIR's file sets ``kedit_model`` or ``kedit_method`` already."""
    for name, headers in INI_FILES:
        path = folder / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        span = _section(lines, headers)
        if span is None and name not in ALWAYS_CONFIG:
            continue
        toml = name == "pyproject.toml"
        if span is None:  # a pytest.ini without its section
            return Planned(Path(name), text.rstrip("\n") + ("\n\n" if text.strip() else "") + "\n".join(
                [headers[0], *ini_lines(model, method, toml)]) + "\n", f"{name}: added kedit_model and kedit_method")
        start, end = span
        if any(re.match(r"\s*kedit_(model|method)\s*=", line) for line in lines[start + 1:end]):
            return f"{name}: sets kedit_model or kedit_method already, left as it is"
        lines[start + 1:start + 1] = ini_lines(model, method, toml)
        return Planned(Path(name), "\n".join(lines) + "\n", f"{name}: added kedit_model and kedit_method to {lines[start].strip()}")
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        text = pyproject.read_text(encoding="utf-8")
        block = "\n".join(["[tool.pytest.ini_options]", *ini_lines(model, method, toml=True)])
        return Planned(Path("pyproject.toml"), text.rstrip("\n") + "\n\n" + block + "\n",
                       "pyproject.toml: added [tool.pytest.ini_options] with kedit_model and kedit_method")
    return Planned(Path("pytest.ini"), "\n".join(["[pytest]", *ini_lines(model, method, toml=False)]) + "\n",
                   "pytest.ini: written with kedit_model and kedit_method")


def plan(folder: Path, model: str, method: str, force: bool) -> tuple[list[Planned], list[str]]:
    """What ``kedit init`` writes into ``folder``, and the lines for the files it leaves as they are.
    ConfigError, one line naming the file, when a file exists with other content and not ``force``."""
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: give the repository's folder (default: the working directory)")
    files = {**suite_files(), **baseline_files(), WORKFLOW: workflow_text()}
    planned, kept = [], []
    for path, text in files.items():
        target = folder / path
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            kept.append(f"{path}: up to date")
            continue
        if target.exists() and not force:
            raise ConfigError(f"{target} exists with other content; nothing was written: give --force to replace it")
        planned.append(Planned(path, text, f"{path}: {'replaced' if target.exists() else 'written'}"))
    ini = plan_ini(folder, model, method)
    if isinstance(ini, str):
        kept.append(ini)
    else:
        planned.append(ini)
    return planned, kept


def init_project(folder: Path, model: str, method: str, force: bool) -> list[str]:
    """Write what :func:`plan` plans into ``folder``; the terminal's lines, one per file."""
    planned, kept = plan(folder, model, method, force)
    for item in planned:
        target = folder / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item.text, encoding="utf-8")
    baseline = default_path(Path(), model, method)
    return [*(item.line for item in planned), *kept, "",
            f"next: pytest suites/ --kedit-baseline-update   (writes {baseline}), commit it with the rest, push; "
            f"the workflow then gates every push against it (kedit docs ci)"]


def add_init(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "init",
        help="write the suites, the ini keys, the shipped baselines and a GitHub Actions workflow into a repository",
        description="Write into DIR what an editing method's repository needs to run pytest-kedit's suites and gate "
                    "on them in CI: suites/test_conflict_edit.py and suites/test_round_edit.py (they import the "
                    "package's tests), kedit_model and kedit_method in the file pytest reads its configuration "
                    "from (pytest.ini when there is none), the baselines shipped for the built-in suites in "
                    ".kedit/baselines/, and .github/workflows/kedit.yml (see kedit docs ci). A file that exists "
                    "with other content stops the command before anything is written, unless --force.",
    )
    parser.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR",
                        help="the repository's folder (default: the working directory)")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="MODEL",
                        help=f"the ini's kedit_model: embedded alias, Hugging Face id or local path (default: {DEFAULT_MODEL})")
    parser.add_argument("--method", default=DEFAULT_METHOD, metavar="METHOD",
                        help=f"the ini's kedit_method: your method's name in the pytest_kedit.editors entry points "
                             f"(default: {DEFAULT_METHOD})")
    parser.add_argument("--force", action="store_true", help="replace files that exist with other content")
    parser.set_defaults(handler=_init)


def _init(args: argparse.Namespace) -> int:
    for line in init_project(args.dir, args.model, args.method, args.force):
        print(line)
    return 0
