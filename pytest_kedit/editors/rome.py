"""ROME: Rank-One Model Editing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

One MLP output projection W (layer ``layers[0]``) is read as a key-value memory. For an edit
(s, r, o → o*):

    k* = mean over context templates of W's input at the subject's last token
    δ  = the shift of W's output there that makes the model say o*   (key_value.optimise_value)
    v* = W k* + δ
    W ← W + (v* − W k*) (C⁻¹k*)ᵀ / ((C⁻¹k*)ᵀ k*)

so that W'k* = v*, while keys orthogonal to C⁻¹k* (in the metric of C, the second moment of W's
keys over a text corpus) map as before. With ``mom2_adjustment: false``, C = I.

``update_key: prompt`` is the published code's choice (``--kedit-protocol=upstream``): the update
keeps the direction C⁻¹k* but is exact for the key k of the plain prompt (no context template),
W ← W + δ (C⁻¹k*)ᵀ / ((C⁻¹k*)ᵀ k), so that W'k = W k + δ. The default ``averaged`` is the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.editors.base import WeightDelta, snapshot
from pytest_kedit.editors.key_value import edit_prompts, optimise_value
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
class RankOneUpdate:
    """W' = W + (value − W key) leftᵀ / (leftᵀ key), with left = C⁻¹ key."""

    key: torch.Tensor  # (in,)
    value: torch.Tensor  # (out,)
    left: torch.Tensor  # (in,)
    #: v* − W k*, the optimised shift
    delta: torch.Tensor  # (out,)

    def matrix(self) -> torch.Tensor:
        """The update, (out, in)."""
        return torch.outer(self.delta, self.left) / (self.left @ self.key)


class ROMEEditor(KeyValueEditor):
    name = "rome"
    hparams_class = ROMEHyperParams
    hparams: ROMEHyperParams

    def __init__(self, hparams: ROMEHyperParams, loaded: LoadedModel):
        if len(hparams.layers) != 1:
            raise ConfigError(f"rome: layers must name exactly one layer, got {hparams.layers}")
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
        key = found.inputs.float().mean(dim=0)  # (in,) k*, averaged over the context templates
        left = self.inverse_second_moment(self.module_name).float() @ key if hp.mom2_adjustment else key
        if hp.update_key == "prompt":
            key = found.inputs[0].float()  # (in,) the plain prompt's: "{}" is the first template
        weight = as_out_in(dict(model.named_parameters())[f"{self.module_name}.weight"], self.loaded.modules.weight_transposed)
        value = weight.float() @ key + found.delta  # (out,) v* = W k* + δ
        return RankOneUpdate(key=key, value=value, left=left, delta=found.delta)
