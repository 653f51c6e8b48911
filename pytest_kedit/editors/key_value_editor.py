"""What ROME and MEMIT share as editors: their hyper-parameters, the projections they rewrite, and
the context templates and second-moment statistics they read (loaded once per editor)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from pytest_kedit.editors.base import Editor, projection_names
from pytest_kedit.editors.context_templates import context_templates
from pytest_kedit.editors.corpus import sampled_corpus_fingerprint
from pytest_kedit.editors.second_moment import SecondMoment, second_moments
from pytest_kedit.model.probe import Encoder

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel


@dataclass
class KeyValueHyperParams:
    """The keys (EasyEdit's names) of methods that write key-value pairs into MLP output
    projections; the defaults are ROME's published ones."""

    #: the layers whose MLP output projections are rewritten
    layers: list[int]
    #: the value optimisation (key_value.optimise_value): at most this many Adam steps of ``v_lr``
    v_num_grad_steps: int = 20
    v_lr: float = 0.5
    v_weight_decay: float = 0.5
    #: ‖δ‖ ≤ clamp_norm_factor · ‖the edit site's output at the subject‖
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    #: [length, count] of the sampled context templates; "{}" is always the first template
    context_template_length_params: list[list[int]] = field(default_factory=lambda: [[5, 10], [10, 10]])
    #: whiten keys with the second moment C of the projection's inputs; false: C = I
    mom2_adjustment: bool = True
    #: corpus of the second moment: a text file or folder, a Hugging Face dataset, or null (sampled text)
    mom2_dataset: str | None = None
    #: number of token windows the second moment is computed on
    mom2_n_samples: int = 100000
    mom2_dtype: str = "float32"
    #: module whose weight is rewritten; default: the family's MLP output projection
    rewrite_module_tmp: str | None = None


class KeyValueEditor(Editor):
    """An editor rewriting the projections ``module_names`` (one per layer of ``hparams.layers``)."""

    hparams: KeyValueHyperParams

    def __init__(self, hparams: KeyValueHyperParams, loaded: LoadedModel):
        super().__init__(hparams, loaded)
        self.module_names = projection_names(loaded, self.name, hparams.layers, hparams.rewrite_module_tmp)
        self.encoder = Encoder(loaded.tokenizer)
        #: where the second moments came from (corpus, samples, cache files), once they are loaded
        self.statistics_info: dict[str, Any] = {}
        self._moments: dict[str, SecondMoment] | None = None
        if hparams.mom2_adjustment and hparams.mom2_dataset is None:
            # a corpus the hyper-parameters name is recorded with them
            self.fingerprint = sampled_corpus_fingerprint()

    def context_templates(self) -> list[str]:
        return context_templates(self.loaded, self.hparams.context_template_length_params)

    def layer_name(self, layer: int) -> str:
        """The name of transformer block ``layer``."""
        return f"{self.loaded.modules.layers}.{layer}"

    def layers_below(self, layer: int) -> list[str]:
        """The names of the transformer blocks under block ``layer``, bottom first."""
        return [self.layer_name(below) for below in range(layer)]

    def second_moment(self, name: str) -> torch.Tensor:
        """C = E[k kᵀ] of the projection ``name``'s inputs, in the statistics' dtype (loaded on first use)."""
        return self._statistics()[name].mom2

    def inverse_second_moment(self, name: str) -> torch.Tensor:
        """C⁻¹ of the projection ``name``'s inputs, in the statistics' dtype (loaded on first use)."""
        return self._statistics()[name].inverse

    def _statistics(self) -> dict[str, SecondMoment]:
        """The second moments of every rewritten projection, loaded (or computed) on the first call."""
        if self._moments is None:
            hp = self.hparams
            self._moments, self.statistics_info = second_moments(
                self.loaded, self.module_names, hp.mom2_dataset, hp.mom2_n_samples, hp.mom2_dtype
            )
        return self._moments


def as_out_in(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """The weight as a matrix mapping keys to values, (out, in), whatever its storage order."""
    return weight.T if transposed else weight


def add_update(weight: torch.nn.Parameter, update: torch.Tensor, transposed: bool) -> None:
    """W ← W + update, with ``update`` given (out, in)."""
    with torch.no_grad():
        as_out_in(weight, transposed).add_(update.to(weight.dtype))
