"""Straightforward ROME and MEMIT, formulated as the published code computes them: the test oracle
of the project's editors (tests/test_parity.py), and the slow side of the speed comparison in
benchmarks/bench_editors.py.

None of the project's shortcuts: every optimisation step runs the whole model on every full
prompt and computes the logits at every position; keys come from forward passes of their own.
The tokenization (:func:`pytest_kedit.editors.key_value.subject_prompt`), the context templates
and the second moment C are the project's, so that a difference can only come from the computation.

ROME, as the published ``compute_u``/``compute_v``: u = C⁻¹k̄ with k̄ the key averaged over the
context templates; the right vector (v* − W k − b) / (k · u) with k, W k + b read at the plain
prompt when ``update_key`` is ``prompt`` (the published choice), or k = k̄ and v* − W k̄ = δ when it
is ``averaged`` (the ROME paper's formula, the project's default).

MEMIT, as the published ``execute_memit``: z optimised at the last edited layer; for each layer
in order, the keys (grouped: averaged within each group of context templates, "{}" being a group
of its own, then over the group means; flat: over all templates), the residual of the last edited
layer's output at the plain prompt spread over the layers left, ΔW = R (λC + KKᵀ)⁻¹K in double.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.editors.key_value import KL_PROMPT, SubjectPrompt, subject_prompt
from pytest_kedit.editors.key_value_editor import KeyValueEditor, add_update, as_out_in
from pytest_kedit.editors.memit import MEMITEditor
from pytest_kedit.editors.rome import RankOneUpdate, ROMEEditor
from pytest_kedit.editors.second_moment import second_moments
from pytest_kedit.model.tracing import Patch, Trace, pad


class _Straightforward(KeyValueEditor):
    """The forward passes both references make."""

    def second_moment(self, name: str) -> torch.Tensor:
        hp = self.hparams
        moments, _ = second_moments(self.loaded, [name], hp.mom2_dataset, hp.mom2_n_samples, hp.mom2_dtype)
        return moments[name].mom2

    def _at_subjects(self, prompts: Sequence[SubjectPrompt]) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.loaded.device
        return torch.arange(len(prompts), device=device), torch.tensor([p.subject_last for p in prompts], device=device)

    @torch.no_grad()
    def read(self, model: torch.nn.Module, prompts: Sequence[SubjectPrompt], name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Module ``name``'s input and output at each prompt's subject's last token, from a full pass."""
        batch = pad([p.ids for p in prompts], self.encoder.pad_id, self.loaded.device)
        with Trace(model, name, retain_input=True, retain_output=True) as trace:
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        at = self._at_subjects(prompts)
        return trace.input(name)[at].float(), trace.output(name)[at].float()

    def optimise(self, model: torch.nn.Module, site: str, request: EditRequest) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, δ): the site's output at the plain prompt's subject, and the optimised shift."""
        hp = self.hparams
        prompts = [subject_prompt(self.encoder, t, request) for t in self.context_templates()]
        kl_prompt = subject_prompt(self.encoder, "{}", EditRequest(request.subject, KL_PROMPT, request.target), with_target=False)
        rows = [*prompts, kl_prompt]
        batch = pad([p.ids for p in rows], self.encoder.pad_id, self.loaded.device)
        delta = torch.zeros(model.config.get_text_config().hidden_size, device=self.loaded.device, requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=hp.v_lr)
        shift = Patch(*self._at_subjects(rows), lambda h: h + delta)
        kl_reference, original = None, None
        with Trace(model, site, retain_output=True, patch_output=shift) as trace:
            for step in range(hp.v_num_grad_steps):
                optimizer.zero_grad()
                logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
                log_probs = torch.log_softmax(logits.float(), dim=-1)  # (prompts + 1, width, vocab)
                if original is None:
                    original = trace.output(site)[0, prompts[0].subject_last].float().detach()  # (out,)
                nll = torch.stack([
                    -torch.stack([log_probs[i, len(p.prompt_ids) - 1 + j, t] for j, t in enumerate(p.targets)]).mean()
                    for i, p in enumerate(prompts)
                ]).mean()  # fmt: skip
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
        assert original is not None
        return original, delta.detach()


class ReferenceROME(_Straightforward, ROMEEditor):
    name = "rome-reference"

    def rank_one_update(self, model: torch.nn.Module, request: EditRequest) -> RankOneUpdate:
        hp = self.hparams
        key_prompts = [subject_prompt(self.encoder, t, request, with_target=False) for t in self.context_templates()]
        mean_key = self.read(model, key_prompts, self.module_name)[0].mean(dim=0)  # (in,) k̄
        left = (torch.linalg.inv(self.second_moment(self.module_name)).float() @ mean_key) if hp.mom2_adjustment else mean_key
        left = left / left.norm()
        original, delta = self.optimise(model, self.module_name, request)
        weight = as_out_in(dict(model.named_parameters())[f"{self.module_name}.weight"], self.loaded.modules.weight_transposed)
        if hp.update_key == "prompt":
            plain = subject_prompt(self.encoder, "{}", request, with_target=False)
            key_input, key_output = (x[0] for x in self.read(model, [plain], self.module_name))
            residual = original + delta - key_output  # v* − (W k + b)
            return RankOneUpdate(key=key_input, value=weight.float() @ key_input + residual, left=left, delta=residual)
        return RankOneUpdate(key=mean_key, value=weight.float() @ mean_key + delta, left=left, delta=delta)


class ReferenceMEMIT(_Straightforward, MEMITEditor):
    name = "memit-reference"

    def updates(self, model: torch.nn.Module, requests: Sequence[EditRequest]) -> dict[str, torch.Tensor]:
        """Each edited projection's update, (out, in); the model is left edited."""
        hp = self.hparams
        z_site = self.layer_name(hp.layers[-1])
        zs = torch.stack([sum(self.optimise(model, z_site, r)) for r in requests]).double()  # (requests, hidden)
        templates = self.context_templates()
        groups = [1] + [count for _, count in hp.context_template_length_params]
        key_prompts = [subject_prompt(self.encoder, t, r, with_target=False) for r in requests for t in templates]
        plain = [subject_prompt(self.encoder, "{}", r, with_target=False) for r in requests]
        params = dict(model.named_parameters())
        updates = {}
        for i, name in enumerate(self.module_names):
            keys = self.read(model, key_prompts, name)[0].view(len(requests), len(templates), -1)
            if hp.key_averaging == "grouped":
                bounds = torch.tensor([0, *groups]).cumsum(0).tolist()
                K = torch.stack([keys[:, a:b].mean(dim=1) for a, b in zip(bounds, bounds[1:]) if b > a], dim=1).mean(dim=1)
            else:
                K = keys.mean(dim=1)
            K = K.double().T  # (in, requests), the published layout
            residual = (zs - self.read(model, plain, z_site)[1].double()).T  # (hidden, requests)
            C = self.second_moment(name).double() if hp.mom2_adjustment else torch.eye(len(K), dtype=K.dtype)
            adjusted = torch.linalg.solve(hp.mom2_update_weight * C + K @ K.T, K)  # (in, requests)
            update = (residual / (len(self.module_names) - i)) @ adjusted.T  # (out, in)
            add_update(params[f"{name}.weight"], update, self.loaded.modules.weight_transposed)
            updates[name] = update
        return updates
