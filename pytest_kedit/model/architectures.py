"""The per-architecture module map: where a locate-and-edit method finds each family's modules.

``MODULE_MAPS`` is the one place that knows how each architecture family names its modules; no
other code branches on model names or families.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PretrainedConfig, PreTrainedModel

from pytest_kedit.errors import ConfigError


@dataclass(frozen=True)
class ModuleMap:
    """Where a locate-and-edit method finds the parts of one architecture family.

    Module paths are dotted names under the causal-LM model; ``{}`` stands for the layer index.
    ``weight_transposed`` is True when the MLP output projection stores its weight as
    ``(in_features, out_features)`` (GPT-2's ``Conv1D``) instead of ``nn.Linear``'s
    ``(out_features, in_features)``.
    """

    layers: str
    mlp_out: str
    mlp: str
    attn: str
    final_norm: str
    lm_head: str
    embed: str
    weight_transposed: bool = False

    def n_layers(self, model: torch.nn.Module) -> int:
        """The number of transformer blocks of ``model``."""
        layers = self.module(model, self.layers)
        if not isinstance(layers, torch.nn.ModuleList):
            raise ConfigError(f"{self.layers!r} is a {type(layers).__name__}, not a list of layers")
        return len(layers)

    def module(self, model: torch.nn.Module, template: str, layer: int | None = None) -> torch.nn.Module:
        """The submodule of ``model`` named by ``template`` (formatted with ``layer`` if it has ``{}``)."""
        if "{}" in template:
            if layer is None:
                raise ValueError(f"module template {template!r} needs a layer index")
            template = template.format(layer)
        try:
            return model.get_submodule(template)
        except AttributeError as exc:
            model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
            raise ConfigError(f"{model_type} model has no module {template!r}") from exc

    def mlp_out_weight_name(self, layer: int) -> str:
        """The parameter name (as in ``named_parameters``) of layer ``layer``'s MLP output weight."""
        return self.mlp_out.format(layer) + ".weight"


def _decoder_map(prefix: str) -> ModuleMap:
    """Llama-style decoders: ``<prefix>.layers.{}.mlp.down_proj``, ``self_attn``, ``<prefix>.norm``."""
    return ModuleMap(
        layers=f"{prefix}.layers",
        mlp_out=f"{prefix}.layers.{{}}.mlp.down_proj",
        mlp=f"{prefix}.layers.{{}}.mlp",
        attn=f"{prefix}.layers.{{}}.self_attn",
        final_norm=f"{prefix}.norm",
        lm_head="lm_head",
        embed=f"{prefix}.embed_tokens",
    )


_GPT2 = ModuleMap(
    layers="transformer.h",
    mlp_out="transformer.h.{}.mlp.c_proj",
    mlp="transformer.h.{}.mlp",
    attn="transformer.h.{}.attn",
    final_norm="transformer.ln_f",
    lm_head="lm_head",
    embed="transformer.wte",
    weight_transposed=True,
)
_GPTJ = ModuleMap(
    layers="transformer.h",
    mlp_out="transformer.h.{}.mlp.fc_out",
    mlp="transformer.h.{}.mlp",
    attn="transformer.h.{}.attn",
    final_norm="transformer.ln_f",
    lm_head="lm_head",
    embed="transformer.wte",
)
_GPT_NEOX = ModuleMap(
    layers="gpt_neox.layers",
    mlp_out="gpt_neox.layers.{}.mlp.dense_4h_to_h",
    mlp="gpt_neox.layers.{}.mlp",
    attn="gpt_neox.layers.{}.attention",
    final_norm="gpt_neox.final_layer_norm",
    lm_head="lm_head",
    embed="gpt_neox.embed_in",
)

#: ``config.model_type`` -> module map. SmolLM2 is ``llama``; Gemma 3 text-only checkpoints (and
#: Gemma 3 GGUF files) are ``gemma3_text``, the multimodal ones ``gemma3``.
MODULE_MAPS: dict[str, ModuleMap] = {
    "gpt2": _GPT2,
    "gptj": _GPTJ,
    "gpt_neox": _GPT_NEOX,
    "llama": _decoder_map("model"),
    "mistral": _decoder_map("model"),
    "qwen2": _decoder_map("model"),
    "qwen3": _decoder_map("model"),
    "gemma": _decoder_map("model"),
    "gemma2": _decoder_map("model"),
    "gemma3_text": _decoder_map("model"),
    "gemma3": _decoder_map("model.language_model"),
}


def module_map(model_or_config: PreTrainedModel | PretrainedConfig) -> ModuleMap:
    """The module map of a model (or its config), chosen by ``config.model_type``."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type: str | None = getattr(config, "model_type", None)
    modules = MODULE_MAPS.get(model_type) if model_type else None
    if modules is None:
        raise ConfigError(
            f"unsupported model architecture {model_type!r}: pytest-kedit knows {', '.join(sorted(MODULE_MAPS))}"
        )
    return modules
