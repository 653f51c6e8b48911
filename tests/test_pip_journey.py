"""A pip user's first steps, end to end: the wheel built from this checkout, installed into a fresh
virtual environment, run in an empty folder: the suites from the package, then ``kedit init`` and a
baseline made and gated against."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: One case per run: the journey, not the benchmark, is under test.
FEW = ["--kedit-limit=1", "-p", "no:cacheprovider"]


def sh(*command: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only the wheel of this checkout installed in it; its other
    packages (torch above all, so that it is not fetched again) come from the environment running
    the tests, added to its path as ``--system-site-packages`` adds a system Python's."""
    base = tmp_path_factory.mktemp("journey")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    built = sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", base / "dist", ROOT, cwd=base, env=env)
    assert built.returncode == 0, built.stderr
    (wheel,) = (base / "dist").glob("pytest_kedit-*.whl")
    made = sh(sys.executable, "-m", "venv", base / "venv", cwd=base, env=env)
    assert made.returncode == 0, made.stderr
    python = base / "venv" / "bin" / "python"
    site = Path(sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=base, env=env).stdout.strip())
    (site / "base-environment.pth").write_text("".join(f"{path}\n" for path in sys.path if path.endswith("site-packages")))
    installed = sh(python, "-m", "pip", "install", "--no-index", "--no-deps", "--force-reinstall", "--quiet", wheel,
                   cwd=base, env=env)
    assert installed.returncode == 0, installed.stderr
    return base / "venv"


@pytest.mark.slow
def test_a_pip_user_runs_the_suites_then_inits_a_repository_and_gates_it(venv: Path, tmp_path: Path, user_cache):
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    python, kedit = venv / "bin" / "python", venv / "bin" / "kedit"
    where = sh(python, "-c", "import pytest_kedit; print(pytest_kedit.__file__)", cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr

    suites = sh(python, "-m", "pytest", "--pyargs", "pytest_kedit.suites", "--kedit-split=reverse,easy", *FEW,
                cwd=tmp_path, env=env)
    assert suites.returncode in (0, 1), suites.stdout + suites.stderr  # a case may miss a threshold
    assert "Table 1" in suites.stdout and "Table 2" in suites.stdout, suites.stdout
    assert sum(int(count) for count in re.findall(r"(\d+) (?:passed|failed)", suites.stdout.splitlines()[-1])) == 2

    init = sh(kedit, "init", cwd=tmp_path, env=env)
    assert init.returncode == 0 and "pytest.ini: written" in init.stdout, init.stdout + init.stderr
    update = sh(python, "-m", "pytest", "suites/", "--kedit-baseline-update", "--kedit-split=reverse", *FEW, cwd=tmp_path, env=env)
    assert update.returncode == 0, update.stdout + update.stderr
    assert "baseline .kedit/baselines/smollm2-135m/ft.json updated: 1 cases from this run" in update.stdout, update.stdout
    gated = sh(python, "-m", "pytest", "suites/", "--kedit-baseline", "--kedit-split=reverse", *FEW, cwd=tmp_path, env=env)
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert "baseline .kedit/baselines/smollm2-135m/ft.json: " in gated.stdout and "regressed" not in gated.stdout
