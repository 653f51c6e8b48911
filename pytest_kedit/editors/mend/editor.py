"""MEND: edits made by a trained hypernetwork from the fine-tuning gradient (Mitchell et al. 2022).

For an edit request, one forward and backward pass of −log P(target | prompt) gives, at every
token, each edited weight's input u and output gradient δ (:func:`token_factors`); the trained
network (:mod:`.network`) turns them into ΔW, added in place. The network comes from
``kedit train-mend`` (:mod:`pytest_kedit.editors.mend.training`, found in the cache by model and network
layout, :mod:`.checkpoint`), else from the network packaged for the model, or from an EasyEdit
MEND archive (``mend_archive: PATH``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.editors.base import Editor, WeightDelta, snapshot
from pytest_kedit.editors.mend.checkpoint import load_archive, load_trained, network_fingerprint
from pytest_kedit.editors.mend.network import MENDNetwork, NetworkShape
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.probe import Encoder, collate, model_device, token_logprobs
from pytest_kedit.model.tracing import Patch, Trace

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

#: The default edited layers: the last this many, as EasyEdit does for GPT2-XL and GPT-J.
DEFAULT_TOP_LAYERS = 3


@dataclass
class MENDHyperParams:
    """EasyEdit's MEND keys. The first group shapes and applies the network; the second trains it."""

    #: parameter names of the edited weights; null: every MLP weight of the last three layers,
    #: inputs first then the output projection (the family's module map)
    inner_params: list[str] | None = None
    #: initial value of the learned per-weight step sizes ``edit_lrs``
    edit_lr: float = 1e-4
    #: rank of each low-rank layer of the network (capped at its width)
    rank: int = 1920
    #: hidden layers of the network; each is as wide as its input (MEND's IDMLP)
    n_hidden: int = 1
    #: EasyEdit's key for the hidden width, which its IDMLP ignores; only null is accepted
    hidden_dim: int | None = None
    init: Literal["id", "xavier"] = "id"
    #: standardise u and δ with running statistics from training
    norm: bool = True
    #: one network on [u; δ] rather than one for each
    combine: bool = True
    #: transform only the smaller factor
    one_sided: bool = False
    x_only: bool = False
    delta_only: bool = False
    #: one network per weight shape, with a learned scale and shift per weight
    shared: bool = True
    act: Literal["relu"] = "relu"
    mlp_class: Literal["IDMLP"] = "IDMLP"
    #: an EasyEdit MEND checkpoint to apply instead of one trained by ``kedit train-mend``
    mend_archive: str | None = None
    # -- training (kedit train-mend) --
    #: Adam learning rate of the network
    lr: float = 1e-6
    #: Adam learning rate of ``edit_lrs``
    lr_lr: float = 1e-4
    #: weights of the edit loss and of the locality (KL) loss
    cedit: float = 0.1
    cloc: float = 1.0
    #: edits whose gradients are summed per optimiser step
    accumulate_bs: int = 10
    #: training edits (steps), at most
    max_iters: int = 100000
    #: validate (and checkpoint) every this many steps
    val_interval: int = 1000
    #: held-out edits per validation
    val_steps: int = 500
    #: stop when the best validation (:attr:`max_drawdown`) has not changed for this many steps
    early_stop_patience: int = 20000
    #: the network kept is the validation with the highest edit success among those whose drawdown
    #: (the MEND paper's: the drop in the share of unrelated facts' tokens predicted right) is at
    #: most this; while there is none, the one with the lowest loss
    max_drawdown: float = 0.05
    grad_clip: float = 100.0
    seed: int = 42
    #: paraphrases of the edit prompt in each step's edit loss (besides the edit prompt itself)
    rephrases: int = 2
    #: wall-clock budget of one training run, in minutes (null: none)
    max_minutes: float | None = None

    @property
    def network_shape(self) -> NetworkShape:
        return NetworkShape(
            self.rank,
            self.n_hidden,
            self.init,
            self.norm,
            self.combine,
            self.one_sided,
            self.x_only,
            self.delta_only,
            self.shared,
        )


