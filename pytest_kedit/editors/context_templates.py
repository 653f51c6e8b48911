"""Context templates: short texts sampled from the model, put before an edit prompt.

ROME and MEMIT average the key over them, and optimise the value on every one of them, so that
the edit holds whatever precedes the prompt. ``[[5, 10], [10, 10]]`` means ten texts of 5 tokens
and ten of 10 tokens; each becomes ``"<text>. {}"``, and ``"{}"`` (no context) comes first.

Texts start from the seed words of the published code and are sampled top-k (k = 5) with a fixed
seed. They are computed once per model and cached on disk (under a file lock, written atomically),
so every process and every run of a model uses the same templates.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import GenerationConfig

from ..cache import atomic_write_text, cache_dir, locked

if TYPE_CHECKING:
    from ..models import LoadedModel

SEED_WORDS = ("The", "Therefore", "Because", "I", "You")
TOP_K = 5
SEED = 0


def context_templates(loaded: LoadedModel, length_params: list[list[int]]) -> list[str]:
    """``"{}"`` followed by, for each ``[length, count]``, ``count`` sampled texts of ``length`` tokens."""
    path = _cache_path(loaded, length_params)
    if not path.exists():
        with locked(path):
            if not path.exists():
                templates = ["{}"] + [t for length, count in length_params for t in _sample(loaded, length, count)]
                atomic_write_text(path, json.dumps(templates, indent=1))
    return json.loads(path.read_text())


def _cache_path(loaded: LoadedModel, length_params: list[list[int]]) -> Path:
    key = json.dumps([loaded.fingerprint, str(loaded.dtype), length_params, SEED_WORDS, TOP_K, SEED])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "context_templates" / f"{_slug(loaded.name)}-{digest}.json"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


@torch.no_grad()
def _sample(loaded: LoadedModel, length: int, count: int) -> list[str]:
    """``count`` texts of at most ``length`` tokens (the seed word included), each made a template."""
    model, tokenizer = loaded.model, loaded.tokenizer
    seeds = [SEED_WORDS[i % len(SEED_WORDS)] for i in range(count)]
    devices = [loaded.device] if loaded.device.type == "cuda" else []
    texts = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(SEED)
        for word in dict.fromkeys(seeds):
            ids = torch.tensor([tokenizer(word)["input_ids"]] * seeds.count(word), device=loaded.device)
            config = GenerationConfig(
                do_sample=True,
                top_k=TOP_K,
                top_p=1.0,
                temperature=1.0,
                max_new_tokens=max(1, length - ids.shape[1]),
                pad_token_id=tokenizer.pad_token_id,
            )
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
            texts += tokenizer.batch_decode(out, skip_special_tokens=True)
    return [" ".join(text.replace("{", " ").replace("}", " ").split()) + ". {}" for text in texts]
