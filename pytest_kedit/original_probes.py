"""Probabilities under the original model θ, remembered on disk.

They do not depend on the editing method, so a run of ROME after a run of FT on the same model
reuses them. One JSON-lines file per model fingerprint × dtype × device type, appended under a
file lock (pytest-xdist workers share it); a torn last line from a killed writer is skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .cache import cache_dir, locked


def _key(prefix: str, target: str) -> str:
    return hashlib.sha1(f"{prefix}\0{target}".encode()).hexdigest()


class OriginalProbes:
    def __init__(self, fingerprint: str, dtype: torch.dtype, device: torch.device, root: Path | None = None):
        name = hashlib.sha256(f"{fingerprint}|{dtype}|{device.type}".encode()).hexdigest()[:24]
        self.path = (root or cache_dir()) / "original-probes" / f"{name}.jsonl"
        self.values: dict[str, float] = {}
        self._read()

    def _read(self) -> None:
        if not self.path.is_file():
            return
        for line in self.path.read_text().splitlines():
            try:
                self.values.update(json.loads(line))
            except json.JSONDecodeError:
                continue

    def lookup(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray | None:
        """The remembered probabilities of all ``pairs``, or None if any is missing."""
        keys = [_key(*pair) for pair in pairs]
        if not all(k in self.values for k in keys):
            return None
        return np.array([self.values[k] for k in keys], dtype=np.float64)

    def remember(self, pairs: Sequence[tuple[str, str]], probs: np.ndarray) -> None:
        entry = {_key(*pair): float(p) for pair, p in zip(pairs, probs)}
        self.values.update(entry)
        with locked(self.path):
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
