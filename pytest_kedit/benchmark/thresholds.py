"""Per-case thresholds on the metrics: ``cs_imp>=1``, ``tfd<=0.3``, ``cs_imp=off``, and per
split ``reverse.cs_imp>=1`` or ``reverse.cs_imp=off``.

A split's threshold for a metric overrides the global one for that split only. Later specs
override earlier ones for the same (split, metric); the defaults come first, from
:data:`pytest_kedit.benchmark.registry.METRICS`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, overload

from pytest_kedit.benchmark.registry import METRICS, SPLITS, check_split_metric, default_threshold_specs
from pytest_kedit.errors import ConfigError

#: The comparison operators of thresholds and gates, by their spelling in a spec.
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_SPEC = re.compile(r"^\s*(?:([a-z_]+)\.)?([a-z_]+)\s*(>=|<=|>|<|=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float

    def holds(self, x: float) -> bool:
        return bool(COMPARISONS[self.op](x, self.value))

    def __str__(self) -> str:
        return f"{METRICS[self.metric].label} {self.op} {self.value:g}"

    def spec(self) -> str:
        return f"{self.metric}{self.op}{self.value!r}"


@dataclass(frozen=True)
class Thresholds:
    """The global thresholds, and per split the ones that replace or remove them there."""

    globals: Mapping[str, Threshold]
    #: split -> metric -> threshold, or None where the split turns the metric's threshold off
    per_split: Mapping[str, Mapping[str, Threshold | None]]

    def for_split(self, split: str) -> dict[str, Threshold]:
        """The thresholds a case of ``split`` is checked against, by metric, for the split's metrics."""
        chosen: dict[str, Threshold] = {}
        for metric in SPLITS[split].metrics:
            own = self.per_split.get(split, {})
            threshold = own[metric] if metric in own else self.globals.get(metric)
            if threshold is not None:
                chosen[metric] = threshold
        return chosen

    def specs(self) -> list[str]:
        """The thresholds as specs that :func:`parse_thresholds` (``defaults=False``) reads back:
        ``cs>=1``, ``reverse.cs_imp<=0.5``, ``reverse.cs_imp=off``."""
        out = [threshold.spec() for threshold in self.globals.values()]
        for split, own in self.per_split.items():
            out += [f"{split}.{t.spec()}" if t is not None else f"{split}.{metric}=off" for metric, t in own.items()]
        return out


def parse_thresholds(specs: Sequence[str], defaults: bool = True) -> Thresholds:
    """The thresholds of ``specs`` (after the registry's defaults when ``defaults``)."""
    globals_: dict[str, Threshold] = {}
    per_split: dict[str, dict[str, Threshold | None]] = {}
    for spec in (*default_threshold_specs(), *specs) if defaults else specs:
        split, metric, op, raw = _parse(spec)
        threshold = None if op == "=" else Threshold(metric, op, parse_number(raw, f"threshold {spec!r}"))
        if split is not None:
            per_split.setdefault(split, {})[metric] = threshold
        elif threshold is None:
            globals_.pop(metric, None)
            for own in per_split.values():
                own.pop(metric, None)
        else:
            globals_[metric] = threshold
    return Thresholds(globals_, per_split)


def _parse(spec: str) -> tuple[str | None, str, str, str]:
    match = _SPEC.match(spec)
    if not match:
        raise ConfigError(f"threshold {spec!r}: expected [SPLIT.]METRIC>=VALUE, [SPLIT.]METRIC<=VALUE or [SPLIT.]METRIC=off")
    split, metric, op, raw = match.groups()
    if metric not in METRICS:
        raise ConfigError(f"threshold {spec!r}: unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if split is not None:
        check_split_metric(split, metric, f"threshold {spec!r}")
    if op == "=" and raw != "off":
        raise ConfigError(f"threshold {spec!r}: use >= or <= with a number, or {metric}=off")
    return split, metric, op, raw


@overload
def parse_number(raw: str, where: str, minimum: float | None = None) -> float: ...
@overload
def parse_number(raw: str, where: str, minimum: int, whole: Literal[True]) -> int: ...
def parse_number(raw: str, where: str, minimum: float | None = None, whole: bool = False) -> float:
    """The number written ``raw``: a finite float, or with ``whole`` an int; at least ``minimum``
    when one is given. Anything else is a ConfigError of one line that starts with ``where`` (the
    option or the spec the number belongs to):

    - ``{where}: {raw!r} is not a number`` (``is not a whole number`` with ``whole``);
    - ``{where}: {raw!r} is not a finite number`` (no ``minimum``);
    - ``{where}: must be a finite number >= {minimum}, got {raw!r}`` (NaN and infinities too);
    - with ``whole``: ``{where}: must be at least {minimum}, got {value}``.
    """
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise ConfigError(f"{where}: {raw!r} is not a {'whole ' if whole else ''}number") from None
    if whole:
        if minimum is not None and value < minimum:
            raise ConfigError(f"{where}: must be at least {minimum}, got {value}")
    elif minimum is not None:
        if not (math.isfinite(value) and value >= minimum):
            raise ConfigError(f"{where}: must be a finite number >= {minimum:g}, got {raw!r}")
    elif not math.isfinite(value):
        raise ConfigError(f"{where}: {raw!r} is not a finite number")
    return value


@dataclass(frozen=True)
class Failure:
    """A threshold a case missed."""

    metric: str
    message: str


def failures(values: Mapping[str, float], evidence: Mapping[str, str], thresholds: Mapping[str, Threshold]) -> list[Failure]:
    """One failure per threshold the case misses, with the probabilities behind the metric."""
    missed = []
    for metric, threshold in thresholds.items():
        if metric in values and not threshold.holds(values[metric]):
            why = evidence.get(metric, "")
            missed.append(Failure(metric, f"{METRICS[metric].label} = {values[metric]:.4g}: {why} (threshold {threshold})"))
    return missed
