"""AlphaEdit: null-space constrained knowledge editing (Fang et al., ICLR 2025), and AlphaEdit+MLE.

MEMIT's value optimisation, keys and residuals unchanged (:mod:`.memit`); only the solve differs.
For each edited projection, with C the second moment of its keys over the corpus:

    U₀ = the eigenvectors of C with eigenvalue below τ (``nullspace_threshold``)
    P  = U₀U₀ᵀ, the projector onto C's (near) null space
    A  = KᵀK + K_pᵀK_p       K: the batch's keys, K_p: the keys of the earlier edits (rows)
    ΔWᵀ = (P A + α I)⁻¹ P Kᵀ R                           α = ``L2``

ΔW = (…) P maps every key in the range of C above τ to zero: the edit leaves what the corpus
keys read alone. K_p keeps earlier edits in place: after each batch, the batch's keys are read
again on the edited model and appended; the delta's undo puts K_p back, so a restored model
comes with the K_p it had (empty at θ).

The d × d solve is done as an m × m one, m = rows of K and K_p: with B = [K; K_p] and P² = P,

    ΔW = Rᵀ [(B P Bᵀ + α I)⁻¹ B P]_{rows of K}

(multiply out: (P A + α I) P Bᵀ (B P Bᵀ + α I)⁻¹ = P Bᵀ). ``mom2_adjustment: false`` reads no
statistics and takes P = I: with K_p empty that is MEMIT with C = I and λ = α. MEMIT's
``mom2_update_weight`` is not used (the published files carry it).

AlphaEdit+MLE is AlphaEdit whose RoundEdit undo edit is one batch writing every true object of
(s, r), as MEMIT+MLE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.editors.base import WeightDelta
from pytest_kedit.editors.key_value import read_at_subject
from pytest_kedit.editors.memit import MEMITEditor, MEMITHyperParams
from pytest_kedit.errors import ConfigError

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel


@dataclass
class AlphaEditHyperParams(MEMITHyperParams):
    """AlphaEdit's keys: MEMIT's (``mom2_update_weight`` unused), and the null space's threshold
    and the solve's regulariser, with the published values."""

    #: τ: eigenvalues of C (the mean second moment) below it span the null space edits write into
    nullspace_threshold: float = 2e-2
    #: α: the ridge of the solve, against the norm of ΔW
    L2: float = 10.0


def null_space(mom2: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The eigenvalues of the symmetric ``mom2``, ascending, and the orthonormal eigenvectors of
    those below ``threshold``, (in, m), in ``mom2``'s dtype."""
    values, vectors = torch.linalg.eigh(mom2)
    return values, vectors[:, values < threshold]


class AlphaEditEditor(MEMITEditor):
    name = "alphaedit"
    hparams_class = AlphaEditHyperParams
    hparams: AlphaEditHyperParams

    def __init__(self, hparams: AlphaEditHyperParams, loaded: LoadedModel):
        super().__init__(hparams, loaded)
        #: K_p: per projection, the keys (rows, in; float64) of the edits applied since θ, read
        #: on the model they produced
        self.preserved_keys: dict[str, torch.Tensor] = {}
        self._projectors: dict[str, torch.Tensor] | None = None

    def apply(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest]) -> WeightDelta:
        delta = super().apply(model, tokenizer, requests)
        inputs, _ = read_at_subject(model, self.key_prompts(requests), self.module_names, self.encoder.pad_id)
        before = self.preserved_keys
        new = {name: self.keys(inputs[name], len(requests)) for name in self.module_names}
        self.preserved_keys = {name: torch.cat([before[name], keys]) if name in before else keys for name, keys in new.items()}
        delta.undo.append(lambda: setattr(self, "preserved_keys", before))
        return delta

    def update(self, name: str, K: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """ΔW = Rᵀ [(B P Bᵀ + α I)⁻¹ B P]_{rows of K}, B = [K; K_p] (module docstring)."""
        B = torch.cat([K, self.preserved_keys[name]]) if name in self.preserved_keys else K  # (keys, in)
        projector = self.projector(name)
        BP = B @ projector if projector is not None else B
        small = BP @ B.T + self.hparams.L2 * torch.eye(len(B), dtype=B.dtype, device=B.device)  # (keys, keys)
        return R.T @ torch.linalg.solve(small, BP)[: len(K)]

    def projector(self, name: str) -> torch.Tensor | None:
        """P of the projection ``name``, (in, in) float64; None (P = I) without ``mom2_adjustment``.
        Computed for every projection on the first call; ``statistics_info["null_space_dim"]``
        then gives each one's m. An empty null space is a ConfigError."""
        if not self.hparams.mom2_adjustment:
            return None
        if self._projectors is None:
            threshold, projectors, dims = self.hparams.nullspace_threshold, {}, {}
            for module in self.module_names:
                values, basis = null_space(self.second_moment(module).double(), threshold)
                if basis.shape[1] == 0:
                    raise ConfigError(
                        f"{self.name}: no eigenvalue of the second moment of {module} is below nullspace_threshold "
                        f"{threshold:g} (the smallest is {float(values[0]):.3g}): the null space is empty and every edit "
                        "would be zero; raise nullspace_threshold"
                    )
                projectors[module], dims[module] = basis @ basis.T, basis.shape[1]
            self._projectors = projectors
            self.statistics_info["null_space_dim"] = dims
        return self._projectors[name]


class AlphaEditMLEEditor(AlphaEditEditor):
    """AlphaEdit+MLE. On ConflictEdit splits it behaves exactly as AlphaEdit: Multi-Label Edit only
    changes RoundEdit, whose undo edit becomes one batch writing every true object of (s, r)."""

    name = "alphaedit-mle"
    hparams_folder = "alphaedit"
    multi_label = True
