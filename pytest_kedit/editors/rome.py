"""ROME: Rank-One Model Editing (Meng et al. 2022, "Locating and Editing Factual Associations in
GPT"), and r-ROME (Gupta et al. 2024, "Rebuilding ROME").

One MLP output projection W (layer ``layers[0]``) is read as a key-value memory. For an edit
(s, r, o → o*):

    k* = mean over context templates of W's input at the subject's last token
    k₀ = W's input there in the plain prompt (no template)
    δ  = the shift of W's output there that makes the model say o*   (key_value.optimise_value)
    W ← W + (v − W k) (C⁻¹k*)ᵀ / ((C⁻¹k*)ᵀ k)                          so that W' k = v

Keys orthogonal to C⁻¹k* (in the metric of C, the second moment of W's keys over a text corpus)
map as before; with ``mom2_adjustment: false``, C = I. The variants differ in the key k the
update is exact for and the value v written there:

    ROME, ``update_key: averaged`` (the paper)         k = k*,  v = W k* + δ
    ROME, ``update_key: prompt`` (the published code)  k = k₀,  v = W k₀ + δ
    r-ROME                                             k = k*,  v = W k₀ + δ

δ is optimised with W's output at k₀ as the starting point, so the published code writes it on
k₀ and the paper on k*; r-ROME writes the optimised output W k₀ + δ on the averaged key k*, which
removes the "disabling edits" of sequential ROME. ``--kedit-protocol=upstream`` sets ROME's
``update_key: prompt``; r-ROME has no such key and stays r-ROME.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.editors.base import WeightDelta, snapshot
from pytest_kedit.editors.key_value import Value, edit_prompts, optimise_value
from pytest_kedit.editors.key_value_editor import KeyValueEditor, KeyValueHyperParams, add_update, as_out_in
from pytest_kedit.errors import ConfigError

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel


@dataclass
class ROMEHyperParams(KeyValueHyperParams):
    """ROME's keys: ``layers`` names the one layer whose MLP output projection W is rewritten; the
    clamp is relative to W's output at the subject."""

    #: the key the update is exact for: ``averaged`` (k*, over the context templates, as the ROME
    #: paper writes it) or ``prompt`` (the plain prompt's, as the published code computes it)
    update_key: Literal["averaged", "prompt"] = "averaged"


@dataclass
class RROMEHyperParams(KeyValueHyperParams):
    """r-ROME's keys: ROME's, without ``update_key`` (r-ROME's key and value are its definition)."""


@dataclass
class RankOneUpdate:
    """W' = W + (value − W key) leftᵀ / (leftᵀ key), with left = C⁻¹ k*."""

    key: torch.Tensor  # (in,)
    value: torch.Tensor  # (out,)
    left: torch.Tensor  # (in,)
    #: value − W key, what the update adds to W's output at the key
    delta: torch.Tensor  # (out,)

    def matrix(self) -> torch.Tensor:
        """The update, (out, in)."""
        return torch.outer(self.delta, self.left) / (self.left @ self.key)


class RankOneEditor(KeyValueEditor):
    """What the ROME variants share: one layer, one rank-one update per request, along C⁻¹k*;
    :meth:`written` says where the update is exact and what it writes there."""

    def __init__(self, hparams: KeyValueHyperParams, loaded: LoadedModel):
        if len(hparams.layers) != 1:
            raise ConfigError(f"{self.name}: layers must name exactly one layer, got {hparams.layers}")
        super().__init__(hparams, loaded)
        (self.module_name,) = self.module_names

    def apply(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest]) -> WeightDelta:
        weight_name = f"{self.module_name}.weight"
        delta = snapshot(model, [weight_name])
        weight = dict(model.named_parameters())[weight_name]
        for request in requests:
            add_update(weight, self.rank_one_update(model, request).matrix(), self.loaded.modules.weight_transposed)
        return delta

    def rank_one_update(self, model: torch.nn.Module, request: EditRequest) -> RankOneUpdate:
        hp = self.hparams
        prompts, kl_prompt = edit_prompts(self.encoder, self.context_templates(), request)
        below = self.layers_below(hp.layers[0])
        found = optimise_value(model, self.module_name, below, prompts, kl_prompt, hp, self.encoder.pad_id)
        averaged = found.inputs.float().mean(dim=0)  # (in,) k*, averaged over the context templates
        left = self.inverse_second_moment(self.module_name).float() @ averaged if hp.mom2_adjustment else averaged
        weight = as_out_in(dict(model.named_parameters())[f"{self.module_name}.weight"], self.loaded.modules.weight_transposed).float()
        key, delta = self.written(found, averaged, weight)
        return RankOneUpdate(key=key, value=weight @ key + delta, left=left, delta=delta)

    @abstractmethod
    def written(self, found: Value, averaged: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The key the update is exact for, and what it adds to W's output there, given the
        optimised value ``found`` (its inputs: the key in each template, "{}" first), k*
        (``averaged``) and W, (out, in)."""


class ROMEEditor(RankOneEditor):
    name = "rome"
    hparams_class = ROMEHyperParams
    hparams: ROMEHyperParams

    def written(self, found: Value, averaged: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """δ, at k* (``update_key: averaged``) or at the plain prompt's key k₀ (``prompt``)."""
        if self.hparams.update_key == "prompt":
            return found.inputs[0].float(), found.delta  # "{}" is the first template
        return averaged, found.delta


class RROMEEditor(RankOneEditor):
    """r-ROME: the optimised output of the plain prompt, W k₀ + δ, written at k*."""

    name = "r-rome"
    hparams_class = RROMEHyperParams
    hparams: RROMEHyperParams

    def written(self, found: Value, averaged: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """At k*, W k₀ + δ − W k*."""
        return averaged, found.delta + weight @ (found.inputs[0].float() - averaged)
