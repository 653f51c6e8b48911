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
import re
import types
import typing
from collections import abc
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
    """``hparams_class`` made from the mapping ``data`` read from ``source`` (a file, or a
    method's defaults). Every value is checked against its field's type (:func:`_converted`:
    scalars, ``Literal``, ``X | None``, lists, tuples, dicts and nested dataclasses, as deep as
    they go); every problem is one ConfigError naming ``source``, the key (``optimizer.lr`` in a
    nested dataclass) and the type the key wants."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of hyper-parameters, got {type(data).__name__}")
    return _parsed(data, hparams_class, source, "")


def _parsed(data: dict[Any, Any], hparams_class: type, source: str, prefix: str) -> Any:
    """:func:`parse_hparams` of the mapping of a dataclass whose keys are named ``prefix`` + key
    in errors (``""`` at the top, ``"optimizer."`` for a nested one)."""
    fields = {f.name: f for f in dataclasses.fields(hparams_class)}
    hints = typing.get_type_hints(hparams_class)
    values = {}
    for key, value in data.items():
        if not prefix and key in DESCRIPTIVE_KEYS and key not in fields:
            continue
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; known keys: {sorted(prefix + name for name in fields)}"
            raise ConfigError(f"{source}: unknown hyper-parameter {prefix + str(key)!r}{hint}")
        try:
            values[key] = _converted(value, hints[key], source, f"{prefix}{key}")
        except _Mismatch:
            raise ConfigError(f"{source}: hyper-parameter {prefix + key!r} must be {_type_name(hints[key])}, "
                              f"got {value!r}") from None
    missing = [prefix + name for name in _required_fields(hparams_class) if name not in values]
    if missing:
        raise ConfigError(f"{source}: missing hyper-parameters {missing}")
    return hparams_class(**values)


def _required_fields(hparams_class: type) -> list[str]:
    """The fields of the dataclass without a default."""
    return [f.name for f in dataclasses.fields(hparams_class)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


#: A number in scientific notation without a dot (``2e-2``), which YAML 1.1 (PyYAML) reads as a
#: string; EasyEdit's published files write numbers so and read them as numbers.
_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


class _Mismatch(Exception):
    """A value is not of the type its field wants (:func:`_parsed` names the key and the type)."""


#: The generic origins read from a YAML list, and those read from a YAML mapping.
_SEQUENCES = (list, abc.Sequence, abc.MutableSequence)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


def _converted(value: Any, hint: Any, source: str, key: str) -> Any:
    """``value`` as a field of type ``hint`` holds it, or :class:`_Mismatch`. Scalars are kept as
    they are (an int is a float), but for a float a string in EasyEdit's notation (``2e-2``:
    :data:`_SCIENTIFIC`) is read as the number; a list is checked item by item, and a list or tuple given for
    a tuple becomes a tuple (of the fixed length ``tuple[X, Y]`` names); a mapping is checked
    key and value, and becomes the nested dataclass a field of that type wants (its own keys
    checked by :func:`_parsed`, errors naming ``key.subkey``). A type this check does not know is
    a ConfigError naming the key, for the editor's author."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _converted(value, arg, source, key)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        return _checked(value, any(value == choice and type(value) is type(choice) for choice in args))
    if hint is type(None) or hint is None:
        return _checked(value, value is None)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _parsed(_checked(value, isinstance(value, dict)), hint, source, f"{key}.")
    if hint in _SEQUENCES or origin in _SEQUENCES:
        item = args[0] if args else typing.Any
        return [_converted(v, item, source, key) for v in _checked(value, isinstance(value, (list, tuple)))]
    if hint is tuple or origin is tuple:
        items = _checked(value, isinstance(value, (list, tuple)))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_converted(v, args[0], source, key) for v in items)
        if args:
            _checked(value, len(items) == len(args))
            return tuple(_converted(v, arg, source, key) for v, arg in zip(items, args))
        return tuple(items)
    if hint in _MAPPINGS or origin in _MAPPINGS:
        key_type, value_type = args if args else (typing.Any, typing.Any)
        return {_converted(k, key_type, source, key): _converted(v, value_type, source, key)
                for k, v in _checked(value, isinstance(value, dict)).items()}
    if hint is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value):
            return float(value)
        return _checked(value, isinstance(value, (int, float)) and not isinstance(value, bool))
    if hint is int:
        return _checked(value, isinstance(value, int) and not isinstance(value, bool))
    if isinstance(hint, type):
        return _checked(value, isinstance(value, hint))
    raise ConfigError(f"{source}: hyper-parameter {key!r} has a type pytest-kedit cannot check: {_type_name(hint)}")


def _checked(value: Any, conforms: bool) -> Any:
    """``value`` when it ``conforms``; :class:`_Mismatch` otherwise."""
    if not conforms:
        raise _Mismatch
    return value


def _type_name(hint: Any) -> str:
    """``hint`` as an error shows it: ``int``, ``list[int]``, ``tuple[int, ...]``, ``Inner | None``,
    ``'a' or 'b'`` for a Literal."""
    if hint is type(None) or hint is None:
        return "None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None:
        return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is typing.Literal:
        return " or ".join(repr(arg) for arg in args)
    parts = ["..." if arg is Ellipsis else _type_name(arg) for arg in args]
    return f"{getattr(origin, '__name__', str(origin))}[{', '.join(parts)}]"
