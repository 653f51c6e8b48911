"""Per-case thresholds on the metrics, written ``cs_imp>=1``, ``tfd<=0.3`` or ``cs_imp=off``."""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ConfigError

DISPLAY_NAMES = {
    "single_succ": "Single Succ",
    "cs": "CS",
    "cs_exp": "CS_exp",
    "cs_imp": "CS_imp",
    "cm": "CM",
    "tfd": "TFD",
    "succ": "Succ",
    "d": "D",
    "ir": "IR",
    "fr": "FR",
}

#: What a robust editor should do: resolve every conflict, keep tied facts, undo cleanly.
DEFAULT_THRESHOLDS = ("cs>=1", "cs_exp>=1", "cs_imp>=1", "tfd<=0.5", "succ>=1", "fr<=0")

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_SPEC = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<|=)\s*([^\s]+)\s*$")


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float

    def holds(self, x: float) -> bool:
        return _OPS[self.op](x, self.value)

    def __str__(self) -> str:
        return f"{DISPLAY_NAMES[self.metric]} {self.op} {self.value:g}"


def parse_thresholds(specs: Sequence[str]) -> dict[str, Threshold]:
    """Later specs override earlier ones for the same metric; ``metric=off`` removes it."""
    thresholds: dict[str, Threshold] = {}
    for spec in specs:
        match = _SPEC.match(spec)
        if not match:
            raise ConfigError(f"threshold {spec!r}: expected METRIC>=VALUE, METRIC<=VALUE or METRIC=off")
        metric, op, raw = match.groups()
        if metric not in DISPLAY_NAMES:
            raise ConfigError(f"threshold {spec!r}: unknown metric {metric!r}; known: {', '.join(DISPLAY_NAMES)}")
        if op == "=":
            if raw != "off":
                raise ConfigError(f"threshold {spec!r}: use >= or <= with a number, or {metric}=off")
            thresholds.pop(metric, None)
            continue
        try:
            thresholds[metric] = Threshold(metric, op, float(raw))
        except ValueError:
            raise ConfigError(f"threshold {spec!r}: {raw!r} is not a number") from None
    return thresholds


def failures(metrics: Mapping[str, float], evidence: Mapping[str, str], thresholds: Mapping[str, Threshold]) -> list[str]:
    """One line per threshold the case misses, with the probabilities behind the metric."""
    lines = []
    for metric, threshold in thresholds.items():
        if metric in metrics and not threshold.holds(metrics[metric]):
            why = evidence.get(metric, "")
            lines.append(f"{DISPLAY_NAMES[metric]} = {metrics[metric]:.4g}: {why} (threshold {threshold})")
    return lines
