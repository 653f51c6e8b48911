"""Packaged hyper-parameters: every built-in method has defaults for every supported family."""

from __future__ import annotations

import pytest

from pytest_kedit.editors import BUILTIN, editor_class
from pytest_kedit.errors import ConfigError
from pytest_kedit.hparams import SHARED_DEFAULTS, default_file, load_hparams
from pytest_kedit.models import MODULE_MAPS


#: MEMIT measured destructive on Gemma 3 at every setting tried (docs/editors.md): no packaged default.
WITHOUT_DEFAULTS = {("memit", family) for family in ("gemma", "gemma2", "gemma3", "gemma3_text")}


@pytest.mark.parametrize("family", sorted(MODULE_MAPS))
@pytest.mark.parametrize("method", sorted(BUILTIN))
def test_every_family_has_defaults_for_every_builtin_method(method: str, family: str) -> None:
    cls = editor_class(method)
    folder = cls.hparams_folder or cls.name
    if (folder, family) in WITHOUT_DEFAULTS:
        with pytest.raises(ConfigError, match="pass --kedit-hparams=FILE"):
            load_hparams(folder, cls.hparams_class, "someone/an-unlisted-model", family)
    else:
        assert load_hparams(folder, cls.hparams_class, "someone/an-unlisted-model", family).layers


def test_a_family_without_its_own_file_uses_the_shared_one() -> None:
    assert default_file("rome", "gpt2", "gpt2").name == "gpt2-xl.yaml"
    assert default_file("memit", "Qwen/Qwen2.5-0.5B", "qwen2").name == "llama.yaml"
    assert default_file("rome", "google/gemma-2-2b", "gemma2").name == "gemma3.yaml"
    assert default_file("rome", "smollm2-135m", "llama").name == "smollm2-135m.yaml"
    assert set(SHARED_DEFAULTS) <= set(MODULE_MAPS)
