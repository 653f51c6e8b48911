"""The registry of editing methods: the built-ins plus the entry-point group ``pytest_kedit.editors``.

A third-party package makes its method testable with ``--kedit-method=NAME`` by declaring::

    [project.entry-points."pytest_kedit.editors"]
    NAME = "their_package.module:TheirEditor"    # a subclass of pytest_kedit.Editor
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..hparams import load_hparams
from .base import Editor

if TYPE_CHECKING:
    from ..models import LoadedModel

ENTRY_POINT_GROUP = "pytest_kedit.editors"

BUILTIN = {
    "ft": "pytest_kedit.editors.ft:FTEditor",
    "rome": "pytest_kedit.editors.rome:ROMEEditor",
    "memit": "pytest_kedit.editors.memit:MEMITEditor",
    "memit-mle": "pytest_kedit.editors.memit:MEMITMLEEditor",
    "mend": "pytest_kedit.editors.mend:MENDEditor",
}


def available() -> dict[str, str]:
    """Method name -> "module:Class", built-ins first; an installed plugin may not shadow a built-in."""
    methods = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        methods.setdefault(ep.name, ep.value)
    return methods


def editor_class(method: str) -> type[Editor]:
    methods = available()
    if method not in methods:
        raise ConfigError(f"unknown editing method {method!r}; available: {', '.join(sorted(methods))}")
    module_name, _, attr = methods[method].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"method {method!r}: cannot import {methods[method]}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Editor)):
        raise ConfigError(f"method {method!r}: {methods[method]} is not a pytest_kedit.Editor subclass")
    return cls


def create_editor(method: str, loaded: LoadedModel, hparams_path: str | None = None) -> Editor:
    """The editor for ``method`` on ``loaded``, with its packaged defaults or the YAML at ``hparams_path``."""
    cls = editor_class(method)
    hparams = load_hparams(cls.hparams_folder or cls.name, cls.hparams_class, loaded.name, loaded.family, hparams_path,
                           cls.hparams_package)
    return cls(hparams, loaded)
