"""Probabilities under the original model θ, remembered on disk, and the perplexity of held-out
texts under θ (:mod:`pytest_kedit.model.perplexity`).

They do not depend on the editing method, so a run of ROME after a run of FT on the same model
reuses them. Each remembered batch of probabilities is one cache entry (``verified.read_entry``) in a
folder per model fingerprint × dtype × device type × ``probe.PROBE_VERSION`` (× the probe keeping prompts' trailing spaces,
``--kedit-protocol=upstream``, which gives other probabilities after such a prompt); opening the
folder reads every entry, so a pair measured in any earlier batch, by any process, is found again;
a damaged entry is removed, and its pairs are measured again when asked for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pytest_kedit.model.perplexity import PERPLEXITY_VERSION
from pytest_kedit.model.probe import PROBE_VERSION
from pytest_kedit.storage.cache import cache_key, entry_path
from pytest_kedit.storage.verified import read_entry, read_or_drop


class OriginalProbes:
    """The probabilities remembered for one model state θ: a model fingerprint, dtype and device type."""

    def __init__(self, fingerprint: str, dtype: torch.dtype, device: torch.device, keep_trailing_space: bool = False):
        key = (fingerprint, dtype, device.type, PROBE_VERSION, *(("keep-trailing-space",) if keep_trailing_space else ()))
        self.folder = entry_path("original-probes", "probes", *key)
        self.values: dict[str, float] = {}
        for entry in sorted(self.folder.glob("*.json")):
            self.values.update(read_or_drop(entry, _read) or {})

    def lookup(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray | None:
        """The remembered probabilities of all ``pairs``, or None if any is missing."""
        keys = [cache_key(*pair) for pair in pairs]
        if not all(k in self.values for k in keys):
            return None
        return np.array([self.values[k] for k in keys], dtype=np.float64)

    def remember(self, pairs: Sequence[tuple[str, str]], probs: np.ndarray) -> None:
        self._remember({cache_key(*pair): float(p) for pair, p in zip(pairs, probs)})

    def perplexity(self, texts: Sequence[str], window: int) -> float | None:
        """The remembered perplexity of ``texts`` in windows of ``window`` tokens, or None."""
        return self.values.get(_perplexity_key(texts, window))

    def remember_perplexity(self, texts: Sequence[str], window: int, value: float) -> None:
        self._remember({_perplexity_key(texts, window): float(value)})

    def _remember(self, entry: dict[str, float]) -> None:
        self.values.update(entry)

        def write(tmp: Path) -> None:
            tmp.write_text(json.dumps(entry), encoding="utf-8")

        read_entry(self.folder / f"{cache_key(*entry)}.json", _read, write)


def _perplexity_key(texts: Sequence[str], window: int) -> str:
    """The key of a perplexity among the remembered values, never a pair's: it has more parts."""
    return cache_key("perplexity", PERPLEXITY_VERSION, window, *texts)


def _read(path: Path) -> dict[str, float]:
    """A remembered batch: pair key -> probability; ValueError when it is not one."""
    values = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(values, dict) or not all(isinstance(p, float) for p in values.values()):
        raise ValueError("not a mapping of pairs to probabilities")
    return values
