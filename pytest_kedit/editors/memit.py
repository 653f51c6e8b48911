"""MEMIT: Mass-Editing Memory in a Transformer (Meng et al. 2023), and MEMIT+MLE.

A batch of edits (sᵢ, rᵢ, oᵢ → oᵢ*) is written into the MLP output projections of ``layers``:

    zᵢ = hᵢ + δᵢ     the output of the last edited layer at sᵢ's last token that makes the model
                     say oᵢ* (key_value.optimise_value, δ added to the whole layer's output)
    for the l-th of the L edited layers, in order:
        K = the layer's keys, one row per edit, averaged over the context templates
        R = (Z − the last edited layer's current outputs) / (L − l)      (the residual, spread)
        ΔW = Rᵀ K (λC + KᵀK)⁻¹            λ = mom2_update_weight, C the second moment of keys

Keys and current outputs are read again after each layer's update, since the update changes
them. With ``mom2_adjustment: false``, C = I. The cached C⁻¹ turns the d×d solve into an n×n one
(n edits): K (λC + KᵀK)⁻¹ = (λI + K C⁻¹Kᵀ)⁻¹ K C⁻¹.

MEMIT+MLE (Multi-Label Edit, "Unveiling the Pitfalls of Knowledge Editing", 2024) is MEMIT whose
RoundEdit undo edit is one batch writing every true object of (s, r).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..cases import EditRequest
from ..probe import Encoder
from .base import Editor, WeightDelta, snapshot
from .context_templates import context_templates
from .key_value import add_update, edit_prompts, optimise_value, projection_names, read_at_subject, subject_prompt
from .second_moment import SecondMoment, second_moments

if TYPE_CHECKING:
    from ..models import LoadedModel


@dataclass
class MEMITHyperParams:
    #: the layers whose MLP output projections are rewritten; the last one holds the target z
    layers: list[int]
    v_num_grad_steps: int = 20
    v_lr: float = 0.5
    v_weight_decay: float = 0.5
    #: ‖δ‖ ≤ clamp_norm_factor · ‖the last edited layer's output at the subject‖
    clamp_norm_factor: float = 0.75
    kl_factor: float = 0.0625
    mom2_adjustment: bool = True
    #: λ: how strongly the keys of the corpus are preserved against the new ones
    mom2_update_weight: float = 20000.0
    #: [length, count] of the sampled context templates; "{}" is always the first template
    context_template_length_params: list[list[int]] = field(default_factory=lambda: [[10, 5]])
    #: corpus of the second moment: a text file or folder, a Hugging Face dataset, or null (sampled text)
    mom2_dataset: str | None = None
    #: number of token windows the second moment is computed on
    mom2_n_samples: int = 100000
    mom2_dtype: str = "float32"
    #: module whose weight is rewritten; default: the family's MLP output projection
    rewrite_module_tmp: str | None = None


class MEMITEditor(Editor):
    name = "memit"
    hparams_class = MEMITHyperParams
    batched = True

    def __init__(self, hparams: MEMITHyperParams, loaded: LoadedModel):
        super().__init__(hparams, loaded)
        self.module_names = projection_names(loaded, self.name, hparams.layers, hparams.rewrite_module_tmp)
        self.encoder = Encoder(loaded.tokenizer)
        #: where the second moments came from (corpus, samples, cache files), once they are loaded
        self.statistics_info: dict[str, Any] = {}
        self._moments: dict[str, SecondMoment] | None = None

    def apply(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest]) -> WeightDelta:
        hp, modules = self.hparams, self.loaded.modules
        delta = snapshot(model, [f"{name}.weight" for name in self.module_names])
        params = dict(model.named_parameters())
        layers = modules.module(model, modules.layers)
        templates = context_templates(self.loaded, hp.context_template_length_params)
        z_site = layers[hp.layers[-1]]
        z = self.target_outputs(model, requests).double()
        key_prompts = [subject_prompt(self.encoder, t, r, with_target=False) for r in requests for t in templates]
        for i, name in enumerate(self.module_names):
            projection = model.get_submodule(name)
            keys, outputs = read_at_subject(model, key_prompts, [(projection, "input"), (z_site, "output")], self.encoder.pad_id)
            K = keys.double().view(len(requests), len(templates), -1).mean(dim=1)
            R = (z - outputs[:: len(templates)].double()) / (len(self.module_names) - i)
            A = self._inverse_second_moment(name) @ K.T if hp.mom2_adjustment else K.T
            small = hp.mom2_update_weight * torch.eye(len(K), dtype=K.dtype, device=K.device) + K @ A
            add_update(params[f"{name}.weight"], R.T @ torch.linalg.solve(small, A.T), modules.weight_transposed)
        return delta

    def target_outputs(self, model: torch.nn.Module, requests: Sequence[EditRequest]) -> torch.Tensor:
        """z: for each request, the output of the last edited layer at the subject's last token that
        makes the model say the target, [requests, hidden]."""
        hp, modules = self.hparams, self.loaded.modules
        layers = modules.module(model, modules.layers)
        templates = context_templates(self.loaded, hp.context_template_length_params)
        targets = []
        for request in requests:
            prompts, kl_prompt = edit_prompts(self.encoder, templates, request)
            found = optimise_value(model, layers, layers[hp.layers[-1]], hp.layers[-1], prompts, kl_prompt, hp, self.encoder.pad_id)
            targets.append(found.original + found.delta)
        return torch.stack(targets)

    def _inverse_second_moment(self, name: str) -> torch.Tensor:
        if self._moments is None:
            hp = self.hparams
            self._moments, self.statistics_info = second_moments(
                self.loaded, self.module_names, hp.mom2_dataset, hp.mom2_n_samples, hp.mom2_dtype
            )
        return self._moments[name].inverse.double()


class MEMITMLEEditor(MEMITEditor):
    """MEMIT+MLE. On ConflictEdit splits it behaves exactly as MEMIT: Multi-Label Edit only changes
    RoundEdit, whose undo edit becomes one batch writing every true object of (s, r)."""

    name = "memit-mle"
    hparams_folder = "memit"
    multi_label = True
