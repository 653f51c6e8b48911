"""Keys and values at the subject's last token: what ROME and MEMIT share.

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

import inspect
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from transformers import DynamicCache

from ..cases import EditRequest
from ..errors import ConfigError, KeditError
from ..probe import Encoder

if TYPE_CHECKING:
    from ..models import LoadedModel

EARLY_STOP_LOSS = 5e-2
KL_PROMPT = "{} is a"


class ValueHyperParams(Protocol):
    v_num_grad_steps: int
    v_lr: float
    v_weight_decay: float
    clamp_norm_factor: float
    kl_factor: float


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


class _Stop(Exception):
    """Raised once the last module of interest has run: the layers above it are not needed."""


@torch.no_grad()
def forward_until(model: torch.nn.Module, last: torch.nn.Module, **inputs: Any) -> None:
    """Run the model's body on ``inputs`` only as far as ``last`` (hooks read what they need)."""

    def stop(module: torch.nn.Module, args: Any, output: Any) -> None:
        raise _Stop

    handle = last.register_forward_hook(stop)
    try:
        model.base_model(**inputs)
    except _Stop:
        pass
    finally:
        handle.remove()


def read_at_subject(
    model: torch.nn.Module, prompts: Sequence[SubjectPrompt], reads: Sequence[tuple[torch.nn.Module, str]], pad_id: int
) -> list[torch.Tensor]:
    """For each (module, "input" | "output"), its value at every prompt's subject's last token: [prompts, dim]."""
    device = next(model.parameters()).device
    width = max(len(p.ids) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p.ids)] = torch.tensor(p.ids)
        mask[i, : len(p.ids)] = 1
    rows = torch.arange(len(prompts), device=device)
    cols = torch.tensor([p.subject_last for p in prompts], device=device)
    values: dict[int, torch.Tensor] = {}

    def reader(index: int, which: str):
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            value = args[0] if which == "input" else _hidden(output)
            values[index] = value[rows, cols].detach()

        return hook

    handles = [module.register_forward_hook(reader(i, which)) for i, (module, which) in enumerate(reads)]
    finished = _finishing_order(model)
    last = max((module for module, _ in reads), key=lambda m: finished[id(m)])
    try:
        forward_until(model, last, input_ids=ids.to(device), attention_mask=mask.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return [values[i] for i in range(len(reads))]


def _finishing_order(model: torch.nn.Module) -> dict[int, int]:
    """Module id -> rank in the order a forward pass finishes them (children before their parent)."""
    order: dict[int, int] = {}

    def visit(module: torch.nn.Module) -> None:
        for child in module.children():
            visit(child)
        order[id(module)] = len(order)

    visit(model)
    return order


def _hidden(output: Any) -> torch.Tensor:
    """A module's hidden-state output: the tensor itself, or the first item of a tuple."""
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


# --------------------------------------------------------------------------- the value optimisation


@dataclass
class Cut:
    """Prompts cut at the subject's last token: the prefix before it (left-padded, so that every
    prefix ends at the same column) and the rest (right-padded). Column 0 of the rest is the
    subject's last token of every prompt; scored tokens are given in the rest's columns."""

    prefix_ids: torch.Tensor
    prefix_mask: torch.Tensor
    prefix_positions: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    tokens: torch.Tensor
    owners: torch.Tensor


def cut(prompts: Sequence[SubjectPrompt], pad_id: int, device: torch.device) -> Cut:
    P = max(p.subject_last for p in prompts)
    S = max(len(p.ids) - p.subject_last for p in prompts)
    prefix = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    prefix_mask = torch.zeros((len(prompts), P), dtype=torch.long)
    prefix_positions = torch.zeros((len(prompts), P), dtype=torch.long)
    rest = torch.full((len(prompts), S), pad_id, dtype=torch.long)
    rest_mask = torch.zeros((len(prompts), S), dtype=torch.long)
    rest_positions = torch.zeros((len(prompts), S), dtype=torch.long)
    rows, cols, tokens = [], [], []
    for i, p in enumerate(prompts):
        s, n = p.subject_last, len(p.ids) - p.subject_last
        prefix[i, P - s :] = torch.tensor(p.ids[:s], dtype=torch.long)
        prefix_mask[i, P - s :] = 1
        prefix_positions[i, P - s :] = torch.arange(s)
        rest[i, :n] = torch.tensor(p.ids[s:])
        rest_mask[i, :n] = 1
        rest_positions[i, :n] = torch.arange(s, s + n)
        for j, token in enumerate(p.targets):
            rows.append(i)
            cols.append(len(p.prompt_ids) - 1 + j - s)
            tokens.append(token)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
    return Cut(
        prefix.to(device), prefix_mask.to(device), prefix_positions.to(device),
        rest.to(device), rest_mask.to(device), rest_positions.to(device),
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
    layers: torch.nn.ModuleList,
    site: torch.nn.Module,
    site_layer: int,
    prompts: Sequence[SubjectPrompt],
    kl_prompt: SubjectPrompt,
    hp: ValueHyperParams,
    pad_id: int,
) -> Value:
    """Find δ (see the module docstring) for the rewriting ``prompts`` of one request."""
    device = next(model.parameters()).device
    batch = cut([*prompts, kl_prompt], pad_id, device)
    n = len(prompts)
    target_lengths = torch.bincount(batch.owners, minlength=n)[:n].float()
    cache_argument = _cache_argument(model)
    prefix_kv = _prefix_kv(model, batch, cache_argument)
    full_mask = torch.cat([batch.prefix_mask, batch.mask], dim=1)
    scored_rows = torch.cat([batch.rows, batch.rows.new_tensor([n])])  # the KL prompt is row n, read at column 0
    scored_cols = torch.cat([batch.cols, batch.cols.new_tensor([0])])
    lm_head = model.get_output_embeddings()
    softcap = getattr(model.config, "final_logit_softcapping", None)

    delta = torch.zeros(model.config.get_text_config().hidden_size, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=hp.v_lr)
    recorded: dict[str, Any] = {}

    def shift(module: torch.nn.Module, args: Any, output: Any) -> Any:
        hidden = _hidden(output)
        if "original" not in recorded:
            recorded["original"] = hidden[0, 0].detach().float()
            recorded["inputs"] = args[0][:n, 0].detach() if args else None
        return _with_hidden(output, torch.cat([hidden[:, :1] + delta.to(hidden.dtype), hidden[:, 1:]], dim=1))

    def record_below(module: torch.nn.Module, args: Any, output: Any) -> None:
        recorded["below"] = output.detach() if isinstance(output, torch.Tensor) else tuple(_detach(o) for o in output)

    def log_probs() -> torch.Tensor:
        cache = _prefix_cache(prefix_kv)
        hidden = model.base_model(
            input_ids=batch.ids, attention_mask=full_mask, position_ids=batch.positions, use_cache=True,
            **{cache_argument: cache},
        ).last_hidden_state  # fmt: skip
        logits = lm_head(hidden[scored_rows, scored_cols]).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return torch.log_softmax(logits, dim=-1)

    with ExitStack() as stack:
        stack.callback(site.register_forward_hook(shift).remove)
        below = layers[site_layer - 1].register_forward_hook(record_below) if site_layer > 0 else None
        kl_reference = None
        for step in range(1, hp.v_num_grad_steps + 1):
            logp = log_probs()
            if below is not None:
                below.remove()
                below = None
                stack.enter_context(_frozen(layers[:site_layer], recorded["below"]))
            target_logp = logp[:-1].gather(1, batch.tokens[:, None])[:, 0]
            nll = -(torch.zeros(n, device=device).index_add(0, batch.owners, target_logp) / target_lengths).mean()
            kl_logp = logp[-1]
            if kl_reference is None:
                kl_reference = kl_logp.detach()
            kl = hp.kl_factor * (kl_logp.exp() * (kl_logp - kl_reference)).sum()
            h_norm = recorded["original"].norm()
            loss = nll + kl + hp.v_weight_decay * delta.norm() / h_norm**2
            if loss.item() < EARLY_STOP_LOSS or step == hp.v_num_grad_steps:
                break
            (delta.grad,) = torch.autograd.grad(loss, delta)
            optimizer.step()
            with torch.no_grad():
                max_norm = hp.clamp_norm_factor * h_norm
                if delta.norm() > max_norm:
                    delta.mul_(max_norm / delta.norm())
    return Value(delta.detach(), recorded["original"], recorded["inputs"], step, loss.item())


def _detach(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


@torch.no_grad()
def _prefix_kv(model: torch.nn.Module, batch: Cut, cache_argument: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's attention keys and values of the prefixes, zero at padding (masked anyway, but
    a prefix that is all padding can come out as NaN, and 0 · NaN is NaN)."""
    if batch.prefix_ids.shape[1] == 0:
        return []
    cache = DynamicCache()
    model.base_model(
        input_ids=batch.prefix_ids, attention_mask=batch.prefix_mask, position_ids=batch.prefix_positions,
        use_cache=True, **{cache_argument: cache},
    )  # fmt: skip
    keep = batch.prefix_mask.bool()[:, None, :, None]
    return [(torch.where(keep, layer.keys, 0.0), torch.where(keep, layer.values, 0.0)) for layer in cache.layers]


def _prefix_cache(prefix_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A fresh cache holding the prefixes (a forward pass appends to its cache)."""
    return DynamicCache(ddp_cache_data=prefix_kv) if prefix_kv else DynamicCache()


def _cache_argument(model: torch.nn.Module) -> str:
    """transformers 5 calls the cache argument ``cache``; earlier versions ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.base_model.forward).parameters else "past_key_values"


@contextmanager
def _frozen(layers: Sequence[torch.nn.Module], output: Any) -> Iterator[None]:
    """Make each layer return ``output`` (the recorded output of the last of them) without computing."""
    saved = [layer.__dict__.get("forward") for layer in layers]
    for layer in layers:
        layer.forward = lambda *args, **kwargs: output
    try:
        yield
    finally:
        for layer, previous in zip(layers, saved):
            if previous is None:
                del layer.forward
            else:
                layer.forward = previous


# --------------------------------------------------------------------------- the edited weights


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


def as_out_in(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """The weight as a matrix mapping keys to values, (out, in), whatever its storage order."""
    return weight.T if transposed else weight


def add_update(weight: torch.nn.Parameter, update: torch.Tensor, transposed: bool) -> None:
    """W ← W + update, with ``update`` given (out, in)."""
    with torch.no_grad():
        as_out_in(weight, transposed).add_(update.to(weight.dtype))
