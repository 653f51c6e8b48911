"""Shared fixtures of the plugin's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import FAMILIES, tiny_model

pytest_plugins = ["pytester"]


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
