"""FT: unconstrained fine-tuning of one layer's MLP output projection (the baseline of the ROME paper).

Adam minimises −log P(target | prompt) over the weight of ``rewrite_module_tmp`` at ``layers``,
stopping early once the loss is below ``early_stop_loss``. ``objective_optimization`` picks the loss:
``target_new`` is teacher forcing (each target token after the prompt and the tokens before it);
``prompt_last`` scores every target token at the prompt's last position, as the upstream scripts
did — use it to reproduce the published numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.editors.base import Editor, WeightDelta, projection_names, snapshot
from pytest_kedit.model.probe import Encoder, collate, mean_logprob_per_pair, model_device, token_logprobs


@dataclass
class FTHyperParams:
    layers: list[int]
    num_steps: int = 25
    lr: float = 5e-4
    weight_decay: float = 0.0
    #: max |W' − W| per element; false for the unconstrained baseline
    norm_constraint: float | bool = False
    early_stop_loss: float = 1e-2
    objective_optimization: Literal["target_new", "prompt_last"] = "target_new"
    #: module whose weight is tuned; default: the family's MLP output projection
    rewrite_module_tmp: str | None = None


class FTEditor(Editor):
    name = "ft"
    hparams_class = FTHyperParams
    batched = True

    def __init__(self, hparams: FTHyperParams, loaded: Any):
        super().__init__(hparams, loaded)
        modules = projection_names(loaded, self.name, hparams.layers, hparams.rewrite_module_tmp)
        self.weight_names = [f"{name}.weight" for name in modules]
        self.encoder = Encoder(loaded.tokenizer)

    def apply(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest]) -> WeightDelta:
        hp = self.hparams
        delta = snapshot(model, self.weight_names)
        params = dict(model.named_parameters())
        weights = [params[name] for name in self.weight_names]
        pairs = [self.encoder(r.prompt.format(r.subject), r.target) for r in requests]
        batch = collate(pairs, self.encoder.pad_id, model_device(model), hp.objective_optimization == "prompt_last")
        for w in weights:
            w.requires_grad_(True)
        optimizer = torch.optim.Adam(weights, lr=hp.lr, weight_decay=hp.weight_decay)
        try:
            for _ in range(hp.num_steps):
                optimizer.zero_grad(set_to_none=True)
                loss = -mean_logprob_per_pair(token_logprobs(model, batch), batch, len(pairs)).mean()
                if loss.item() < hp.early_stop_loss:
                    break
                loss.backward()
                optimizer.step()
                if hp.norm_constraint is not False:
                    self._clamp(weights, delta, float(hp.norm_constraint))
        finally:
            for w in weights:
                w.requires_grad_(False)
                w.grad = None
        return delta

    def _clamp(self, weights: list[torch.nn.Parameter], delta: WeightDelta, eps: float) -> None:
        with torch.no_grad():
            for name, w in zip(self.weight_names, weights):
                original = delta.originals[name]
                w.copy_(torch.clamp(w, min=original - eps, max=original + eps))
