"""The package's metadata: one version, the extra that the embedded model's fetch names."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest_kedit
from pytest_kedit.model.embedded_models import EXTRA

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before Python 3.11
    import tomli as tomllib

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_version_is_written_once_and_installed_as_written():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pytest_kedit.__version__"}
    assert importlib.metadata.version("pytest-kedit") == pytest_kedit.__version__


def test_the_extra_the_embedded_models_fetch_names_exists():
    name, extra = EXTRA.removesuffix("]").split("[")
    assert name == PYPROJECT["project"]["name"] and extra in PYPROJECT["project"]["optional-dependencies"]
