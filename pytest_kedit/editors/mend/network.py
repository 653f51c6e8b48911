"""MEND's hypernetwork (Mitchell et al. 2022): the gradient transform of each edited weight, and the
weight update it makes from the rank-1 factors of a fine-tuning gradient.

For a weight W used as y = W u at every token t, the gradient of a loss is ∇W = Σ_t δ_t u_tᵀ,
with u_t the layer's input and δ_t = ∂L/∂y_t its output gradient. MEND never forms ∇W: a small
network g maps each token's pair (u_t, δ_t) to (ũ_t, δ̃_t), and the update is

    ΔW = edit_lr_i · Σ_t δ̃_t ũ_tᵀ          (out, in); GPT-2's Conv1D stores Wᵀ, so (in, out)
    W' = W + ΔW

with edit_lr_i a learned step size per edited weight. Modules, parameters and buffers carry
EasyEdit's names (``mend.<key>.mlp.layers.<i>.u`` …, ``edit_lrs``), so its checkpoints load as they
are: with ``shared``, one transform per weight shape, keyed ``str((in, out))``, told apart by a
learned scale and shift per weight ("mode"); otherwise one per weight, keyed by its name with
``#`` for ``.``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

#: Added to the standard deviation before dividing by it, as EasyEdit does.
NORM_EPS = 1e-7


@dataclass(frozen=True)
class NetworkShape:
    """What fixes the hypernetwork's parameters: the MEND options that change its layout."""

    rank: int
    n_hidden: int
    init: str
    norm: bool
    combine: bool
    one_sided: bool
    x_only: bool
    delta_only: bool
    shared: bool


class LowRankResidual(nn.Module):
    """One layer of MEND's ``IDMLP``: x + relu((u v x + bias) · scale_m + shift_m), u v of rank
    ``min(rank, dim)``. Initialised as the identity (u = 0). ``init="xavier"`` drops the residual."""

    def __init__(self, dim: int, rank: int, n_modes: int | None, init: str):
        super().__init__()
        mid = min(rank, dim)
        self.init = init
        if init == "id":
            self.u = nn.Parameter(torch.zeros(dim, mid))
            self.v = nn.Parameter(torch.randn(mid, dim))
        else:
            self.u = nn.Parameter(nn.init.xavier_uniform_(torch.empty(dim, mid), gain=nn.init.calculate_gain("relu")))
            self.v = nn.Parameter(nn.init.xavier_uniform_(torch.empty(mid, dim)))
        self.bias = nn.Parameter(torch.zeros(dim))
        if n_modes is not None:
            self.mode_shift = nn.Embedding(n_modes, dim)
            self.mode_scale = nn.Embedding(n_modes, dim)
            nn.init.zeros_(self.mode_shift.weight)
            nn.init.ones_(self.mode_scale.weight)
        self.n_modes = n_modes

    def forward(self, x: torch.Tensor, mode: int | None) -> torch.Tensor:
        pre = x @ self.v.T @ self.u.T + self.bias  # (tokens, dim)
        if self.n_modes is not None and mode is not None:
            pre = pre * self.mode_scale.weight[mode] + self.mode_shift.weight[mode]
        # relu as a clamp, as EasyEdit computes it: trained checkpoints expect exactly this
        acts = pre.clamp(min=0)
        return acts + x if self.init == "id" else acts


class ResidualMLP(nn.Module):
    """MEND's ``IDMLP``: ``n_hidden + 1`` low-rank residual layers, each as wide as the input."""

    def __init__(self, dim: int, shape: NetworkShape, n_modes: int | None):
        super().__init__()
        self.layers = nn.ModuleList(LowRankResidual(dim, shape.rank, n_modes, shape.init) for _ in range(shape.n_hidden + 1))

    def forward(self, x: torch.Tensor, mode: int | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mode)
        return x


