"""The registry of editing methods: the built-ins plus the entry-point group ``pytest_kedit.editors``.

A third-party package makes its method testable with ``--kedit-method=NAME`` by declaring::

    [project.entry-points."pytest_kedit.editors"]
    NAME = "their_package.module:TheirEditor"    # a subclass of pytest_kedit.Editor
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pytest_kedit.editors.base import Editor
from pytest_kedit.editors.hparams import load_hparams
from pytest_kedit.errors import ConfigError

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

ENTRY_POINT_GROUP = "pytest_kedit.editors"

BUILTIN = {
    "ft": "pytest_kedit.editors.ft:FTEditor",
    "rome": "pytest_kedit.editors.rome:ROMEEditor",
    "memit": "pytest_kedit.editors.memit:MEMITEditor",
    "memit-mle": "pytest_kedit.editors.memit:MEMITMLEEditor",
    "r-rome": "pytest_kedit.editors.rome:RROMEEditor",
    "alphaedit": "pytest_kedit.editors.alphaedit:AlphaEditEditor",
    "alphaedit-mle": "pytest_kedit.editors.alphaedit:AlphaEditMLEEditor",
    "emmet": "pytest_kedit.editors.emmet:EMMETEditor",
    "mend": "pytest_kedit.editors.mend.editor:MENDEditor",
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


def create_editor(method: str, loaded: LoadedModel, hparams_path: str | None = None,
                  protocol_defaults: Mapping[str, Any] | None = None) -> Editor:
    """The editor for ``method`` on ``loaded``, with its packaged defaults or the YAML at ``hparams_path``;
    ``protocol_defaults`` (``--kedit-protocol``'s) set the keys the method has, over the packaged
    defaults but under a key the file at ``hparams_path`` sets."""
    cls = editor_class(method)
    hparams = load_hparams(cls.hparams_folder or cls.name, cls.hparams_class, loaded.name, loaded.family, hparams_path,
                           cls.hparams_package, protocol_defaults)
    return cls(hparams, loaded)
