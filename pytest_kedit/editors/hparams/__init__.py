"""Hyper-parameters: packaged YAML defaults per method and model, checked against the method's dataclass.

Keys are EasyEdit's names. Defaults live in ``hparams/<method>/<model>.yaml`` (a third-party
editor's in its own package: ``Editor.hparams_package``), found by the model's name (``gpt2-xl``,
``smollm2-135m``) first, then by its architecture family (``gptj``, ``llama``), then by the file the
family shares (:data:`SHARED_DEFAULTS`). A method without a file for the model runs on its
dataclass's defaults when every field has one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pytest_kedit.errors import ConfigError

if TYPE_CHECKING:
    from importlib.abc import Traversable  # importlib.resources.abc from Python 3.11 on

#: Keys EasyEdit files carry that say what the file is for rather than how to edit.
DESCRIPTIVE_KEYS = ("alg_name", "model_name")


#: Family -> the file its models use when neither they nor the family have one: the published
#: defaults of the family's reference model, or those of a family with the same block layout.
SHARED_DEFAULTS = {
    "gpt2": "gpt2-xl",
    "gptj": "gpt-j-6b",
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "gemma": "gemma3",
    "gemma2": "gemma3",
    "gemma3_text": "gemma3",
}


def model_keys(model_name: str, family: str) -> list[str]:
    """File stems to look for, most specific first: ``EleutherAI/gpt-j-6B`` -> gpt-j-6b, the family, the
    file the family shares."""
    stem = Path(model_name.rstrip("/")).name.lower()
    return [stem, family, *([SHARED_DEFAULTS[family]] if family in SHARED_DEFAULTS else [])]


def defaults_folder(method: str, package: str | None = None) -> Traversable:
    """Where a method's default files live: ``package`` (a third-party editor's), else
    ``pytest_kedit/hparams/<method>``."""
    try:
        return resources.files(package) if package else resources.files(__package__).joinpath(method)
    except ModuleNotFoundError:
        raise ConfigError(f"method {method!r}: its hyper-parameter package {package!r} cannot be imported") from None


def find_default_file(method: str, model_name: str, family: str, package: str | None = None) -> Path | None:
    """The most specific default file for the model (:func:`model_keys`), or None."""
    folder = defaults_folder(method, package)
    for key in model_keys(model_name, family):
        candidate = folder.joinpath(f"{key}.yaml")
        if candidate.is_file():
            return Path(str(candidate))
    return None


def default_file(method: str, model_name: str, family: str, package: str | None = None) -> Path:
    """:func:`find_default_file`, or a ConfigError saying where it looked."""
    found = find_default_file(method, model_name, family, package)
    if found is None:
        raise _no_default_file(method, model_name, family, package)
    return found


def _no_default_file(method: str, model_name: str, family: str, package: str | None) -> ConfigError:
    return ConfigError(
        f"no default hyper-parameters for method {method!r} on model {model_name!r} (family {family!r}); "
        f"looked for {[k + '.yaml' for k in model_keys(model_name, family)]} in {defaults_folder(method, package)}; "
        "pass --kedit-hparams=FILE"
    )


def load_hparams(
    method: str, hparams_class: type, model_name: str, family: str, path: str | None = None, package: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """``hparams_class`` from the YAML at ``path``, else from the method's default file for the
    model, else from the dataclass's own defaults when every field has one.

    ``overrides`` (a protocol's choices, :mod:`pytest_kedit.benchmark.protocol`) set those of their
    keys that ``hparams_class`` has: over the default file and the dataclass's defaults, but not
    over a key the user's file at ``path`` sets."""
    known = {f.name for f in dataclasses.fields(hparams_class)}
    chosen = {key: value for key, value in (overrides or {}).items() if key in known}
    if path:
        return parse_hparams(_merged(chosen, _read_yaml(Path(path))), hparams_class, str(Path(path)))
    found = find_default_file(method, model_name, family, package)
    if found is not None:
        return parse_hparams(_merged(_read_yaml(found), chosen), hparams_class, str(found))
    if not _required_fields(hparams_class):
        return parse_hparams(chosen, hparams_class, f"{method}'s defaults") if chosen else hparams_class()
    raise _no_default_file(method, model_name, family, package)


def read_hparams(file: Path, hparams_class: type) -> Any:
    """Read one YAML file into ``hparams_class``. Any encoding YAML allows (UTF-8, or UTF-16/32
    with a byte-order mark); every problem is a ConfigError naming the file."""
    return parse_hparams(_read_yaml(file), hparams_class, str(file))


def _merged(under: Any, over: Any) -> Any:
    """The keys of ``over`` set over those of ``under``, when both are mappings; otherwise the
    one that is not (for :func:`parse_hparams` to reject)."""
    if not isinstance(under, dict):
        return under
    if not isinstance(over, dict):
        return over
    return {**under, **over}


def _read_yaml(file: Path) -> Any:
    """The YAML document in ``file`` ({} for an empty one), or a ConfigError naming the file."""
    try:
        data = yaml.safe_load(file.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read hyper-parameters {file}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{file}: not valid YAML: {first}") from None
    return data or {}


def parse_hparams(data: Any, hparams_class: type, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of hyper-parameters, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(hparams_class)}
    hints = typing.get_type_hints(hparams_class)
    values = {}
    for key, value in data.items():
        if key in DESCRIPTIVE_KEYS and key not in fields:
            continue
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {sorted(fields)}"
            raise ConfigError(f"{source}: unknown hyper-parameter {key!r}{hint}")
        if not _conforms(value, hints[key]):
            raise ConfigError(f"{source}: hyper-parameter {key!r} must be {_type_name(hints[key])}, got {value!r}")
        values[key] = value
    missing = [name for name in _required_fields(hparams_class) if name not in values]
    if missing:
        raise ConfigError(f"{source}: missing hyper-parameters {missing}")
    return hparams_class(**values)


def _required_fields(hparams_class: type) -> list[str]:
    """The fields of the dataclass without a default."""
    return [f.name for f in dataclasses.fields(hparams_class)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def _conforms(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "")
