"""Where MEND networks are kept and how they are read: trained checkpoints in the cache, networks
packaged with pytest-kedit, and EasyEdit MEND archives.

A trained checkpoint is ``<cache>/mend/<model>/mend-<key>.safetensors`` (the network's tensors,
EasyEdit's names) with its manifest beside it (``.json``: model and data fingerprints, the split,
hyper-parameters, steps, validation figures). The key is the model fingerprint and the network's
layout (:func:`network_layout`), so the editor finds the network that fits. Both files are written
under the entry's file lock, each with its digest, and verified when read: a damaged network cannot
be made again here, so it is refused in one line saying how to train it again.

A packaged network is ``networks/<model>.safetensors`` in this package, with its manifest
``<model>.json``: the training manifest, the layout and the sha256 of the tensors' file, verified
before they are read (:func:`package_network` writes the pair). The editor uses it when the cache
holds no network of the model's layout: a user's own training wins.

Only tensors are ever loaded: safetensors, or ``torch.load`` with ``weights_only=True``; an archive
that needs anything else unpickled is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
from importlib import resources
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


#: The networks packaged with pytest-kedit: ``<model>.safetensors`` and its manifest ``<model>.json``.
PACKAGED_NETWORKS = Path(str(resources.files("pytest_kedit.editors.mend.networks")))

#: How a packaged network stores its tensors (:func:`packaged_tensors`), as its manifest says.
PACKAGED_STORAGE = "float16 for matrices, float32 for the rest"


def network_layout(network: MENDNetwork) -> dict[str, Any]:
    """What a trained network must share with ``network`` to load into it: the edited weights
    (``inner_params``) and the options that shape the network (``network_shape``)."""
    return {"inner_params": network.names, "network_shape": dataclasses.asdict(network.shape)}


def trained_path(loaded: LoadedModel, network: MENDNetwork) -> Path:
    """The cache entry of the network trained for ``loaded`` with this layout."""
    layout = network_layout(network)
    key = (loaded.fingerprint, layout["inner_params"], layout["network_shape"])
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


def packaged_tensors(network: MENDNetwork) -> dict[str, torch.Tensor]:
    """:func:`network_tensors` as a packaged network stores them: every matrix (the low-rank
    layers' ``u`` and ``v``; with ``shared``, the mode embeddings) in float16, every other tensor in
    float32."""
    # float32 for the rest: k counts the token factors of every training step, and float16 holds
    # integers exactly only up to 2048 and none above 65504; u_s and v_s are sums of squares over
    # those k factors (k times a variance), so they grow with k the same way.
    return {name: tensor.to(torch.float16 if tensor.dim() >= 2 else torch.float32)
            for name, tensor in network_tensors(network).items()}


def package_network(network: MENDNetwork, manifest: dict[str, Any], folder: Path) -> Path:
    """Write ``network`` into ``folder`` as the packaged network of ``manifest["model"]`` (an
    embedded alias): ``<model>.safetensors`` (:func:`packaged_tensors`) and ``<model>.json``, the
    training ``manifest`` with the network's layout, how it is stored and the file's sha256.
    Returns the ``.safetensors`` path."""
    data = save_safetensors(packaged_tensors(network))
    path = folder / f"{manifest['model']}.safetensors"
    packaged = {**manifest, **network_layout(network), "stored": PACKAGED_STORAGE, "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_bytes(path, data)
    atomic_write_text(manifest_path(path), json.dumps(packaged, indent=2, default=str) + "\n")
    return path


def load_trained(network: MENDNetwork, loaded: LoadedModel) -> str:
    """Load the network trained for ``loaded`` with this layout into ``network``: the cache entry
    (:func:`load_cached`), else the packaged network (:func:`load_packaged`, from
    :data:`PACKAGED_NETWORKS`); say where it came from. With neither, a one-line error says how
    to train one."""
    manifest = load_cached(network, loaded)
    if manifest is not None:
        return f"{trained_path(loaded, network)} ({_training(manifest)})"
    packaged = load_packaged(network, loaded, PACKAGED_NETWORKS)
    if packaged is not None:
        return packaged
    raise ConfigError(f"no trained MEND network for {loaded.name}: train one with {_train_command(loaded)}, "
                      "or set mend_archive in --kedit-hparams")


def load_cached(network: MENDNetwork, loaded: LoadedModel) -> dict[str, Any] | None:
    """Load the cache entry trained for ``loaded`` with this layout (:func:`trained_path`) into
    ``network``, verified; its manifest, or None when there is no such entry. A damaged entry is
    refused in one line saying how to train it again."""
    path = trained_path(loaded, network)
    if not path.exists():
        return None
    remedy = f"a run cannot make it again: train it again with {_train_command(loaded)}"
    tensors = read_or_refuse(path, lambda entry: load_safetensors(entry.read_bytes()), remedy)
    manifest = read_or_refuse(manifest_path(path), lambda _: read_manifest(path), remedy)
    _load_into(network, tensors, str(path))
    return manifest


def load_packaged(network: MENDNetwork, loaded: LoadedModel, folder: Path) -> str | None:
    """Load the network of ``folder`` whose manifest names the fingerprint of ``loaded`` and the
    layout of ``network`` (:func:`network_layout`) into ``network``, in its dtype; say where it came
    from, or None when no network there fits. The file's sha256 is checked against the manifest
    before it is read; a file that differs, or a manifest that cannot be read, is a one-line error
    naming the file."""
    layout = network_layout(network)
    for path in (file.with_suffix(".safetensors") for file in sorted(folder.glob("*.json"))):
        try:
            manifest = read_manifest(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"packaged MEND network {manifest_path(path)}: unreadable ({str(exc).splitlines()[0]}); "
                              "reinstall pytest-kedit") from None
        fits = manifest.get("model_fingerprint") == loaded.fingerprint
        if fits and all(manifest.get(key) == value for key, value in layout.items()):
            _load_into(network, load_safetensors(_verified_bytes(path, manifest.get("sha256"))), str(path))
            return f"packaged network {path} ({_training(manifest)})"
    return None


def _verified_bytes(path: Path, sha256: object) -> bytes:
    """The bytes of the packaged network ``path`` when their sha256 is ``sha256``; a one-line
    error naming the file otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"packaged MEND network {path}: unreadable ({exc.strerror or exc}); reinstall pytest-kedit") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ConfigError(f"packaged MEND network {path}: its sha256 is not the one its manifest "
                          f"{manifest_path(path).name} records; reinstall pytest-kedit")
    return data


def _training(manifest: dict[str, Any]) -> str:
    """How a network was trained, from its manifest: its steps and its data."""
    return f"trained {manifest.get('steps')} steps on {manifest.get('data', {}).get('source')}"


def _train_command(loaded: LoadedModel) -> str:
    return f"`kedit train-mend --model {loaded.name} --from DATA --out DIR` (see kedit docs editors, MEND)"



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
