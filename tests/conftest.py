"""Shared fixtures of the plugin's tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings
from tiny_models import FAMILIES, tiny_model

from pytest_kedit.storage.cache import cache_dir

pytest_plugins = ["pytester"]

#: The settings of every property test: hypothesis's own profile ("default", or "ci" when it detects
#: a CI service) without the per-example deadline, which a busy 2-core runner or the first call's
#: imports and caches overrun without any bug. A test that needs another example count says so
#: with ``@settings(max_examples=N)``; ``--hypothesis-profile`` still picks another profile.
settings.register_profile("kedit", deadline=None)  # unset settings fall back to the active profile
settings.load_profile("kedit")

#: The suites a user runs, copied into pytester's projects.
SUITES = Path(__file__).resolve().parents[1] / "suites"

#: The user's cache, resolved before pytester points HOME at a temporary folder.
USER_CACHE_DIR = str(cache_dir())


@pytest.fixture
def user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's cache, where an embedded model is converted once per machine, also for pytester's
    subprocesses (their HOME is a temporary folder)."""
    monkeypatch.setenv("KEDIT_CACHE_DIR", USER_CACHE_DIR)


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama saved like a Hugging Face checkpoint, for ``--kedit-model=DIR``."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    model, tokenizer = tiny_model("llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_ft_hparams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hparams") / "ft.yaml"
    path.write_text("layers: [1]\nnum_steps: 3\nlr: 1.0e-2\n")
    return path


@pytest.fixture
def kedit_project(pytester: pytest.Pytester, tiny_model_dir: Path, tiny_ft_hparams: Path) -> Callable[..., pytest.Pytester]:
    """Makes pytester's folder a project: the built-in suites of the paper (with ``streams``, the
    sequential suite too) and an ini file pointing at the tiny model and FT hyper-parameters, plus
    the ini keys given (``kedit_limit=2``)."""

    def make(streams: bool = False, **ini: object) -> pytest.Pytester:
        for suite in SUITES.glob("test_*.py" if streams else "test_*_edit.py"):
            pytester.makepyfile(**{suite.stem: suite.read_text()})
        keys = {"kedit_model": tiny_model_dir, "kedit_hparams": tiny_ft_hparams, **ini}
        pytester.makeini("[pytest]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items()))
        return pytester

    return make
