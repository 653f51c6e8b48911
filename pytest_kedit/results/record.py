"""The record of one case: a line of ``cases.jsonl``, built once when the case ends
(:mod:`pytest_kedit.run.session`) and validated once when a report folder is read back.

Fields: ``case_id`` (``reverse-0042``), ``split``, ``relation`` (e1's relation, or the case's
rule such as ``P22>P40``; null when the record could not be parsed), ``arity`` (RoundEdit:
``1-N``, possibly ``@relation``), ``model``, ``method``, ``outcome`` (passed | failed | error |
xfailed: a known failure of a run gated against a baseline, or a missed threshold recorded by
``--kedit-baseline-update``),
``metrics`` (key -> value; empty on error), ``probabilities`` (state -> fact -> p),
``failures`` (one message per missed threshold), ``failed_metrics`` (their metric keys, in the
same order), ``error`` (the message that replaced the case's result), ``timings`` (seconds per
phase), ``nodeid`` (the pytest test), ``verdict`` (against the baseline: regressed | known |
improved | passed | new; null without one, :mod:`pytest_kedit.ci.regression`) and ``regressions``
(one message per metric that regressed). A stream's record (split ``sequential``) also has
``curve``: its schedule (``edits``, ``batch``, ``every``, ``scheme``), its metrics at every
checkpoint (``checkpoints``, each with its ``edits``) and the update norms after every batch
(``batches``: ``edits``, ``norm``, ``norms`` per matrix), as
:func:`pytest_kedit.benchmark.scoring.sequential` gives them; its ``metrics`` are the last
checkpoint's and the collapse point. Other records have no ``curve`` (a line without one reads as null).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_kedit.benchmark.registry import METRICS, SPLITS

OUTCOMES = ("passed", "failed", "error", "xfailed")
#: A case against its baseline (:mod:`pytest_kedit.ci.regression` decides it).
Verdict = Literal["regressed", "known", "improved", "passed", "new"]
#: The verdicts in the order the terminal summary counts them.
VERDICTS: tuple[Verdict, ...] = ("regressed", "known", "improved", "passed", "new")
#: The phases a case's wall time is split into (``timings``).
PHASES = ("edit", "probe", "restore")
#: A case of a run, as the records of two runs (a run and its baseline, two runs compared) are
#: paired: (split, case_id).
CaseKey = tuple[str, str]


def outcome_counts(records: Iterable[CaseRecord]) -> dict[str, int]:
    """How many records have each outcome, every outcome named (``error``: a case whose data
    could not run, or whose run raised)."""
    counts = Counter(record.outcome for record in records)
    return {outcome: counts[outcome] for outcome in OUTCOMES}


class RecordError(ValueError):
    """A ``cases.jsonl`` line that is not a valid case record; the message names the field."""


@dataclass
class CaseRecord:
    case_id: str
    split: str
    relation: str | None
    arity: str | None
    model: str
    method: str
    outcome: str = "passed"
    metrics: dict[str, float] = field(default_factory=dict)
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    failed_metrics: list[str] = field(default_factory=list)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    nodeid: str | None = None
    verdict: str | None = None
    regressions: list[str] = field(default_factory=list)
    curve: dict[str, Any] | None = None

    @property
    def key(self) -> CaseKey:
        """The case the record is of: (split, case_id)."""
        return self.split, self.case_id

    def to_json(self) -> str:
        """One line of ``cases.jsonl``: the fields as a JSON object with sorted keys, ``curve``
        only when there is one."""
        fields = dataclasses.asdict(self)
        if fields["curve"] is None:
            del fields["curve"]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CaseRecord:
        """Parse and validate one ``cases.jsonl`` line. Raises :class:`RecordError` naming the
        field at fault, or ``json.JSONDecodeError``."""
        return cls.from_mapping(json.loads(text))

    @classmethod
    def from_mapping(cls, data: Any) -> CaseRecord:
        """Validate a decoded record; unknown fields are ignored."""
        if not isinstance(data, dict):
            raise RecordError("a case record must be a JSON object")
        _require(data, "case_id", str)
        if not isinstance(data.get("split"), str) or data["split"] not in SPLITS:
            raise RecordError(f"field 'split' must be one of {', '.join(SPLITS)}, got {data.get('split')!r}")
        if data.get("outcome") not in OUTCOMES:
            raise RecordError(f"field 'outcome' must be one of {', '.join(OUTCOMES)}, got {data.get('outcome')!r}")
        if data.get("verdict") is not None and data["verdict"] not in VERDICTS:
            raise RecordError(f"field 'verdict' must be one of {', '.join(VERDICTS)} or null, got {data['verdict']!r}")
        for name in ("relation", "arity", "error", "nodeid"):
            _optional(data, name, str)
        for name in ("model", "method"):
            _optional(data, name, str)
        metrics = _mapping(data, "metrics")
        for key, value in metrics.items():
            if key not in METRICS:
                raise RecordError(f"field 'metrics.{key}': unknown metric; known: {', '.join(METRICS)}")
            if not _is_number(value):
                raise RecordError(f"field 'metrics.{key}' must be a number")
        probabilities = _mapping(data, "probabilities")
        for state, values in probabilities.items():
            if not isinstance(values, dict) or not all(_is_number(v) for v in values.values()):
                raise RecordError(f"field 'probabilities.{state}' must map facts to numbers")
        for name in ("failures", "failed_metrics", "regressions"):
            value = data.get(name) or []
            if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
                raise RecordError(f"field '{name}' must be a list of strings")
        timings = _mapping(data, "timings")
        if not all(_is_number(v) for v in timings.values()):
            raise RecordError("field 'timings' must map phases to numbers")
        curve = data.get("curve")
        if curve is not None:
            _check_curve(curve)
        return cls(
            case_id=data["case_id"], split=data["split"], relation=data.get("relation"), arity=data.get("arity"),
            model=data.get("model") or "", method=data.get("method") or "", outcome=data["outcome"],
            metrics={k: float(v) for k, v in metrics.items()},
            probabilities={state: {k: float(v) for k, v in values.items()} for state, values in probabilities.items()},
            failures=list(data.get("failures") or []), failed_metrics=list(data.get("failed_metrics") or []),
            error=data.get("error"), timings={k: float(v) for k, v in timings.items()}, nodeid=data.get("nodeid"),
            verdict=data.get("verdict"), regressions=list(data.get("regressions") or []), curve=curve,
        )


def by_case(records: Iterable[CaseRecord],
            twice: Callable[[int, CaseRecord], Exception] | None = None) -> dict[CaseKey, CaseRecord]:
    """The records by their :attr:`~CaseRecord.key`. A case met again raises ``twice(position,
    record)`` of that record (``position`` counted from 0 in ``records``); without ``twice`` the
    later record of a case replaces the earlier."""
    cases: dict[CaseKey, CaseRecord] = {}
    for position, record in enumerate(records):
        if twice is not None and record.key in cases:
            raise twice(position, record)
        cases[record.key] = record
    return cases


def paired(a: Mapping[CaseKey, CaseRecord], b: Mapping[CaseKey, CaseRecord]) -> list[tuple[CaseRecord, CaseRecord]]:
    """``(a's record, b's record)`` of every case both have, in key order (split, then ``case_id``);
    errors included."""
    return [(a[key], b[key]) for key in sorted(a.keys() & b.keys())]


def _check_curve(curve: Any) -> None:
    """RecordError naming the field unless ``curve`` is a stream's curve (see the module docstring):
    its points' values numbers, a batch's ``norms`` an object of numbers."""
    if not isinstance(curve, dict):
        raise RecordError("field 'curve' must be an object or null")
    if not isinstance(curve.get("schedule"), dict):
        raise RecordError("field 'curve.schedule' must be an object")
    for name in ("checkpoints", "batches"):
        points = curve.get(name)
        if not isinstance(points, list):
            raise RecordError(f"field 'curve.{name}' must be a list")
        for index, point in enumerate(points):
            where = f"curve.{name}[{index}]"
            if not isinstance(point, dict) or not _is_number(point.get("edits")):
                raise RecordError(f"field '{where}' must be an object with the number of 'edits'")
            for key, value in point.items():
                numbers = value.values() if key == "norms" and isinstance(value, dict) else [value]
                if not all(_is_number(number) for number in numbers):
                    raise RecordError(f"field '{where}.{key}' must be a number" + (" per matrix" if key == "norms" else ""))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(data: Mapping[str, Any], name: str, kind: type) -> None:
    if not isinstance(data.get(name), kind):
        raise RecordError(f"field '{name}' must be a {kind.__name__}")


def _optional(data: Mapping[str, Any], name: str, kind: type) -> None:
    if data.get(name) is not None and not isinstance(data[name], kind):
        raise RecordError(f"field '{name}' must be a {kind.__name__} or null")


def _mapping(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"field '{name}' must be an object")
    return value
