"""Checks of everything a user passed, made before any model loads.

A run that would fail on its first case (an unknown method, a typo in the hyper-parameters, a
model that is not there, a device that is not there, a report path that is a file, a cache that
cannot be written), or end without its files (a report or HTML page that cannot be written where
asked), fails here instead, in one line, also under ``--collect-only``; minutes of model loading
are not spent first. The checks read files and configurations only; nothing here loads weights.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pytest_kedit.ci.baseline import baseline_difference, mismatch_message, read_baseline
from pytest_kedit.dataset.sources import Suite
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.devices import resolve_device, resolve_dtype
from pytest_kedit.model.embedded_models import EMBEDDED_MODELS
from pytest_kedit.model.location import locate_model
from pytest_kedit.run.options import KeditOptions
from pytest_kedit.storage.cache import ENV_CACHE_DIR, cache_dir


def check_options(options: KeditOptions) -> None:
    """Raise ConfigError, naming the option and the file at fault, for the first problem found."""
    from pytest_kedit.editors import editor_class
    from pytest_kedit.editors.hparams import read_hparams

    editor = editor_class(options.method)
    if options.hparams:
        read_hparams(Path(options.hparams), editor.hparams_class)
    check_device(options.device)
    try:
        resolve_dtype(options.dtype, torch.device("cpu"))
    except ConfigError as exc:
        raise ConfigError(f"--kedit-dtype: {exc}") from None
    check_model(options.model)
    check_cache()
    if options.report:
        check_report_folder(Path(options.report))
    if options.html:
        check_html_file(Path(options.html))


def check_device(spec: str) -> None:
    """The device is well-formed, and a CUDA device is there when one is named."""
    try:
        resolve_device(spec)
    except ConfigError as exc:
        raise ConfigError(f"--kedit-device: {exc}") from None


def check_model(name: str) -> None:
    """An embedded alias, a local folder with a ``config.json``, or a Hugging Face id that is in
    the local cache or reachable on the hub."""
    location = locate_model(name)
    if location.embedded is not None:
        return
    local = location.path
    if local.exists():  # a folder, or a file given for one
        if not (local / "config.json").is_file():
            raise ConfigError(f"--kedit-model: {local} has no config.json (a folder saved with save_pretrained)")
        return
    import huggingface_hub
    from huggingface_hub.constants import HF_HUB_CACHE, HF_HUB_OFFLINE
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:  # '/data/gpt2', '../model': meant as a folder
        raise ConfigError(f"--kedit-model: {name!r} is not an embedded alias ({', '.join(EMBEDDED_MODELS)}), "
                          f"and no folder {local.absolute()} exists") from None
    if isinstance(huggingface_hub.try_to_load_from_cache(name, "config.json"), str):
        return
    alternatives = f"embedded aliases: {', '.join(EMBEDDED_MODELS)}; or a local folder"
    if HF_HUB_OFFLINE:
        raise ConfigError(f"--kedit-model: {name!r} is not in the Hugging Face cache {HF_HUB_CACHE} "
                          f"and HF_HUB_OFFLINE is set; {alternatives}")
    try:
        huggingface_hub.model_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise ConfigError(f"--kedit-model: {name!r} is neither an embedded alias, a local folder, nor a model "
                          f"on the Hugging Face hub; {alternatives}") from None
    except Exception as exc:  # any failure to reach the hub: DNS, proxy, timeout, HTTP errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--kedit-model: {name!r} is not in the Hugging Face cache {HF_HUB_CACHE} and the hub "
                          f"cannot be reached ({reason}); {alternatives}") from None


def check_cache() -> None:
    """The cache folder can be written (a run remembers probabilities there, and converts or
    computes there what the cache lacks): it is created if needed, and a file made in it."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"the cache folder {folder} cannot be written ({exc.strerror or exc}); make it writable, "
                          f"or set {ENV_CACHE_DIR} to a folder that can be") from None


def check_report_folder(folder: Path) -> None:
    """The report folder exists as a folder, or can be created (:func:`check_creatable`)."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--kedit-report: {folder} is a file, not a folder")
    check_creatable(folder, "--kedit-report")


def check_html_file(file: Path) -> None:
    """The HTML page's path is not a folder, and its folder exists or can be created
    (:func:`check_creatable`; the page's writer creates it at the end of the run)."""
    if file.is_dir():
        raise ConfigError(f"--kedit-html: {file} is a folder; name the page's file, e.g. {file / 'report.html'}")
    check_creatable(file.parent, "--kedit-html")


def check_creatable(folder: Path, option: str) -> None:
    """``folder`` is a writable folder, or can be created: its nearest existing ancestor is a
    writable folder. ConfigError naming ``option`` and that ancestor otherwise."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option}: cannot create {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option}: cannot write into {existing}")


def check_suite(options: KeditOptions, suite: Suite) -> None:
    """Every split asked for by name has its file, and the run has at least one case."""
    if options.splits_given:
        missing = [split for split in options.splits if split not in suite.splits]
        if missing:
            from pytest_kedit.benchmark.registry import SPLITS

            files = ", ".join(SPLITS[split].data_file for split in missing)
            raise ConfigError(f"--kedit-split: {', '.join(missing)} asked for, but {suite.source} has no {files}")
    if not suite.entries(options.splits):
        raise ConfigError(f"no cases to run: {suite.source} holds no case of {', '.join(options.splits)}")


def check_baseline(options: KeditOptions, current: Mapping[str, Any]) -> None:
    """A run gated against a baseline: the file exists and is valid, and agrees with ``current``
    (the run's provenance before the model loads) on every field known now (model, method,
    data fingerprint, seed, ...); the model fingerprint and hparams are checked at the first
    case."""
    if not options.gating or options.baseline is None:
        return
    baseline = read_baseline(Path(options.baseline))
    difference = baseline_difference(baseline, current, options.baseline_ignore, loaded=False)
    if difference is not None:
        raise ConfigError(mismatch_message(baseline, difference))
