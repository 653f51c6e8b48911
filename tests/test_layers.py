"""The layers of the package are a contract (``[tool.importlinter]`` in pyproject.toml) that
``tox -e lint`` checks: the real package keeps it, and a deliberate violation breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
lint_imports = shutil.which("lint-imports", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
pytestmark = pytest.mark.skipif(lint_imports is None, reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package under ``root`` with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(lint_imports), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "pytest_kedit", tmp_path / "pytest_kedit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_layers(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("ci/gates.py", "import torch", "Judging runs needs no torch"),
    ("benchmark/metrics.py", "import pytest_kedit.storage.cache", "What is measured is pure"),
    ("results/record.py", "import pytest_kedit.run.session", "Layers along the data flow"),
    ("model/tracing.py", "import pytest_kedit.benchmark.cases", "knows nothing of the benchmark"),
])
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    root = _copy(tmp_path)
    path = root / "pytest_kedit" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = _lint(root)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout.replace("\n", " ")
    assert "BROKEN" in result.stdout


def test_a_cycle_between_modules_of_one_folder_breaks_the_contract(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    path = root / "pytest_kedit" / "benchmark" / "cases.py"
    path.write_text(path.read_text() + "\nimport pytest_kedit.benchmark.registry  # noqa\n")
    result = _lint(root)
    assert result.returncode != 0
    assert "No import cycles" in result.stdout.replace("\n", " ")
