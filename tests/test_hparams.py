"""Packaged hyper-parameters: every built-in method has defaults for every supported family."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import pytest

from pytest_kedit.editors import BUILTIN, editor_class
from pytest_kedit.editors.hparams import SHARED_DEFAULTS, default_file, load_hparams
from pytest_kedit.editors.key_value_editor import KeyValueHyperParams
from pytest_kedit.editors.memit import MEMITHyperParams
from pytest_kedit.editors.rome import ROMEHyperParams
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.architectures import MODULE_MAPS

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
        assert isinstance(load_hparams(folder, cls.hparams_class, "someone/an-unlisted-model", family), cls.hparams_class)


def test_a_family_without_its_own_file_uses_the_shared_one() -> None:
    assert default_file("rome", "gpt2", "gpt2").name == "gpt2-xl.yaml"
    assert default_file("memit", "Qwen/Qwen2.5-0.5B", "qwen2").name == "llama.yaml"
    assert default_file("rome", "google/gemma-2-2b", "gemma2").name == "gemma3.yaml"
    assert default_file("rome", "smollm2-135m", "llama").name == "smollm2-135m.yaml"
    assert set(SHARED_DEFAULTS) <= set(MODULE_MAPS)


def test_rome_and_memit_share_the_key_value_keys_and_reject_the_others(tmp_path) -> None:
    shared = {f.name for f in dataclasses.fields(KeyValueHyperParams)}
    assert {f.name for f in dataclasses.fields(ROMEHyperParams)} == shared | {"update_key"}
    assert {f.name for f in dataclasses.fields(MEMITHyperParams)} == shared | {"mom2_update_weight", "key_averaging"}
    assert (ROMEHyperParams(layers=[1]).clamp_norm_factor, MEMITHyperParams(layers=[1]).clamp_norm_factor) == (4.0, 0.75)
    path = tmp_path / "hparams.yaml"
    path.write_text("layers: [1]\nmom2_update_weight: 5000\n")
    with pytest.raises(ConfigError, match="unknown hyper-parameter 'mom2_update_weight'"):
        load_hparams("rome", ROMEHyperParams, "tiny", "llama", str(path))
    path.write_text("layers: [1]\nv_lrr: 0.5\n")
    with pytest.raises(ConfigError, match="unknown hyper-parameter 'v_lrr'; did you mean 'v_lr'"):
        load_hparams("memit", MEMITHyperParams, "tiny", "llama", str(path))


@pytest.mark.parametrize("method, hparams_class", [("rome", ROMEHyperParams), ("memit", MEMITHyperParams)])
def test_every_packaged_file_is_valid(method: str, hparams_class: type) -> None:
    files = sorted(Path(str(resources.files("pytest_kedit.editors.hparams").joinpath(method))).glob("*.yaml"))
    assert files
    for file in files:
        assert load_hparams(method, hparams_class, "tiny", "llama", str(file)).layers, file.name
