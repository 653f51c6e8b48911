"""How far edits moved a model's weights: the relative update norm of every parameter they changed.

For a parameter W whose value before the edits was W₀ (a ``WeightDelta``'s originals hold it),
``‖W − W₀‖_F / ‖W₀‖_F``, computed in float64: 0 when the edits left W as it was, 1 when they moved
it by as much as its own size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


@torch.no_grad()
def relative_update_norms(model: torch.nn.Module, originals: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``‖W − W₀‖_F / ‖W₀‖_F`` of each parameter named in ``originals`` (name -> W₀), W its value in
    ``model`` now; for a W₀ of norm 0, 0.0 when W is W₀ and infinity otherwise."""
    params = dict(model.named_parameters())
    norms = {}
    for name, original in originals.items():
        before = original.detach().to(torch.float64)
        change = float(torch.linalg.vector_norm(params[name].detach().to(device=before.device, dtype=torch.float64) - before))
        size = float(torch.linalg.vector_norm(before))
        norms[name] = change / size if size else (0.0 if change == 0 else math.inf)
    return norms
