"""EMMET: Equality-constrained Mass Model Editing in a Transformer (Gupta et al., EMNLP Findings
2024, "A Unified Framework for Model Editing").

MEMIT's value optimisation, keys and residuals unchanged (:mod:`.memit`); the solve is batched
ROME's: the batch's keys are written exactly (an equality constraint) at the least change in the
metric of the corpus keys,

    C' = μC + νI                     μ = ``mom2_update_weight``, ν = ``update_norm_lambda``
    D  = K C'⁻¹ Kᵀ + λ_E I           λ_E = ``emmet_lambda``, only for a batch of several edits
    ΔW = Rᵀ D⁻¹ K C'⁻¹

λ_E only counters an ill-conditioned D; a single edit is written exactly, as in ROME (the
authors' code; EasyEdit adds λ_E to one edit too). With ν = 0, ΔW = Rᵀ (K C⁻¹Kᵀ + μλ_E I)⁻¹ K C⁻¹
is MEMIT's solve with λ = μ·λ_E (the push-through identity), and μ does not matter for one edit.
The published settings rewrite one layer (ROME's) with μ·λ_E of 0.1 to 100, where MEMIT's λ is
15,000 to 20,000. With ``mom2_adjustment: false``, C = I.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pytest_kedit.editors.memit import MEMITEditor, MEMITHyperParams


@dataclass
class EMMETHyperParams(MEMITHyperParams):
    """EMMET's keys: MEMIT's, with μ = ``mom2_update_weight`` scaling C, and the two
    regularisers; the defaults are the authors' for GPT-2 XL."""

    mom2_update_weight: float = 1000.0
    #: λ_E: the ridge on D = K C'⁻¹ Kᵀ of a batch of several edits
    emmet_lambda: float = 0.1
    #: ν: added to μC on its diagonal, against the norm of ΔW
    update_norm_lambda: float = 0.0


class EMMETEditor(MEMITEditor):
    name = "emmet"
    hparams_class = EMMETHyperParams
    hparams: EMMETHyperParams

    def update(self, name: str, K: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """ΔW = Rᵀ D⁻¹ K C'⁻¹ (module docstring), in float64."""
        hp = self.hparams
        A = self.weighted_inverse(name, K.T)  # (in, requests)
        D = K @ A  # (requests, requests)
        if len(K) > 1:
            D = D + hp.emmet_lambda * torch.eye(len(K), dtype=K.dtype, device=K.device)
        return R.T @ torch.linalg.solve(D, A.T)

    def weighted_inverse(self, name: str, X: torch.Tensor) -> torch.Tensor:
        """C'⁻¹ X for the projection ``name``, X float64 (in, columns): with ν = 0 from the cached
        C⁻¹, otherwise solved."""
        hp = self.hparams
        if not hp.update_norm_lambda:
            return (self.inverse_second_moment(name).double() @ X if hp.mom2_adjustment else X) / hp.mom2_update_weight
        eye = torch.eye(X.shape[0], dtype=X.dtype, device=X.device)
        C = self.second_moment(name).double() if hp.mom2_adjustment else eye
        return torch.linalg.solve(hp.mom2_update_weight * C + hp.update_norm_lambda * eye, X)