def edited_weights(loaded: LoadedModel, inner_params: Sequence[str] | None) -> list[str]:
    """``inner_params`` checked against the model, or the default: the MLP weights of the last
    :data:`DEFAULT_TOP_LAYERS` layers, each layer's input weights then its output projection."""
    model, modules = loaded.model, loaded.modules
    params = dict(model.named_parameters())
    if inner_params is None:
        n_layers = modules.n_layers(model)
        inner_params = []
        for layer in range(max(0, n_layers - DEFAULT_TOP_LAYERS), n_layers):
            mlp, out = modules.mlp.format(layer), modules.mlp_out.format(layer)
            inputs = [f"{mlp}.{child}" for child, _ in modules.module(model, mlp).named_children() if f"{mlp}.{child}" != out]
            inner_params += [f"{name}.weight" for name in inputs if params.get(f"{name}.weight", torch.empty(0)).dim() == 2]
            inner_params.append(f"{out}.weight")
    missing = [name for name in inner_params if name not in params or params[name].dim() != 2]
    if missing or not inner_params:
        raise ConfigError(f"mend: inner_params {missing or '[]'} name no 2-D weight of {loaded.name}")
    return list(inner_params)


def build_network(loaded: LoadedModel, hp: MENDHyperParams) -> MENDNetwork:
    """A freshly initialised network for the edited weights of ``loaded``, on its device."""
    if hp.hidden_dim is not None:
        raise ConfigError("mend: hidden_dim must be null: MEND's IDMLP keeps every hidden layer as wide as its input")
    params = dict(loaded.model.named_parameters())
    transposed = loaded.modules.weight_transposed
    weights = []
    for name in edited_weights(loaded, hp.inner_params):
        rows, cols = params[name].shape
        weights.append((name, (rows, cols) if transposed else (cols, rows)))  # (x_dim, delta_dim)
    try:
        network = MENDNetwork(weights, hp.network_shape, hp.edit_lr, transposed)
    except ValueError as exc:
        raise ConfigError(f"mend: {exc}") from None
    return network.to(loaded.device)


class _OutputGradient:
    """The change of an :class:`~pytest_kedit.model.tracing.Patch` that adds a zero leaf to a module's
    output: the gradient of a loss with respect to that zero is δ, the output's gradient."""

    def __init__(self) -> None:
        self.zero: torch.Tensor | None = None

    def __call__(self, found: torch.Tensor) -> torch.Tensor:
        self.zero = torch.zeros_like(found, requires_grad=True)
        return found + self.zero


def token_factors(
    model: torch.nn.Module, weights: Sequence[str], shape: Sequence[int], loss_of: Callable[[], torch.Tensor]
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """u and δ of each named weight at every position of a (rows, width) batch, flattened row by
    row: (rows·width, in), (rows·width, out); and the loss. ``loss_of`` runs the forward pass."""
    rows, width = shape  # (rows, width) of the batch
    device = model_device(model)
    at_rows = torch.arange(rows, device=device).repeat_interleave(width)
    at_cols = torch.arange(width, device=device).repeat(rows)
    modules = [name.removesuffix(".weight") for name in weights]
    gradients = {m: _OutputGradient() for m in modules}
    with ExitStack() as stack, torch.enable_grad():
        traces = {
            m: stack.enter_context(Trace(model, m, retain_input=True, patch_output=Patch(at_rows, at_cols, gradients[m])))
            for m in modules
        }
        loss = loss_of()
    zeros = [gradients[m].zero for m in modules]
    if any(z is None for z in zeros):
        raise RuntimeError("mend: an edited module did not run in the forward pass")
    deltas = torch.autograd.grad(loss, zeros)  # type: ignore[arg-type]
    factors = {}
    for name, m, delta in zip(weights, modules, deltas):
        u = traces[m].input(m)
        factors[name] = (u.reshape(rows * width, u.shape[-1]), delta)
    return factors, loss.detach()


class MENDEditor(Editor):
    name = "mend"
    hparams_class = MENDHyperParams
    edits_on_one_thread = True

    def __init__(self, hparams: MENDHyperParams, loaded: Any):
        super().__init__(hparams, loaded)
        self.network = build_network(loaded, hparams)
        self.weight_names = self.network.names
        #: where the network came from: the trained checkpoint, the packaged network or the archive
        archive = hparams.mend_archive
        self.source = load_archive(self.network, archive) if archive else load_trained(self.network, loaded)
        self.fingerprint = network_fingerprint(self.network)
        self.network.eval().requires_grad_(False)
        self.encoder = Encoder(loaded.tokenizer)

    def apply(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest]) -> WeightDelta:
        delta = snapshot(model, self.weight_names)
        pairs = [self.encoder(r.prompt.format(r.subject), r.target) for r in requests]
        batch = collate(pairs, self.encoder.pad_id, model_device(model))
        factors, _ = token_factors(
            model, self.weight_names, tuple(batch.input_ids.shape), lambda: -token_logprobs(model, batch).mean()
        )
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, update in self.network.updates(factors).items():
                params[name].add_(update.to(params[name].dtype))
        return delta
