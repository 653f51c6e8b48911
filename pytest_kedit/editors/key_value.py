"""Keys and values at the subject's last token: the computation ROME and MEMIT share (their
common editor parts are in :mod:`.key_value_editor`).

Locate-and-edit methods treat an MLP output projection W as a key-value memory. The *key* k is
the projection's input at the subject's last token. The *value* comes from an optimisation: a
vector δ added at the subject's last token to the output of an *edit site* (ROME: the projection;
MEMIT: a whole layer) so that the model continues the edit prompt with the target::

    min_δ  mean_i −log P(target | template_i + prompt; δ) / |target|
           + kl_factor · KL(P(· | "{s} is a"; δ) ‖ P(· | "{s} is a"))
           + v_weight_decay · ‖δ‖ / ‖h‖²          subject to ‖δ‖ ≤ clamp_norm_factor · ‖h‖

h is the site's original output at the subject's last token; the KL term is read at the subject's
last token of "{s} is a" and keeps the subject's other properties. Adam with ``v_lr`` runs at most
``v_num_grad_steps`` forward passes and stops once the loss is below 0.05 (the published rule).

Nothing before the subject's last token depends on δ, and neither do the layers below the site.
So each prompt is cut there: the part before it runs once and its attention keys and values are
cached; every step runs only the rest, with the layers below the site replaced by their recorded
output, and computes logits only where a target token or the KL distribution is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.errors import KeditError
from pytest_kedit.model.probe import Encoder, cache_keywords, model_device, vocab_logprobs
from pytest_kedit.model.tracing import Patch, Trace, pad, skipped

if TYPE_CHECKING:
    from pytest_kedit.editors.key_value_editor import KeyValueHyperParams

EARLY_STOP_LOSS = 5e-2
KL_PROMPT = "{} is a"


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class SubjectPrompt:
    """Token ids of a prompt with the subject in it, the index of the subject's last token, and the
    target tokens scored after the prompt (teacher forcing; the ids hold all but the last)."""

    prompt_ids: tuple[int, ...]
    subject_last: int
    targets: tuple[int, ...] = ()

    @property
    def ids(self) -> tuple[int, ...]:
        return self.prompt_ids + self.targets[:-1]


def subject_prompt(encoder: Encoder, template: str, request: EditRequest, with_target: bool = True) -> SubjectPrompt:
    """``template`` (a context template, ``"{}"`` for none) around the request's prompt, tokenized
    the probe's way, with the subject's last token found from the tokenizer's character offsets."""
    if "{}" not in request.prompt or not request.subject.strip():
        raise KeditError(f"subject {request.subject!r} does not occur in prompt {request.prompt!r} (it needs a '{{}}' for the subject)")
    head, _, tail = template.partition("{}")
    text = head + request.prompt.format(request.subject) + tail
    subject_start = len(head) + request.prompt.index("{}")
    subject_end = subject_start + len(request.subject)
    encoded = encoder(text, request.target)
    offsets = encoder.tokenizer(text.rstrip(), return_offsets_mapping=True)["offset_mapping"]
    inside = [i for i, (start, end) in enumerate(offsets) if end > start and start < subject_end]
    if not inside or offsets[inside[-1]][1] <= subject_start:
        raise KeditError(f"subject {request.subject!r} of prompt {request.prompt!r} gives no token in {text!r}")
    return SubjectPrompt(encoded.prefix, inside[-1], encoded.target if with_target else ())


def edit_prompts(encoder: Encoder, templates: Sequence[str], request: EditRequest) -> tuple[list[SubjectPrompt], SubjectPrompt]:
    """The rewriting prompts (one per context template, with the target) and the KL prompt, cut
    after the subject's last token: only the distribution there is read."""
    rewriting = [subject_prompt(encoder, template, request) for template in templates]
    kl = subject_prompt(encoder, "{}", EditRequest(request.subject, KL_PROMPT, request.target), with_target=False)
    return rewriting, SubjectPrompt(kl.prompt_ids[: kl.subject_last + 1], kl.subject_last)


# --------------------------------------------------------------------------- reading at the subject


