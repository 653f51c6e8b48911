"""Resolving ``--kedit-model`` to a loaded causal LM: embedded alias, local directory or Hugging Face id.

Which of the three a name is, is decided in ``location``; the module map lives in
``architectures``, device and dtype in ``devices``, and the fetching and conversion of embedded
models in ``embedded_models``; this module puts them together.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from pytest_kedit.errors import ConfigError
from pytest_kedit.model.architectures import ModuleMap, module_map
from pytest_kedit.model.devices import resolve_device, resolve_dtype
from pytest_kedit.model.embedded_models import EMBEDDED_MODELS
from pytest_kedit.model.location import ModelLocation, locate_model


@dataclass
class LoadedModel:
    """A causal LM ready for probing and editing: eval mode, on ``device``, gradients off.

    ``source`` says where the weights came from; ``fingerprint`` identifies them, for caches
    keyed by model (statistics, pre-edit probabilities).
    """

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    family: str
    modules: ModuleMap
    device: torch.device
    dtype: torch.dtype
    source: str
    fingerprint: str
    load_seconds: float


def _local_fingerprint(path: Path) -> str:
    """Path + digest of config.json and of the weight files' names, sizes and mtimes."""
    digest = hashlib.sha256()
    config = path / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for weights in sorted(path.iterdir()):
        if weights.suffix in {".safetensors", ".bin", ".pt", ".pth"}:
            stat = weights.stat()
            digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"local:{path}@{digest.hexdigest()[:16]}"


def _from_pretrained(
    where: str | Path, device: torch.device, dtype: torch.dtype, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Config first (so an unsupported family fails before any weights load), then model and tokenizer."""
    config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)
    module_map(config)
    model = AutoModelForCausalLM.from_pretrained(
        where, config=config, dtype=dtype, device_map=device, trust_remote_code=trust_remote_code
    )
    tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
    return model, tokenizer


def _prepare(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Eval mode, no gradients, a pad token (eos if missing), right padding."""
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"tokenizer of {model.name_or_path} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def load_model(
    name: str,
    device: str = "auto",
    dtype: str = "auto",
    worker_index: int | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load ``--kedit-model``: an embedded alias, a local directory or a Hugging Face hub id.

    Hub ids go through transformers' normal path, so they work offline once in the HF cache.
    Anything that cannot be loaded is a ConfigError saying what was tried.
    """
    torch_device = resolve_device(device, worker_index)
    torch_dtype = resolve_dtype(dtype, torch_device)
    start = time.perf_counter()
    location = locate_model(name)
    where = location.folder_or_id()
    try:
        model, tokenizer = location.read(lambda folder_or_id: _from_pretrained(
            folder_or_id, torch_device, torch_dtype, trust_remote_code and location.embedded is None))
    except (OSError, ValueError) as exc:
        raise ConfigError(_load_failure(location, where, exc)) from exc
    source, fingerprint = _provenance(location, where, model)
    _prepare(model, tokenizer)
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        family=model.config.model_type,
        modules=module_map(model),
        device=torch_device,
        dtype=torch_dtype,
        source=source,
        fingerprint=fingerprint,
        load_seconds=time.perf_counter() - start,
    )


def _load_failure(location: ModelLocation, where: str | Path, exc: Exception) -> str:
    """Why the model at ``where`` (a local folder or a hub id; an embedded alias's conversion that
    cannot be read is made again) could not be read; for a hub id, everything that was tried."""
    if location.folder is not None:
        return f"could not load the model in local directory {where}: {exc}"
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
    what = "is not a directory" if location.path.exists() else "does not exist"
    return (
        f"cannot load model {location.name!r}; tried, in order:\n"
        f"  - embedded alias: not one of {', '.join(EMBEDDED_MODELS)}\n"
        f"  - local directory: {location.path.absolute()} {what}\n"
        f"  - Hugging Face hub id: {reason}\n"
        "A hub model loads offline once it is in the Hugging Face cache (HF_HOME); "
        "HF_HUB_OFFLINE=1 skips the network."
    )


def _provenance(location: ModelLocation, where: str | Path, model: PreTrainedModel) -> tuple[str, str]:
    """Where the weights came from, for people, and their fingerprint, for caches keyed by model."""
    if location.embedded is not None:
        spec = location.embedded
        return f"embedded alias {location.name} (GGUF sha256 {spec.sha256}) from {where}", spec.fingerprint
    if location.folder is not None:
        return f"local directory {location.folder}", _local_fingerprint(location.folder)
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return f"Hugging Face hub {location.name} @ {commit}", f"hf:{location.name}@{commit}"
    return f"Hugging Face hub {location.name}", f"hf:{location.name}"
