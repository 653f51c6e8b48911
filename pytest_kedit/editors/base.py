"""The Editor interface: what every editing method implements, and the record of what it changed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..cases import EditRequest

if TYPE_CHECKING:
    from ..models import LoadedModel


@dataclass
class WeightDelta:
    """The parameters an edit changed, each with its value from before the edit.

    Restoring writes these values back; the model is then bit-identical to before.
    """

    originals: dict[str, torch.Tensor] = field(default_factory=dict)

    def then(self, later: WeightDelta) -> WeightDelta:
        """The delta of this edit followed by ``later``: the earliest original of each tensor wins."""
        merged = dict(later.originals)
        merged.update(self.originals)
        return WeightDelta(merged)

    def restore(self, model: torch.nn.Module) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, original in self.originals.items():
                params[name].copy_(original)


def snapshot(model: torch.nn.Module, names: Iterable[str]) -> WeightDelta:
    """Save the current value of the named parameters, to be returned by ``Editor.apply``."""
    params = dict(model.named_parameters())
    return WeightDelta({name: params[name].detach().clone() for name in names})


class Editor(ABC):
    """An editing method.

    ``hparams_class`` is a dataclass whose fields are the method's hyper-parameter keys (EasyEdit's
    names); YAML files are checked against it. ``apply`` edits the model in place and returns a
    ``WeightDelta`` built with ``snapshot`` *before* changing anything. Restoring is the harness's job.
    """

    name: ClassVar[str]
    hparams_class: ClassVar[type]
    #: folder of the packaged defaults under ``pytest_kedit/hparams``; default: ``name``
    hparams_folder: ClassVar[str | None] = None
    #: True when one ``apply`` call takes many requests at once (MEMIT-style batch editing);
    #: otherwise the harness applies a list of requests one after another.
    batched: ClassVar[bool] = False
    #: True for Multi-Label Edit: RoundEdit's undo edit writes every true object in one batch.
    multi_label: ClassVar[bool] = False

    def __init__(self, hparams: Any, loaded: LoadedModel):
        self.hparams = hparams
        self.loaded = loaded

    @abstractmethod
    def apply(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest]) -> WeightDelta:
        """Make the model produce each request's target; return what changed."""