class GradientTransform(nn.Module):
    """g: (u_t, δ_t) -> (ũ_t, δ̃_t) for the weights of one shape (or one weight).

    With ``norm``, each factor is first standardised with running statistics (mean and variance of
    every token's factor seen in training, Welford's update); ``combine`` transforms [u; δ]
    together, else ``mlp1`` transforms u and ``mlp2`` δ; ``one_sided`` transforms only the smaller
    of the two (``x_only``/``delta_only``: only u / only δ).
    """

    u_mean: torch.Tensor
    u_std: torch.Tensor
    u_s: torch.Tensor
    v_mean: torch.Tensor
    v_std: torch.Tensor
    v_s: torch.Tensor
    k: torch.Tensor

    def __init__(self, x_dim: int, delta_dim: int, shape: NetworkShape, n_modes: int | None):
        super().__init__()
        self.shape = shape
        for name, dim in (("u", x_dim), ("v", delta_dim)):
            self.register_buffer(f"{name}_mean", torch.full((dim,), float("nan")))
            self.register_buffer(f"{name}_std", torch.full((dim,), float("nan")))
            self.register_buffer(f"{name}_s", torch.full((dim,), float("nan")))
        self.register_buffer("k", torch.full((1,), float("nan")))
        if shape.combine:
            if shape.one_sided or shape.x_only or shape.delta_only:
                raise ValueError("combine cannot be used with one_sided, x_only or delta_only")
            self.mlp = ResidualMLP(x_dim + delta_dim, shape, n_modes)
            return
        transform_x = not shape.delta_only and not (shape.one_sided and x_dim > delta_dim)
        transform_delta = not shape.x_only and not (shape.one_sided and x_dim <= delta_dim)
        self.mlp1 = ResidualMLP(x_dim, shape, n_modes) if transform_x else None
        self.mlp2 = ResidualMLP(delta_dim, shape, n_modes) if transform_delta else None

    @torch.no_grad()
    def _update_statistics(self, u: torch.Tensor, delta: torch.Tensor) -> None:
        """Fold a batch of rows into the running mean and sum of squared deviations (Chan et al.)."""
        n = float(u.shape[0])
        if n == 0:
            return
        first = bool(torch.isnan(self.k).item())
        k = 0.0 if first else float(self.k.item())
        for name, rows in (("u", u), ("v", delta)):
            batch_mean = rows.mean(0)
            batch_s = ((rows - batch_mean) ** 2).sum(0)
            mean, s = getattr(self, f"{name}_mean"), getattr(self, f"{name}_s")
            if first:
                mean.copy_(batch_mean), s.copy_(batch_s)
            else:
                shift = batch_mean - mean
                s.add_(batch_s + shift**2 * k * n / (k + n))
                mean.add_(shift * n / (k + n))
        self.k.fill_(k + n)
        if k + n >= 2:
            for name in ("u", "v"):
                getattr(self, f"{name}_std").copy_((getattr(self, f"{name}_s") / (k + n - 1)).sqrt())

    def forward(self, u: torch.Tensor, delta: torch.Tensor, mode: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ũ, δ̃) of tokens that carry a gradient: (tokens, x_dim), (tokens, delta_dim) -> the same shapes."""
        u, delta = u.float(), delta.float()
        if self.training:
            self._update_statistics(u, delta)
            if not self.k.item() >= 2:
                raise RuntimeError("MEND's normalisation needs at least two token factors first")
        if self.shape.norm:
            u = (u - self.u_mean) / (self.u_std + NORM_EPS)
            delta = (delta - self.v_mean) / (self.v_std + NORM_EPS)
        if self.shape.combine:
            out = self.mlp(torch.cat([u, delta], -1), mode)
            return out[:, : u.shape[1]], out[:, u.shape[1] :]
        return (
            u if self.mlp1 is None else self.mlp1(u, mode),
            delta if self.mlp2 is None else self.mlp2(delta, mode),
        )


class MENDNetwork(nn.Module):
    """The transforms of every edited weight and the learned step sizes ``edit_lrs``.

    ``weights`` are (parameter name, (x_dim, delta_dim)) in the order of ``inner_params``;
    ``transposed`` says that the weights are stored (in, out), as GPT-2's Conv1D stores them.
    """

    def __init__(self, weights: Sequence[tuple[str, tuple[int, int]]], shape: NetworkShape, edit_lr: float, transposed: bool):
        super().__init__()
        self.names = [name for name, _ in weights]
        self.dims = dict(weights)
        self.transposed = transposed
        self.shape = shape
        by_dims: dict[tuple[int, int], list[str]] = defaultdict(list)
        for name, dims in weights:
            by_dims[dims].append(name)
        self.key_of = {name: self.transform_key(name, dims, shape.shared) for name, dims in weights}
        self.mode_of = {name: by_dims[dims].index(name) if shape.shared else None for name, dims in weights}
        transforms: dict[str, GradientTransform] = {}
        for name, dims in weights:
            if self.key_of[name] not in transforms:
                transforms[self.key_of[name]] = GradientTransform(*dims, shape, len(by_dims[dims]) if shape.shared else None)
        self.mend = nn.ModuleDict(transforms)
        self.edit_lrs = nn.Parameter(torch.full((len(weights),), float(edit_lr)))

    @staticmethod
    def transform_key(name: str, dims: tuple[int, int], shared: bool) -> str:
        """EasyEdit's key of the transform of weight ``name``."""
        return str(tuple(dims)) if shared else name.replace(".", "#")

    def transformed(
        self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """For each edited weight, from its token factors u (tokens, in) and δ (tokens, out): the
        mask of the tokens that carry a gradient (u and δ both non-zero; padding and positions after
        the last scored one do not) and their transformed factors ũ (kept, in), δ̃ (kept, out)."""
        out = {}
        for name in self.names:
            u, delta = factors[name]
            keep = (u != 0).any(-1) & (delta != 0).any(-1)  # (tokens,)
            out[name] = (keep, *self.mend[self.key_of[name]](u[keep], delta[keep], self.mode_of[name]))
        return out

    def updates(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """ΔW of each edited weight from its token factors u (tokens, in) and δ (tokens, out)."""
        out = {}
        for i, (name, (_, u_, delta_)) in enumerate(self.transformed(factors).items()):
            pseudo_grad = u_.T @ delta_ if self.transposed else delta_.T @ u_  # (in, out) or (out, in)
            out[name] = self.edit_lrs[i] * pseudo_grad
        return out
