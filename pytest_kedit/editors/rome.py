"""ROME: Rank-One Model Editing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

One MLP output projection W (layer ``layers[0]``) is read as a key-value memory. For an edit
(s, r, o → o*):

    k* = mean over context templates of W's input at the subject's last token
    δ  = the shift of W's output there that makes the model say o*   (key_value.optimise_value)
    v* = W k* + δ
    W ← W + (v* − W k*) (C⁻¹k*)ᵀ / ((C⁻¹k*)ᵀ k*)

so that W'k* = v*, while keys orthogonal to C⁻¹k* (in the metric of C, the second moment of W's
keys over a text corpus) map as before. With ``mom2_adjustment: false``, C = I.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..cases import EditRequest
from ..errors import ConfigError
from ..probe import Encoder
from .base import Editor, WeightDelta, snapshot
from .context_templates import context_templates
from .key_value import add_update, as_out_in, edit_prompts, optimise_value, projection_names
from .second_moment import SecondMoment, second_moments

if TYPE_CHECKING:
    from ..models import LoadedModel


@dataclass
class ROMEHyperParams:
    #: the one layer whose MLP output projection is rewritten
    layers: list[int]
    v_num_grad_steps: int = 20
    v_lr: float = 0.5
    v_weight_decay: float = 0.5
    #: ‖δ‖ ≤ clamp_norm_factor · ‖W's output at the subject‖
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    #: [length, count] of the sampled context templates; "{}" is always the first template
    context_template_length_params: list[list[int]] = field(default_factory=lambda: [[5, 10], [10, 10]])
    mom2_adjustment: bool = True
    #: corpus of the second moment: a text file or folder, a Hugging Face dataset, or null (sampled text)
    mom2_dataset: str | None = None
    #: number of token windows the second moment is computed on
    mom2_n_samples: int = 100000
    mom2_dtype: str = "float32"
    #: module whose weight is rewritten; default: the family's MLP output projection
    rewrite_module_tmp: str | None = None


@dataclass
class RankOneUpdate:
    """W' = W + (value − W key) leftᵀ / (leftᵀ key), with left = C⁻¹ key."""

    key: torch.Tensor
    value: torch.Tensor
    left: torch.Tensor
    #: v* − W k*, the optimised shift
    delta: torch.Tensor

    def matrix(self) -> torch.Tensor:
        """The update, (out, in)."""
        return torch.outer(self.delta, self.left) / (self.left @ self.key)


class ROMEEditor(Editor):
    name = "rome"
    hparams_class = ROMEHyperParams

    def __init__(self, hparams: ROMEHyperParams, loaded: LoadedModel):
        super().__init__(hparams, loaded)
        if len(hparams.layers) != 1:
            raise ConfigError(f"rome: layers must name exactly one layer, got {hparams.layers}")
        (self.module_name,) = projection_names(loaded, self.name, hparams.layers, hparams.rewrite_module_tmp)
        self.encoder = Encoder(loaded.tokenizer)
        #: where the second moment came from (corpus, samples, cache files), once it is loaded
        self.statistics_info: dict[str, Any] = {}
        self._moment: SecondMoment | None = None

    def apply(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest]) -> WeightDelta:
        weight_name = f"{self.module_name}.weight"
        delta = snapshot(model, [weight_name])
        weight = dict(model.named_parameters())[weight_name]
        for request in requests:
            add_update(weight, self.rank_one_update(model, request).matrix(), self.loaded.modules.weight_transposed)
        return delta

    def rank_one_update(self, model: torch.nn.Module, request: EditRequest) -> RankOneUpdate:
        hp, modules = self.hparams, self.loaded.modules
        layer = hp.layers[0]
        templates = context_templates(self.loaded, hp.context_template_length_params)
        prompts, kl_prompt = edit_prompts(self.encoder, templates, request)
        projection = model.get_submodule(self.module_name)
        found = optimise_value(
            model, modules.module(model, modules.layers), projection, layer, prompts, kl_prompt, hp, self.encoder.pad_id
        )
        key = found.inputs.float().mean(dim=0)
        left = self._inverse_second_moment() @ key if hp.mom2_adjustment else key
        weight = as_out_in(dict(model.named_parameters())[f"{self.module_name}.weight"], modules.weight_transposed)
        value = weight.float() @ key + found.delta
        return RankOneUpdate(key=key, value=value, left=left, delta=found.delta)

    def _inverse_second_moment(self) -> torch.Tensor:
        if self._moment is None:
            hp = self.hparams
            moments, self.statistics_info = second_moments(
                self.loaded, [self.module_name], hp.mom2_dataset, hp.mom2_n_samples, hp.mom2_dtype
            )
            self._moment = moments[self.module_name]
        return self._moment.inverse.float()
