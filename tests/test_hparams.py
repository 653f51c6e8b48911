"""Packaged hyper-parameters: every built-in method has defaults for every supported family."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Literal, Optional

import pytest

from pytest_kedit.editors import BUILTIN, editor_class
from pytest_kedit.editors.alphaedit import AlphaEditHyperParams
from pytest_kedit.editors.emmet import EMMETHyperParams
from pytest_kedit.editors.hparams import SHARED_DEFAULTS, default_file, load_hparams
from pytest_kedit.editors.key_value_editor import KeyValueHyperParams
from pytest_kedit.editors.memit import MEMITHyperParams
from pytest_kedit.editors.rome import ROMEHyperParams, RROMEHyperParams
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.architectures import MODULE_MAPS

#: MEMIT measured destructive on Gemma 3 at every setting tried (docs/editors.md): no packaged
#: default for it, nor for the methods that write MEMIT's residual of a layer's output.
WITHOUT_DEFAULTS = {(method, family) for method in ("memit", "alphaedit", "emmet") for family in ("gemma", "gemma2", "gemma3", "gemma3_text")}


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


def test_the_locate_and_edit_methods_share_the_key_value_keys_and_reject_the_others(tmp_path) -> None:
    shared = {f.name for f in dataclasses.fields(KeyValueHyperParams)}
    memit = shared | {"mom2_update_weight", "key_averaging"}
    assert {f.name for f in dataclasses.fields(ROMEHyperParams)} == shared | {"update_key"}
    assert {f.name for f in dataclasses.fields(RROMEHyperParams)} == shared
    assert {f.name for f in dataclasses.fields(MEMITHyperParams)} == memit
    assert {f.name for f in dataclasses.fields(AlphaEditHyperParams)} == memit | {"nullspace_threshold", "L2"}
    assert {f.name for f in dataclasses.fields(EMMETHyperParams)} == memit | {"emmet_lambda", "update_norm_lambda"}
    assert (ROMEHyperParams(layers=[1]).clamp_norm_factor, MEMITHyperParams(layers=[1]).clamp_norm_factor) == (4.0, 0.75)
    path = tmp_path / "hparams.yaml"
    path.write_text("layers: [1]\nmom2_update_weight: 5000\n")
    with pytest.raises(ConfigError, match="unknown hyper-parameter 'mom2_update_weight'"):
        load_hparams("rome", ROMEHyperParams, "tiny", "llama", str(path))
    path.write_text("layers: [1]\nv_lrr: 0.5\n")
    with pytest.raises(ConfigError, match="unknown hyper-parameter 'v_lrr'; did you mean 'v_lr'"):
        load_hparams("memit", MEMITHyperParams, "tiny", "llama", str(path))


@pytest.mark.parametrize("method, hparams_class", [
    ("rome", ROMEHyperParams), ("r-rome", RROMEHyperParams), ("memit", MEMITHyperParams),
    ("alphaedit", AlphaEditHyperParams), ("emmet", EMMETHyperParams),
])
def test_every_packaged_file_is_valid(method: str, hparams_class: type) -> None:
    files = sorted(Path(str(resources.files("pytest_kedit.editors.hparams").joinpath(method))).glob("*.yaml"))
    assert files
    for file in files:
        assert load_hparams(method, hparams_class, "tiny", "llama", str(file)).layers, file.name


@dataclasses.dataclass
class Schedule:
    warmup: int
    decay: float = 0.5


@dataclasses.dataclass
class ThirdPartyHyperParams:
    """A third-party editor's hyper-parameters, with the field types a dataclass can have."""

    weights: dict[str, int]
    layers: tuple[int, ...]
    pair: tuple[int, str] = (0, "a")
    schedule: Schedule | None = None
    mode: Literal["fast", "exact"] = "fast"
    names: list[str] = dataclasses.field(default_factory=list)
    scale: Optional[float] = None  # noqa: UP045  (the typing spelling, as older code writes it)


def test_a_third_party_dataclass_with_dicts_tuples_and_a_nested_dataclass_reads_its_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("weights: {mlp: 2, attn: 1}\nlayers: [3, 4]\npair: [1, b]\nschedule: {warmup: 10}\n"
                    "mode: exact\nnames: [x]\nscale: 2\n")
    hparams = load_hparams("mine", ThirdPartyHyperParams, "tiny", "llama", str(path))
    assert hparams == ThirdPartyHyperParams({"mlp": 2, "attn": 1}, (3, 4), (1, "b"), Schedule(10), "exact", ["x"], 2)
    assert isinstance(hparams.layers, tuple) and isinstance(hparams.schedule, Schedule)
    path.write_text("weights: {}\nlayers: []\nschedule: null\n")
    assert load_hparams("mine", ThirdPartyHyperParams, "tiny", "llama", str(path)).schedule is None


@pytest.mark.parametrize(("text", "message"), [
    ("weights: {mlp: two}\nlayers: [1]\n", "hyper-parameter 'weights' must be dict[str, int], got {'mlp': 'two'}"),
    ("weights: [1]\nlayers: [1]\n", "hyper-parameter 'weights' must be dict[str, int], got [1]"),
    ("weights: {}\nlayers: [1, 2.5]\n", "hyper-parameter 'layers' must be tuple[int, ...], got [1, 2.5]"),
    ("weights: {}\nlayers: 3\n", "hyper-parameter 'layers' must be tuple[int, ...], got 3"),
    ("weights: {}\nlayers: []\npair: [1, b, c]\n", "hyper-parameter 'pair' must be tuple[int, str], got [1, 'b', 'c']"),
    ("weights: {}\nlayers: []\nschedule: {warmup: soon}\n", "hyper-parameter 'schedule.warmup' must be int, got 'soon'"),
    ("weights: {}\nlayers: []\nschedule: {warmpu: 1}\n", "unknown hyper-parameter 'schedule.warmpu'; did you mean 'schedule.warmup'?"),
    ("weights: {}\nlayers: []\nschedule: {decay: 0.1}\n", "missing hyper-parameters ['schedule.warmup']"),
    ("weights: {}\nlayers: []\nschedule: 3\n", "hyper-parameter 'schedule' must be Schedule | None, got 3"),
    ("weights: {}\nlayers: []\nmode: slow\n", "hyper-parameter 'mode' must be 'fast' or 'exact', got 'slow'"),
    ("weights: {}\nlayers: []\nscale: yes\n", "hyper-parameter 'scale' must be float | None, got True"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_the_file_the_key_and_the_type(tmp_path: Path, text: str,
                                                                                     message: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_hparams("mine", ThirdPartyHyperParams, "tiny", "llama", str(path))
    assert str(caught.value) == f"{path}: {message}"


def test_values_the_check_accepted_before_are_kept_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "rome.yaml"
    path.write_text("layers: [1]\nv_lr: 1\nclamp_norm_factor: 4\n")
    hparams = load_hparams("rome", ROMEHyperParams, "tiny", "llama", str(path))
    assert (hparams.layers, hparams.v_lr, hparams.clamp_norm_factor) == ([1], 1, 4)
    assert type(hparams.v_lr) is int and type(hparams.layers) is list  # the provenance records them as written
