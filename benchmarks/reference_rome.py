"""A straightforward ROME, the way the published scripts compute it, for the speed comparison only.

Same mathematics and hyper-parameters as ``pytest_kedit.editors.rome``, none of its shortcuts:
k* comes from its own forward pass over the templates; every optimisation step runs the whole
model on every full prompt and computes the logits at every position; the loss is read from them.
Context templates and the second moment are cached, as the published code caches them in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pytest_kedit.cases import EditRequest
from pytest_kedit.editors.key_value import KL_PROMPT, SubjectPrompt, subject_prompt
from pytest_kedit.editors.key_value_editor import as_out_in
from pytest_kedit.editors.rome import RankOneUpdate, ROMEEditor
from pytest_kedit.tracing import Edit, Trace, pad


class ReferenceROME(ROMEEditor):
    name = "rome-reference"

    def rank_one_update(self, model: torch.nn.Module, request: EditRequest) -> RankOneUpdate:
        hp = self.hparams
        prompts = [subject_prompt(self.encoder, t, request) for t in self.context_templates()]
        kl_request = EditRequest(request.subject, KL_PROMPT, request.target)
        kl_prompt = subject_prompt(self.encoder, "{}", kl_request, with_target=False)

        key = self._keys(model, prompts).mean(dim=0)  # (in,)
        left = self.inverse_second_moment(self.module_name).float() @ key if hp.mom2_adjustment else key
        shift = self._optimise(model, prompts, kl_prompt)
        weight = as_out_in(dict(model.named_parameters())[f"{self.module_name}.weight"], self.loaded.modules.weight_transposed)
        return RankOneUpdate(key=key, value=weight.float() @ key + shift, left=left, delta=shift)

    def _subject_positions(self, prompts: Sequence[SubjectPrompt]) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.loaded.device
        return torch.arange(len(prompts), device=device), torch.tensor([p.subject_last for p in prompts], device=device)

    @torch.no_grad()
    def _keys(self, model: torch.nn.Module, prompts: Sequence[SubjectPrompt]) -> torch.Tensor:
        """W's input at each prompt's subject's last token: (prompts, in)."""
        batch = pad([p.ids for p in prompts], self.encoder.pad_id, self.loaded.device)
        with Trace(model, self.module_name, retain_input=True) as trace:
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        return trace.input(self.module_name)[self._subject_positions(prompts)].float()

    def _optimise(self, model: torch.nn.Module, prompts: Sequence[SubjectPrompt], kl_prompt: SubjectPrompt) -> torch.Tensor:
        hp = self.hparams
        rows = [*prompts, kl_prompt]
        batch = pad([p.ids for p in rows], self.encoder.pad_id, self.loaded.device)
        delta = torch.zeros(model.config.get_text_config().hidden_size, device=self.loaded.device, requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=hp.v_lr)
        shift = Edit(*self._subject_positions(rows), lambda h: h + delta)
        kl_reference = None
        with Trace(model, self.module_name, retain_output=True, edit_output=shift) as trace:
            for step in range(hp.v_num_grad_steps):
                optimizer.zero_grad()
                logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
                log_probs = torch.log_softmax(logits.float(), dim=-1)  # (prompts + 1, width, vocab)
                original = trace.output(self.module_name)[0, prompts[0].subject_last].float()  # (out,)
                nll = torch.stack(
                    [
                        -torch.stack([log_probs[i, len(p.prompt_ids) - 1 + j, t] for j, t in enumerate(p.targets)]).mean()
                        for i, p in enumerate(prompts)
                    ]
                ).mean()
                kl_log_probs = log_probs[len(prompts), kl_prompt.subject_last]  # (vocab,)
                if kl_reference is None:
                    kl_reference = kl_log_probs.detach()
                kl = hp.kl_factor * (kl_log_probs.exp() * (kl_log_probs - kl_reference)).sum()
                loss = nll + kl + hp.v_weight_decay * delta.norm() / original.norm() ** 2
                if loss.item() < 5e-2 or step == hp.v_num_grad_steps - 1:
                    break
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    max_norm = hp.clamp_norm_factor * original.norm()
                    if delta.norm() > max_norm:
                        delta.mul_(max_norm / delta.norm())
        return delta.detach()
