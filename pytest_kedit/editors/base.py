"""The Editor interface: what every editing method implements, the record of what it changed, and
the check of the modules a method rewrites."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.errors import ConfigError

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel


@dataclass
class WeightDelta:
    """What an edit changed: the parameters, each with its value from before the edit, and the
    editor's own state (keys it remembers, hooks, memories) as callables that put it back.

    Restoring writes the parameters back, then runs the callables, the last registered first; the
    model and its editor are then as before the edit.
    """

    originals: dict[str, torch.Tensor] = field(default_factory=dict)
    #: run by :meth:`restore` after the weights are written back, the last first
    undo: list[Callable[[], None]] = field(default_factory=list)

    def then(self, later: WeightDelta) -> WeightDelta:
        """The delta of this edit followed by ``later``: the earliest original of each tensor wins,
        and ``later``'s state is put back before this one's."""
        merged = dict(later.originals)
        merged.update(self.originals)
        return WeightDelta(merged, [*self.undo, *later.undo])

    def restore(self, model: torch.nn.Module) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, original in self.originals.items():
                params[name].copy_(original)
        for put_back in reversed(self.undo):
            put_back()


def snapshot(model: torch.nn.Module, names: Iterable[str]) -> WeightDelta:
    """Save the current value of the named parameters, to be returned by ``Editor.apply``."""
    params = dict(model.named_parameters())
    return WeightDelta({name: params[name].detach().clone() for name in names})


def projection_names(loaded: LoadedModel, method: str, layers: Sequence[int], template: str | None) -> list[str]:
    """The modules whose weights ``method`` rewrites (``template``, default the family's MLP output
    projection, at each of ``layers``), checked against the model."""
    n_layers = loaded.modules.n_layers(loaded.model)
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad or not layers:
        raise ConfigError(f"{method}: layers {list(layers)} must be non-empty and within 0..{n_layers - 1} for {loaded.name}")
    names = [(template or loaded.modules.mlp_out).format(layer) for layer in layers]
    params = dict(loaded.model.named_parameters())
    missing = [name for name in names if f"{name}.weight" not in params]
    if missing:
        raise ConfigError(f"{method}: rewrite_module_tmp names no weight {missing[0]!r}.weight in {loaded.name}")
    return names


class Editor(ABC):
    """An editing method.

    ``hparams_class`` is a dataclass whose fields are the method's hyper-parameter keys (EasyEdit's
    names); YAML files are checked against it. ``apply`` edits the model in place and returns a
    ``WeightDelta`` built with ``snapshot`` *before* changing anything; an editor that keeps state
    across edits adds to the delta's ``undo`` what puts that state back. Restoring is the
    harness's job: after it, model and editor are as they were before the edits.
    """

    name: ClassVar[str]
    hparams_class: ClassVar[type]
    #: folder of the packaged defaults under ``pytest_kedit/hparams``; default: ``name``
    hparams_folder: ClassVar[str | None] = None
    #: a third-party editor's own package of defaults (``<model>.yaml``, ``<family>.yaml``), e.g.
    #: ``"my_editor.hparams"``; without one, or without a file for the model, a dataclass whose
    #: fields all have defaults runs on them
    hparams_package: ClassVar[str | None] = None
    #: True when one ``apply`` call takes many requests at once (MEMIT-style batch editing);
    #: otherwise the harness applies a list of requests one after another.
    batched: ClassVar[bool] = False
    #: True for a method made to write many edits in one update (MEMIT and its kin): in a stream its
    #: batch is by default a checkpoint's edits; otherwise one edit per batch (FT, ROME, MEND)
    stream_batches: ClassVar[bool] = False
    #: True for Multi-Label Edit: RoundEdit's undo edit writes every true object in one batch.
    multi_label: ClassVar[bool] = False
    #: True when the method's float noise between thread layouts grows into its metrics even in a
    #: two-edit case (a learned update of large gain: MEND's): the harness makes every edit of it on
    #: one CPU thread, so its weights are the same in every thread layout
    edits_on_one_thread: ClassVar[bool] = False
    #: what the editor's results depend on besides its hyper-parameters and the model: the sha256
    #: of the learned weights it brings (a trained hypernetwork), the corpus of its statistics;
    #: None when nothing. A baseline made with another fingerprint does not gate its runs
    fingerprint: str | None = None

    def __init__(self, hparams: Any, loaded: LoadedModel):
        self.hparams = hparams
        self.loaded = loaded

    @abstractmethod
    def apply(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest]) -> WeightDelta:
        """Make the model produce each request's target; return what changed."""
