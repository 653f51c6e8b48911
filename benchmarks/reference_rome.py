"""A straightforward ROME, the way the published scripts compute it, for the speed comparison only.

Same mathematics and hyper-parameters as ``pytest_kedit.editors.rome``, none of its shortcuts:
k* comes from its own forward pass over the templates; every optimisation step runs the whole
model on every full prompt and computes the logits at every position; the loss is read from them.
Context templates and the second moment are cached, as the published code caches them in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from pytest_kedit.cases import EditRequest
from pytest_kedit.editors.context_templates import context_templates
from pytest_kedit.editors.key_value import KL_PROMPT, SubjectPrompt, as_out_in, subject_prompt
from pytest_kedit.editors.rome import RankOneUpdate, ROMEEditor


class ReferenceROME(ROMEEditor):
    name = "rome-reference"

    def rank_one_update(self, model: torch.nn.Module, request: EditRequest) -> RankOneUpdate:
        hp = self.hparams
        templates = context_templates(self.loaded, hp.context_template_length_params)
        prompts = [subject_prompt(self.encoder, t, request) for t in templates]
        kl_request = EditRequest(request.subject, KL_PROMPT, request.target)
        kl_prompt = subject_prompt(self.encoder, "{}", kl_request, with_target=False)
        projection = model.get_submodule(self.module_name)

        key = self._keys(model, projection, prompts).mean(dim=0)
        left = self._inverse_second_moment() @ key if hp.mom2_adjustment else key
        shift = self._optimise(model, projection, prompts, kl_prompt)
        weight = as_out_in(dict(model.named_parameters())[f"{self.module_name}.weight"], self.loaded.modules.weight_transposed)
        return RankOneUpdate(key=key, value=weight.float() @ key + shift, left=left, delta=shift)

    def _batch(self, prompts: Sequence[SubjectPrompt]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p.ids) for p in prompts)
        ids = torch.full((len(prompts), width), self.encoder.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, : len(p.ids)] = torch.tensor(p.ids)
            mask[i, : len(p.ids)] = 1
        return ids.to(self.loaded.device), mask.to(self.loaded.device)

    @torch.no_grad()
    def _keys(self, model: torch.nn.Module, projection: torch.nn.Module, prompts: Sequence[SubjectPrompt]) -> torch.Tensor:
        keys = []
        handle = projection.register_forward_hook(
            lambda m, args, out: keys.append(args[0][range(len(prompts)), [p.subject_last for p in prompts]].float())
        )
        try:
            ids, mask = self._batch(prompts)
            model(input_ids=ids, attention_mask=mask)
        finally:
            handle.remove()
        return keys[0]

    def _optimise(
        self, model: torch.nn.Module, projection: torch.nn.Module, prompts: Sequence[SubjectPrompt], kl_prompt: SubjectPrompt
    ) -> torch.Tensor:
        hp = self.hparams
        rows = [*prompts, kl_prompt]
        ids, mask = self._batch(rows)
        lookups = [p.subject_last for p in rows]
        device = self.loaded.device
        delta = torch.zeros(model.config.get_text_config().hidden_size, device=device, requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=hp.v_lr)
        original: list[torch.Tensor] = []

        def shift(module: torch.nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
            if not original:
                original.append(out[0, lookups[0]].detach().float())
            out = out.clone()
            for i, idx in enumerate(lookups):
                out[i, idx] += delta
            return out

        handle = projection.register_forward_hook(shift)
        kl_reference = None
        try:
            for step in range(hp.v_num_grad_steps):
                optimizer.zero_grad()
                log_probs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
                nll = torch.stack(
                    [
                        -torch.stack([log_probs[i, len(p.prompt_ids) - 1 + j, t] for j, t in enumerate(p.targets)]).mean()
                        for i, p in enumerate(prompts)
                    ]
                ).mean()
                kl_log_probs = log_probs[len(prompts), kl_prompt.subject_last]
                if kl_reference is None:
                    kl_reference = kl_log_probs.detach()
                kl = hp.kl_factor * (kl_log_probs.exp() * (kl_log_probs - kl_reference)).sum()
                loss = nll + kl + hp.v_weight_decay * delta.norm() / original[0].norm() ** 2
                if loss.item() < 5e-2 or step == hp.v_num_grad_steps - 1:
                    break
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    max_norm = hp.clamp_norm_factor * original[0].norm()
                    if delta.norm() > max_norm:
                        delta.mul_(max_norm / delta.norm())
        finally:
            handle.remove()
        return delta.detach()
