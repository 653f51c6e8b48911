"""Resolving ``--kedit-device`` and ``--kedit-dtype`` to a torch device and dtype."""

from __future__ import annotations

import re

import torch

from pytest_kedit.errors import ConfigError


def resolve_device(spec: str = "auto", worker_index: int | None = None) -> torch.device:
    """The torch device for ``--kedit-device``.

    ``auto``: a GPU if CUDA is available, else the CPU. ``auto`` and ``cuda`` put pytest-xdist
    worker ``worker_index`` on GPU ``worker_index % device_count``, spreading workers over the
    visible GPUs; ``cuda:N`` pins GPU N; ``cpu`` is the CPU.
    """
    spec = spec.strip().lower()
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    match = re.fullmatch(r"(auto|cuda)(?::(\d+))?", spec)
    if match is None or (match[1] == "auto" and match[2] is not None):
        raise ConfigError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} asked for, but CUDA is not available (torch {torch.__version__})")
    count = torch.cuda.device_count()
    if match[2] is None:
        return torch.device("cuda", (worker_index or 0) % count)
    index = int(match[2])
    if index >= count:
        raise ConfigError(f"device {spec!r} asked for, but only {count} CUDA device(s) are visible")
    return torch.device("cuda", index)


_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """The torch dtype for ``--kedit-dtype``.

    ``auto`` is float32 on every device: the metrics compare probabilities of competing objects
    and the editors solve linear systems, which half precision perturbs, and the paper's runs
    used float32. (This differs from transformers' ``dtype="auto"``, which follows the
    checkpoint.) Half precision is opt-in: ``float16``/``fp16``, ``bfloat16``/``bf16``.
    """
    key = spec.strip().lower()
    if key == "auto":
        return torch.float32
    if key not in _DTYPES:
        raise ConfigError(f"unknown dtype {spec!r}: use auto, {', '.join(_DTYPES)}")
    dtype = _DTYPES[key]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"dtype {spec!r} asked for, but {device} does not support bfloat16; use float16")
    return dtype


def fast_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware: a CUDA device that supports it,
    or a CPU with AVX-512 BF16 or AMX (where oneDNN's bfloat16 kernels beat float32's)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
