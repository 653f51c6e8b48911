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

``key_averaging`` says how a key is averaged over the context templates: ``flat`` (the default,
ROME's rule: every template weighs the same) or ``grouped`` (the published code's, under
``--kedit-protocol=upstream``): averaged within each group of templates ("{}" alone, then one
group per ``[length, count]`` of ``context_template_length_params``), then over the group means,
so with ``[[10, 5]]`` "{}" weighs 1/2 and each sampled template 1/10.

MEMIT+MLE (Multi-Label Edit, "Unveiling the Pitfalls of Knowledge Editing", 2024) is MEMIT whose
RoundEdit undo edit is one batch writing every true object of (s, r).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.editors.base import WeightDelta, snapshot
from pytest_kedit.editors.key_value import SubjectPrompt, edit_prompts, optimise_value, read_at_subject, subject_prompt
from pytest_kedit.editors.key_value_editor import KeyValueEditor, KeyValueHyperParams, add_update


@dataclass
class MEMITHyperParams(KeyValueHyperParams):
    """MEMIT's keys: the last of ``layers`` holds the target z, and the clamp is relative to that
    layer's output at the subject."""

    clamp_norm_factor: float = 0.75
    context_template_length_params: list[list[int]] = field(default_factory=lambda: [[10, 5]])
    #: λ: how strongly the keys of the corpus are preserved against the new ones
    mom2_update_weight: float = 20000.0
    #: ``flat`` (every context template weighs the same) or ``grouped`` (as the published code)
    key_averaging: Literal["flat", "grouped"] = "flat"


class MEMITEditor(KeyValueEditor):
    name = "memit"
    hparams_class = MEMITHyperParams
    batched = True
    stream_batches = True
    hparams: MEMITHyperParams

    def apply(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest]) -> WeightDelta:
        hp, modules = self.hparams, self.loaded.modules
        delta = snapshot(model, [f"{name}.weight" for name in self.module_names])
        params = dict(model.named_parameters())
        templates = self.context_templates()
        z_site = self.layer_name(hp.layers[-1])
        z = self.target_outputs(model, requests).double()  # (requests, hidden)
        key_prompts = self.key_prompts(requests)
        for i, name in enumerate(self.module_names):
            inputs, outputs = read_at_subject(model, key_prompts, [name, z_site], self.encoder.pad_id)
            K = self.keys(inputs[name], len(requests))
            R = (z - outputs[z_site][:: len(templates)].double()) / (len(self.module_names) - i)  # (requests, hidden)
            add_update(params[f"{name}.weight"], self.update(name, K, R), modules.weight_transposed)
        return delta

    def update(self, name: str, K: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """ΔW, (out, in), of the projection ``name`` that writes the residuals ``R`` (requests, out)
        at the keys ``K`` (requests, in), both float64: MEMIT's Rᵀ K (λC + KᵀK)⁻¹, solved as
        Rᵀ (λI + K C⁻¹Kᵀ)⁻¹ K C⁻¹. A method that differs from MEMIT only in this solve overrides it."""
        A = self.inverse_second_moment(name).double() @ K.T if self.hparams.mom2_adjustment else K.T  # (in, requests)
        small = self.hparams.mom2_update_weight * torch.eye(len(K), dtype=K.dtype, device=K.device) + K @ A  # (requests, requests)
        return R.T @ torch.linalg.solve(small, A.T)

    def key_prompts(self, requests: Sequence[EditRequest]) -> list[SubjectPrompt]:
        """Each request's prompt in each context template (templates within a request), without the
        target: where the keys are read."""
        templates = self.context_templates()
        return [subject_prompt(self.encoder, t, r, with_target=False) for r in requests for t in templates]

    def keys(self, inputs: torch.Tensor, n_requests: int) -> torch.Tensor:
        """The keys, (requests, in) in float64, from a projection's inputs at :meth:`key_prompts`:
        each request's averaged over the context templates (``key_averaging``)."""
        return average_keys(inputs.double().view(n_requests, -1, inputs.shape[-1]), self.template_groups())

    def template_groups(self) -> list[int] | None:
        """The sizes of the groups of context templates the keys are averaged in; None: flat."""
        if self.hparams.key_averaging == "flat":
            return None
        return [1, *(count for _, count in self.hparams.context_template_length_params)]

    def target_outputs(self, model: torch.nn.Module, requests: Sequence[EditRequest]) -> torch.Tensor:
        """z: for each request, the output of the last edited layer at the subject's last token that
        makes the model say the target, (requests, hidden)."""
        last = self.hparams.layers[-1]
        site, below = self.layer_name(last), self.layers_below(last)
        templates = self.context_templates()
        targets = []
        for request in requests:
            prompts, kl_prompt = edit_prompts(self.encoder, templates, request)
            found = optimise_value(model, site, below, prompts, kl_prompt, self.hparams, self.encoder.pad_id)
            targets.append(found.original + found.delta)
        return torch.stack(targets)


def average_keys(keys: torch.Tensor, groups: Sequence[int] | None) -> torch.Tensor:
    """(requests, templates, in) keys -> (requests, in): their mean over the templates, or with
    ``groups`` (consecutive group sizes, summing to the templates) the mean of the groups' means
    (an empty group is left out)."""
    if groups is None:
        return keys.mean(dim=1)
    if sum(groups) != keys.shape[1]:
        raise ValueError(f"template groups {list(groups)} do not add up to {keys.shape[1]} templates")
    bounds = [0, *itertools.accumulate(groups)]
    return torch.stack([keys[:, a:b].mean(dim=1) for a, b in zip(bounds, bounds[1:]) if b > a], dim=1).mean(dim=1)


class MEMITMLEEditor(MEMITEditor):
    """MEMIT+MLE. On ConflictEdit splits it behaves exactly as MEMIT: Multi-Label Edit only changes
    RoundEdit, whose undo edit becomes one batch writing every true object of (s, r)."""

    name = "memit-mle"
    hparams_folder = "memit"
    multi_label = True
