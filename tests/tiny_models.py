"""Tiny randomly initialised causal LMs of each supported family, with a word-level tokenizer built here."""


from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

WORDS = (
    "the capital of is a an in on by was born city country France Paris Rome Italy Germany Berlin Spain Madrid "
    "mother father child spouse author wrote language English French German Italian notable work creator of "
    "Marie Pierre Jacques Maurice Hamlet Shakespeare Alice Bob Carol Dave Eve official languages Switzerland "
    "Romansh Canada Europe Asia continent is located , . ' s {}"
).split()

TINY = dict(hidden=32, layers=3, heads=4, inner=64)

CONFIGS = {
    "gpt2": lambda v: transformers.GPT2Config(vocab_size=v, n_embd=TINY["hidden"], n_layer=TINY["layers"], n_head=TINY["heads"], n_positions=64),
    "gptj": lambda v: transformers.GPTJConfig(vocab_size=v, n_embd=TINY["hidden"], n_layer=TINY["layers"], n_head=TINY["heads"], rotary_dim=4, n_positions=64),
    "llama": lambda v: transformers.LlamaConfig(
        vocab_size=v, hidden_size=TINY["hidden"], intermediate_size=TINY["inner"], num_hidden_layers=TINY["layers"],
        num_attention_heads=TINY["heads"], num_key_value_heads=2, max_position_embeddings=64,
    ),
    "gemma3_text": lambda v: transformers.Gemma3TextConfig(
        vocab_size=v, hidden_size=TINY["hidden"], intermediate_size=TINY["inner"], num_hidden_layers=TINY["layers"],
        num_attention_heads=TINY["heads"], num_key_value_heads=2, head_dim=8, max_position_embeddings=64, sliding_window=16,
    ),
    "gpt_neox": lambda v: transformers.GPTNeoXConfig(
        vocab_size=v, hidden_size=TINY["hidden"], intermediate_size=TINY["inner"], num_hidden_layers=TINY["layers"],
        num_attention_heads=TINY["heads"], max_position_embeddings=64,
    ),
}
FAMILIES = tuple(CONFIGS)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0, "[PAD]": 1, "[BOS]": 2}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]")
    tok.padding_side = "right"
    return tok


def tiny_model(family: str, seed: int = 0) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(CONFIGS[family](len(tok)), dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok



def tiny_loaded(family: str, seed: int = 0) -> LoadedModel:
    """A tiny model wrapped the way ``load_model`` returns models."""
    from pytest_kedit.model.architectures import module_map
    from pytest_kedit.model.loading import LoadedModel

    model, tok = tiny_model(family, seed)
    return LoadedModel(
        name=f"tiny-{family}", model=model, tokenizer=tok, family=family, modules=module_map(model),
        device=torch.device("cpu"), dtype=torch.float32, source="built in the test", fingerprint=f"tiny-{family}-{seed}",
        load_seconds=0.0,
    )
