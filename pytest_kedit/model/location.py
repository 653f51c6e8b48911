"""Where the weights a model name (``--kedit-model``, ``--model``) stand: an embedded alias, else a
local folder, else a Hugging Face hub id, in that order.

Deciding it reads the name and the file system only; neither torch nor transformers is imported,
so the checks before a run (:mod:`pytest_kedit.run.preflight`) use it as the loading does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pytest_kedit.model.embedded_models import EMBEDDED_MODELS, EmbeddedModel, read_converted

T = TypeVar("T")


@dataclass(frozen=True)
class ModelLocation:
    """What a model name names. ``embedded`` is set for an embedded alias; else ``folder`` for a
    local folder; else the name is a Hugging Face hub id."""

    name: str
    #: the name read as a local path (``~`` expanded), whether or not anything is there
    path: Path
    embedded: EmbeddedModel | None
    #: ``path`` resolved, when the name is not an embedded alias and ``path`` is a folder
    folder: Path | None

    def folder_or_id(self) -> str | Path:
        """What transformers' ``from_pretrained`` reads: the embedded alias's converted folder
        (made by :meth:`read`), the local folder, or the hub id."""
        if self.embedded is not None:
            return self.embedded.cache_path()
        return self.folder if self.folder is not None else self.name

    def read(self, read: Callable[[str | Path], T]) -> T:
        """``read(folder_or_id())``. An embedded alias's folder is a verified cache entry, converted
        on its first use (which loads transformers) and again when it is damaged
        (:func:`~pytest_kedit.model.embedded_models.read_converted`)."""
        if self.embedded is not None:
            return read_converted(self.embedded, read)
        return read(self.folder_or_id())


def locate_model(name: str) -> ModelLocation:
    """The location of the weights ``name`` names (see the module docstring)."""
    path = Path(name).expanduser()
    embedded = EMBEDDED_MODELS.get(name)
    folder = path.resolve() if embedded is None and path.is_dir() else None
    return ModelLocation(name, path, embedded, folder)