@torch.no_grad()
def read_at_subject(
    model: torch.nn.Module, prompts: Sequence[SubjectPrompt], names: Sequence[str], pad_id: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The inputs and the outputs of the named modules at every prompt's subject's last token,
    (prompts, dim) each, by name; the model runs only as far as the modules."""
    device = model_device(model)
    batch = pad([p.ids for p in prompts], pad_id, device)
    rows = torch.arange(len(prompts), device=device)
    cols = torch.tensor([p.subject_last for p in prompts], device=device)
    with Trace(model, names, retain_input=True, retain_output=True, stop=True) as trace:
        model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    inputs = {name: trace.input(name)[rows, cols] for name in names}
    return inputs, {name: trace.output(name)[rows, cols] for name in names}


# --------------------------------------------------------------------------- the value optimisation


@dataclass
class SubjectAlignedBatch:
    """Prompts aligned at the subject's last token: the prefix before it (left-padded, so that every
    prefix ends at the same column) and the rest (right-padded). Column 0 of the rest is the
    subject's last token of every prompt; scored tokens are given in the rest's columns."""

    prefix_ids: torch.Tensor  # (prompts, prefix width)
    prefix_mask: torch.Tensor
    prefix_positions: torch.Tensor
    ids: torch.Tensor  # (prompts, rest width)
    mask: torch.Tensor
    positions: torch.Tensor
    rows: torch.Tensor  # (scored tokens,)
    cols: torch.Tensor
    tokens: torch.Tensor
    owners: torch.Tensor


def align_at_subject(prompts: Sequence[SubjectPrompt], pad_id: int, device: torch.device) -> SubjectAlignedBatch:
    """Cut every prompt before its subject's last token and pad both parts (see
    :class:`SubjectAlignedBatch`); each target token is scored at the rest's column before it."""
    starts = [p.subject_last for p in prompts]
    prefix = pad([p.ids[:s] for p, s in zip(prompts, starts)], pad_id, device, left=True)
    rest = pad([p.ids[s:] for p, s in zip(prompts, starts)], pad_id, device)
    prefix_positions = (prefix.attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (prompts, prefix width), 0 at padding
    first = torch.tensor(starts, dtype=torch.long, device=device)[:, None]
    rest_positions = (torch.arange(rest.input_ids.shape[1], device=device) + first) * rest.attention_mask
    rows, cols, tokens = [], [], []
    for i, (p, s) in enumerate(zip(prompts, starts)):
        for j, token in enumerate(p.targets):
            rows.append(i)
            cols.append(len(p.prompt_ids) - 1 + j - s)
            tokens.append(token)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
    return SubjectAlignedBatch(
        prefix.input_ids, prefix.attention_mask, prefix_positions,
        rest.input_ids, rest.attention_mask, rest_positions,
        as_long(rows), as_long(cols), as_long(tokens), as_long(rows),
    )  # fmt: skip


@dataclass
class Value:
    """The optimised shift δ of the site's output, with what the site saw before the edit."""

    delta: torch.Tensor
    #: the site's output at the subject's last token of the first prompt (h)
    original: torch.Tensor
    #: the site's input at the subject's last token of each rewriting prompt
    inputs: torch.Tensor
    steps: int
    loss: float


def optimise_value(
    model: torch.nn.Module,
    site: str,
    layers_below: Sequence[str],
    prompts: Sequence[SubjectPrompt],
    kl_prompt: SubjectPrompt,
    hp: KeyValueHyperParams,
    pad_id: int,
) -> Value:
    """Find δ (see the module docstring) for the rewriting ``prompts`` of one request. ``site`` is
    the module whose output is shifted; ``layers_below``, the layers under it, in order, run only
    in the first pass: their output does not depend on δ."""
    device = model_device(model)
    batch = align_at_subject([*prompts, kl_prompt], pad_id, device)
    n = len(prompts)
    log_probs = _RestPass(model, batch)
    delta = torch.zeros(model.config.get_text_config().hidden_size, device=device, requires_grad=True)
    every_row = torch.arange(n + 1, device=device)
    shift = Patch(every_row, torch.zeros_like(every_row), lambda h: h + delta.to(h.dtype))  # at column 0 of the rest

    with Trace(model, site, retain_input=True, retain_output=True, patch_output=shift) as at_site, ExitStack() as stack:
        with Trace(model, layers_below[-1:], retain_output=True) as below:
            logp = log_probs()
        if layers_below:
            stack.enter_context(skipped(model, layers_below, below.output(layers_below[-1])))
        original = at_site.output(site)[0, 0].float()  # (hidden,)
        inputs = at_site.input(site)[:n, 0]  # (prompts, site input)
        objective = _Objective(batch, n, logp[-1].detach(), original.norm(), hp)
        steps, loss = _descend(delta, log_probs, logp, objective, hp)
    return Value(delta.detach(), original, inputs, steps, loss)


class _RestPass:
    """log P at every scored position of a batch whose last prompt is the KL prompt:
    (scored tokens + 1, vocab), the KL prompt's row last, read at its column 0. Every call runs
    only the rest, after the prefixes' keys and values, which are computed once."""

    def __init__(self, model: torch.nn.Module, batch: SubjectAlignedBatch):
        self.model, self.batch = model, batch
        self.prefix_kv = _prefix_kv(model, batch)
        self.mask = torch.cat([batch.prefix_mask, batch.mask], dim=1)
        kl_row = batch.ids.shape[0] - 1
        self.rows = torch.cat([batch.rows, batch.rows.new_tensor([kl_row])])
        self.cols = torch.cat([batch.cols, batch.cols.new_tensor([0])])

    def __call__(self) -> torch.Tensor:
        hidden = self.model.base_model(
            input_ids=self.batch.ids, attention_mask=self.mask, use_cache=True,
            **cache_keywords(self.model, _prefix_cache(self.prefix_kv), self.batch.positions),
        ).last_hidden_state  # (prompts + 1, rest width, hidden)
        return vocab_logprobs(self.model, hidden[self.rows, self.cols])


@dataclass(frozen=True)
class _Objective:
    """The loss of the module docstring for log P as :class:`_RestPass` gives it, with the KL
    prompt's distribution before the edit (``kl_reference``) and h's norm."""

    batch: SubjectAlignedBatch
    n_prompts: int
    kl_reference: torch.Tensor
    h_norm: torch.Tensor
    hp: KeyValueHyperParams

    def __call__(self, logp: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        batch, n, hp = self.batch, self.n_prompts, self.hp
        target_lengths = torch.bincount(batch.owners, minlength=n)[:n].float()
        target_logp = logp[:-1].gather(1, batch.tokens[:, None])[:, 0]  # (scored tokens,)
        nll = -(torch.zeros(n, device=logp.device).index_add(0, batch.owners, target_logp) / target_lengths).mean()
        kl_logp = logp[-1]  # (vocab,)
        kl = hp.kl_factor * (kl_logp.exp() * (kl_logp - self.kl_reference)).sum()
        return nll + kl + hp.v_weight_decay * delta.norm() / self.h_norm**2


def _descend(
    delta: torch.Tensor, log_probs: _RestPass, first: torch.Tensor, objective: _Objective, hp: KeyValueHyperParams
) -> tuple[int, float]:
    """Adam steps on ``delta`` from the log P of the first pass (``first``) until the loss is below
    ``EARLY_STOP_LOSS`` or ``v_num_grad_steps`` passes have run, ‖δ‖ clamped after each step;
    the number of passes and the last loss."""
    optimizer = torch.optim.Adam([delta], lr=hp.v_lr)
    logp = first
    for step in range(1, hp.v_num_grad_steps + 1):
        if step > 1:
            logp = log_probs()
        loss = objective(logp, delta)
        if loss.item() < EARLY_STOP_LOSS or step == hp.v_num_grad_steps:
            break
        (delta.grad,) = torch.autograd.grad(loss, delta)
        optimizer.step()
        _clamp_norm(delta, hp.clamp_norm_factor * objective.h_norm)
    return step, loss.item()


@torch.no_grad()
def _clamp_norm(delta: torch.Tensor, max_norm: torch.Tensor) -> None:
    """Scale ``delta`` in place down to norm ``max_norm`` when it is longer."""
    if delta.norm() > max_norm:
        delta.mul_(max_norm / delta.norm())


@torch.no_grad()
def _prefix_kv(model: torch.nn.Module, batch: SubjectAlignedBatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's attention keys and values of the prefixes, zero at padding (masked anyway, but
    a prefix that is all padding can come out as NaN, and 0 · NaN is NaN)."""
    if batch.prefix_ids.shape[1] == 0:
        return []
    cache = DynamicCache()
    model.base_model(
        input_ids=batch.prefix_ids, attention_mask=batch.prefix_mask, use_cache=True,
        **cache_keywords(model, cache, batch.prefix_positions),
    )  # fmt: skip
    keep = batch.prefix_mask.bool()[:, None, :, None]  # (prompts, 1, prefix width, 1)
    return [(torch.where(keep, layer.keys, 0.0), torch.where(keep, layer.values, 0.0)) for layer in cache.layers]


def _prefix_cache(prefix_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A fresh cache holding the prefixes (a forward pass appends to its cache)."""
    return DynamicCache(ddp_cache_data=prefix_kv) if prefix_kv else DynamicCache()
