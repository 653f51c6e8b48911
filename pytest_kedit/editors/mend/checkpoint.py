"""Where MEND networks are kept and how they are read: trained checkpoints in the cache, and
EasyEdit MEND archives.

A trained checkpoint is ``<cache>/mend/<model>/mend-<key>.safetensors`` (the network's tensors,
EasyEdit's names) with its manifest beside it (``.json``: model and data fingerprints, the split,
hyper-parameters, steps, validation figures). The key is the model fingerprint, the edited weights
and the network layout, so the editor finds the network that fits. Both files are written under
the entry's file lock, each with its digest, and verified when read: a damaged network cannot be
made again here, so it is refused in one line saying how to train it again. Only tensors are ever loaded: safetensors, or ``torch.load`` with
``weights_only=True``; an archive that needs anything else unpickled is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from pytest_kedit.editors.mend.network import MENDNetwork
from pytest_kedit.errors import ConfigError
from pytest_kedit.storage.atomic import atomic_write_bytes, atomic_write_text
from pytest_kedit.storage.cache import entry_path, locked
from pytest_kedit.storage.digest import write_digest
from pytest_kedit.storage.verified import read_or_refuse

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel


def trained_path(loaded: LoadedModel, network: MENDNetwork) -> Path:
    """The cache entry of the network trained for ``loaded`` with this layout."""
    key = (loaded.fingerprint, network.names, dataclasses.asdict(network.shape))
    return entry_path("mend", "mend", *key, model=loaded.name, suffix=".safetensors")


def manifest_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def network_tensors(network: MENDNetwork) -> dict[str, torch.Tensor]:
    """The network's parameters and buffers, contiguous on the CPU, by EasyEdit's names."""
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in network.state_dict().items()}


def network_fingerprint(network: MENDNetwork) -> str:
    """sha256 of the network's tensors in their safetensors form: equal exactly when every
    parameter and buffer is equal, wherever the network came from."""
    return hashlib.sha256(save_safetensors(network_tensors(network))).hexdigest()


def publish(path: Path, network: MENDNetwork, manifest: dict[str, Any]) -> None:
    """Write the checkpoint and its manifest to the cache entry ``path``, with their digests
    (:mod:`~pytest_kedit.storage.digest`), under its lock."""
    with locked(path):
        atomic_write_bytes(path, save_safetensors(network_tensors(network)))
        atomic_write_text(manifest_path(path), json.dumps(manifest, indent=2, default=str))
        write_digest(path)
        write_digest(manifest_path(path))


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the checkpoint ``path``; ValueError when it is not a JSON object."""
    manifest = json.loads(manifest_path(path).read_text(encoding="utf-8"))
    if not isinstance(manifest, dict):
        raise ValueError("not a JSON object")
    return manifest


def load_trained(network: MENDNetwork, loaded: LoadedModel) -> str:
    """Load the trained checkpoint of ``loaded`` into ``network``; say where it came from. No
    checkpoint is a one-line error that says how to train one."""
    path = trained_path(loaded, network)
    train = f"`kedit train-mend --model {loaded.name} --from DATA --out DIR` (see kedit docs editors, MEND)"
    if not path.exists():
        raise ConfigError(f"no trained MEND network for {loaded.name}: train one with {train}, "
                          "or set mend_archive in --kedit-hparams")
    remedy = f"a run cannot make it again: train it again with {train}"
    tensors = read_or_refuse(path, lambda entry: load_safetensors(entry.read_bytes()), remedy)
    manifest = read_or_refuse(manifest_path(path), lambda _: read_manifest(path), remedy)
    _load_into(network, tensors, str(path))
    return f"{path} (trained {manifest.get('steps')} steps on {manifest.get('data', {}).get('source')})"


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_archive(network: MENDNetwork, archive: str) -> str:
    """Load an EasyEdit MEND archive into ``network``: ``torch.save`` of ``{"model": state_dict,
    ...}`` (older ones name the network ``gtn.`` instead of ``mend.``), or a safetensors file of
    such a state dict. Only tensors and plain containers are unpickled."""
    path = Path(archive).expanduser()
    if not path.is_file():
        raise ConfigError(f"mend_archive {path}: no such file")
    if path.suffix == ".safetensors":
        try:
            state: Any = load_safetensors(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type on bad bytes
            raise ConfigError(f"mend_archive {path}: unreadable: {str(exc).splitlines()[0]}") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            found = _UNSUPPORTED_GLOBAL.search(str(exc))
            what = f"an object of {found.group(1)}" if found else "objects other than tensors"
            raise ConfigError(
                f"mend_archive {path}: refused: unpickling it would need {what}; keep only the tensors of "
                "its 'model' entry (a safetensors file of them loads)"
            ) from None
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"mend_archive {path}: unreadable: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ConfigError(f"mend_archive {path}: expected a state dict, got {type(state).__name__}")
    tensors = {}
    for key, value in state.items():
        name = "mend." + key.removeprefix("gtn.") if key.startswith("gtn.") else key
        if isinstance(value, torch.Tensor) and (name.startswith("mend.") or name == "edit_lrs"):
            tensors[name] = value
    _load_into(network, tensors, f"mend_archive {path}")
    return f"EasyEdit archive {path}"


def _load_into(network: MENDNetwork, tensors: dict[str, torch.Tensor], source: str) -> None:
    expected = network.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ConfigError(
            f"{source}: does not fit this model's MEND network ({detail}); check inner_params, rank, combine, shared"
        )
    wrong = [name for name, t in tensors.items() if t.shape != expected[name].shape]
    if wrong:
        name = wrong[0]
        raise ConfigError(f"{source}: {name} has shape {tuple(tensors[name].shape)}, the network {tuple(expected[name].shape)}")
    network.load_state_dict({name: t.to(expected[name].dtype) for name, t in tensors.items()})
