"""The baseline file: a run's per-case results, committed to the user's repository, that later runs
are judged against (:mod:`pytest_kedit.ci.regression`) and relative gates compare with
(:mod:`pytest_kedit.ci.gates`).

A baseline is one JSON object, written atomically, one case per line so that a change shows as a
readable diff::

    {
     "format": 1,
     "provenance": {...},        # the provenance of the run that wrote it (RunSummary.provenance)
     "cases": [
      {...CaseRecord...},        # sorted by split then case id; timings and verdicts left out
      ...
     ]
    }

Its default place is ``.kedit/baselines/<model>/<method>.json`` under pytest's rootdir, the
model and method made file-name safe (:func:`default_path`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest_kedit.benchmark.registry import METRICS, split_order
from pytest_kedit.errors import ConfigError
from pytest_kedit.results.provenance import DATA_FILES, LOADED_FIELDS, OPTIONAL_FIELDS, PROVENANCE_FIELDS, run_difference
from pytest_kedit.results.record import CaseKey, CaseRecord, RecordError, by_case
from pytest_kedit.storage.atomic import atomic_write_text

#: The version of the baseline file's layout (its ``format`` field); a file of another is re-created.
BASELINE_FORMAT = 1
#: Where baselines live under pytest's rootdir.
DEFAULT_FOLDER = Path(".kedit") / "baselines"
#: How to make a baseline, for the messages that need one.
CREATE_HINT = "create it with --kedit-baseline-update"
RECREATE_HINT = "re-create it with --kedit-baseline-update"


class BaselineError(ConfigError):
    """A baseline file that is missing, unreadable or malformed; the message names the file."""


@dataclass(frozen=True)
class Baseline:
    """A baseline file read back."""

    path: Path
    #: :func:`~pytest_kedit.results.provenance.provenance` of the run that wrote it (its ``thresholds``
    #: are for the reader: cases are judged by the thresholds of the run that reads it)
    provenance: dict[str, Any]
    #: (split, case_id) -> the case's record in the baseline run
    cases: dict[CaseKey, CaseRecord]

    def metrics(self, case: CaseKey) -> dict[str, float] | None:
        """The case's metrics in the baseline; None when the baseline lacks it or has it as an error."""
        record = self.cases.get(case)
        return None if record is None or record.outcome == "error" else record.metrics


def safe_name(text: str) -> str:
    """``text`` as one file-name component: runs of characters other than letters, digits, ``_``,
    ``.`` and ``-`` become ``_`` (a hub id ``org/name`` becomes ``org_name``, a path
    ``models/tiny`` becomes ``models_tiny``); leading dots and underscores are dropped, so the
    result never names a parent folder; ``_`` for a name with nothing left."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "_" for c in text)
    while "__" in cleaned:
        cleaned = cleaned.replace("__", "_")
    return cleaned.lstrip("._").rstrip("_") or "_"


def default_path(rootdir: Path, model: str, method: str) -> Path:
    """``ROOTDIR/.kedit/baselines/<model>/<method>.json`` (both parts :func:`safe_name`)."""
    return rootdir / DEFAULT_FOLDER / safe_name(model) / f"{safe_name(method)}.json"


def read_baseline(path: Path) -> Baseline:
    """Read and validate a baseline file. Raises :class:`BaselineError`, one line naming the file
    and what is wrong: missing (with how to create it), not JSON, a missing or malformed field,
    a bad case record (by its index), a case listed twice."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(f"baseline {path} does not exist; {CREATE_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline {path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {path}: not valid JSON: {exc.msg} (line {exc.lineno}); {RECREATE_HINT}") from None
    if not isinstance(data, dict):
        raise BaselineError(f"baseline {path}: must be a JSON object; {RECREATE_HINT}")
    if data.get("format") != BASELINE_FORMAT:
        raise BaselineError(f"baseline {path}: field 'format' must be {BASELINE_FORMAT}, got {data.get('format')!r}; {RECREATE_HINT}")
    recorded = data.get("provenance")
    if not isinstance(recorded, dict):
        raise BaselineError(f"baseline {path}: field 'provenance' must be an object; {RECREATE_HINT}")
    missing = [name for name in (*PROVENANCE_FIELDS, DATA_FILES) if name not in recorded and name not in OPTIONAL_FIELDS]
    if missing:
        raise BaselineError(f"baseline {path}: field 'provenance.{missing[0]}' is missing; {RECREATE_HINT}")
    if not isinstance(data.get("cases"), list):
        raise BaselineError(f"baseline {path}: field 'cases' must be a list of case records; {RECREATE_HINT}")
    cases = by_case((_case(path, index, item) for index, item in enumerate(data["cases"])),
                    lambda index, record: BaselineError(f"baseline {path}: case {index}: {record.case_id} is listed twice"))
    return Baseline(path, recorded, cases)


def _case(path: Path, index: int, item: Any) -> CaseRecord:
    """The baseline's case ``index``; BaselineError naming the file, the case and the field."""
    try:
        return CaseRecord.from_mapping(item)
    except RecordError as exc:
        raise BaselineError(f"baseline {path}: case {index}: {exc}") from None


def baseline_record(record: CaseRecord) -> CaseRecord:
    """What a baseline keeps of a case's record: everything but its timings and its judgement
    against an earlier baseline; its outcome is the thresholds' (``failed`` when it missed one,
    also when that run reported it as a known failure)."""
    outcome = "error" if record.outcome == "error" else ("failed" if record.failures else "passed")
    return replace(record, outcome=outcome, timings={}, verdict=None, regressions=[])


def baseline_text(provenance: Mapping[str, Any], records: Iterable[CaseRecord]) -> str:
    """The file's text (see the module docstring): cases by split (registry order) then case id."""
    ordered = sorted(records, key=lambda record: (split_order(record.split), record.case_id))
    head = json.dumps({"format": BASELINE_FORMAT, "provenance": provenance}, sort_keys=True, indent=1)
    cases = ",\n".join(" " + baseline_record(record).to_json() for record in ordered)
    return head.removesuffix("\n}") + ',\n "cases": [\n' + cases + ("\n" if cases else "") + " ]\n}\n"


def update_baseline(path: Path, provenance: Mapping[str, Any], records: Iterable[CaseRecord], complete: bool,
                    done: int, expected: int) -> tuple[bool, str]:
    """Write this run's cases as the baseline at ``path``: ``(written, line for the terminal)``.

    - No baseline there yet: this run's cases (a partial run says so in the line).
    - A baseline with the same provenance (:data:`~pytest_kedit.results.provenance.PROVENANCE_FIELDS`,
      the data compared file by file over the files both read:
      :func:`~pytest_kedit.results.provenance.run_difference`): merged, this run's cases replacing theirs
      and the others kept, so a run of a few cases (``-k``, ``--kedit-limit``, an interrupted
      run, one split) updates them without dropping the rest; its data files are both's.
    - A baseline made otherwise (or unreadable): replaced when the run is ``complete`` (it ran
      every case collected and was not interrupted); left as it is when the run is partial,
      the line saying so. ``done`` and ``expected`` are the run's case counts for that line.

    A baseline updated or replaced ends its line with what changed in the file
    (:class:`BaselineChanges`). Raises BaselineError naming the file when it cannot be written.
    """
    new = by_case(records)
    shown = display_path(path)
    existing: Baseline | None = None
    difference: str | None = None
    if path.exists():
        try:
            existing = read_baseline(path)
            difference = run_difference(existing.provenance, provenance)
        except BaselineError:
            difference = "it cannot be read"
    before = existing.cases if existing is not None else {}
    if existing is not None and difference is None:
        kept = {key: record for key, record in existing.cases.items() if key not in new}
        files = {**existing.provenance[DATA_FILES], **provenance[DATA_FILES]}
        _write(path, baseline_text({**provenance, DATA_FILES: files}, [*kept.values(), *new.values()]))
        changes = baseline_changes(before, {**kept, **new})
        return True, f"baseline {shown} updated: {len(new)} cases from this run, {len(kept)} kept; {changes}"
    partial = "" if complete else f" (partial run: {done} of {expected} cases)"
    if difference is not None and not complete:
        return False, (f"baseline {shown} not updated: this run is partial ({done} of {expected} cases) and the "
                       f"baseline differs ({difference}); run every case to replace it")
    _write(path, baseline_text(provenance, new.values()))
    if difference is not None:
        return True, f"baseline {shown} replaced ({difference}): {len(new)} cases; {baseline_changes(before, new)}"
    return True, f"baseline {shown} written: {len(new)} cases{partial}"


@dataclass(frozen=True)
class BaselineChanges:
    """What an update changed in a baseline file, case by case. A case is ``changed`` when its
    record in the file is not the one it had (:func:`baseline_record`, compared as JSON, so NaN
    equals NaN); of those, ``regressed`` when it became an error or a metric moved the bad way
    (``Metric.worse_by`` > 0, any amount), else ``improved`` when it stopped being an error or a
    metric moved the good way; a change of probabilities alone is neither."""

    changed: int = 0
    improved: int = 0
    regressed: int = 0
    #: cases the file did not have
    added: int = 0
    #: cases the file had and no longer has
    dropped: int = 0

    def __str__(self) -> str:
        """``2 changed (1 improved, 1 regressed), 3 added, 1 dropped``: the counts that are not 0,
        or ``no case changed``."""
        parts = []
        if self.changed:
            detail = ", ".join(f"{count} {word}" for count, word in ((self.improved, "improved"),
                                                                     (self.regressed, "regressed")) if count)
            parts.append(f"{self.changed} changed" + (f" ({detail})" if detail else ""))
        parts += [f"{count} {word}" for count, word in ((self.added, "added"), (self.dropped, "dropped")) if count]
        return ", ".join(parts) or "no case changed"


def baseline_changes(before: Mapping[CaseKey, CaseRecord], after: Mapping[CaseKey, CaseRecord]) -> BaselineChanges:
    """The :class:`BaselineChanges` from a baseline's cases ``before`` to the cases the file
    holds ``after`` (both by case; the records as a baseline keeps them or as the run made them)."""
    changed = improved = regressed = 0
    for key in before.keys() & after.keys():
        old, new = baseline_record(before[key]), baseline_record(after[key])
        if old.to_json() == new.to_json():
            continue
        changed += 1
        moves = _moves(old, new)
        if (new.outcome == "error") > (old.outcome == "error") or any(move > 0 for move in moves):
            regressed += 1
        elif (old.outcome == "error") > (new.outcome == "error") or any(move < 0 for move in moves):
            improved += 1
    return BaselineChanges(changed, improved, regressed, len(after.keys() - before.keys()), len(before.keys() - after.keys()))


def _moves(old: CaseRecord, new: CaseRecord) -> list[float]:
    """How much worse each metric both records have got (``Metric.worse_by``; NaN when either is NaN)."""
    return [METRICS[metric].worse_by(old.metrics[metric], value) for metric, value in new.metrics.items()
            if metric in old.metrics and metric in METRICS]


def baseline_difference(baseline: Baseline, current: Mapping[str, Any], ignore: Iterable[str] = (),
                        loaded: bool = True) -> str | None:
    """The first :data:`~pytest_kedit.results.provenance.PROVENANCE_FIELDS` field, other than those in
    ``ignore`` (and, unless ``loaded``, than :data:`LOADED_FIELDS`), in which the provenance
    ``current`` differs from the baseline's, as :func:`~pytest_kedit.results.provenance.run_difference`
    words it (the data compared over the files both runs read, so a run of some of the baseline's
    splits matches it); None when they agree."""
    skipped = {*ignore, *(() if loaded else LOADED_FIELDS)}
    return run_difference(baseline.provenance, current, [name for name in PROVENANCE_FIELDS if name not in skipped])


def version_note(baseline: Baseline, current: Mapping[str, Any]) -> str | None:
    """The line saying that ``baseline`` was made by another version of pytest-kedit than the run
    of provenance ``current`` (``package_version``), which it judges all the same: what a case
    measures matched (protocol and probe versions). None when the versions agree or one is unknown."""
    made, now = baseline.provenance.get("package_version"), current.get("package_version")
    if made is None or now is None or made == now:
        return None
    return (f"baseline {display_path(baseline.path)} was made by pytest-kedit {made}, this run by {now}; the cases "
            f"measure the same (protocol version {current.get('protocol_version')}, probe version "
            f"{current.get('probe_version')}), so it judges them")


def mismatch_message(baseline: Baseline, difference: str, ignore_option: str = "--kedit-baseline-ignore",
                     recreate_hint: str = RECREATE_HINT) -> str:
    """The one line that stops a run whose provenance differs from its baseline's; it names the
    difference (``hparams.lr: 0.01 recorded, 0.001 now``) and both ways out: ``recreate_hint``,
    and ``ignore_option`` (the option of the command that reads the baseline) with the field."""
    field = difference.split(":")[0].split(".")[0]
    return (f"baseline {display_path(baseline.path)} does not match this run: {difference}; {recreate_hint}, "
            f"or compare anyway with {ignore_option}={field}")


def parse_ignore(raw: str | None, option: str) -> tuple[str, ...]:
    """The provenance fields of a comma-separated ``raw`` (None: none); ConfigError naming
    ``option`` for a field that is not one of :data:`~pytest_kedit.results.provenance.PROVENANCE_FIELDS`."""
    ignore = tuple(name.strip() for name in (raw or "").split(",") if name.strip())
    unknown = [name for name in ignore if name not in PROVENANCE_FIELDS]
    if unknown:
        raise ConfigError(f"{option}: unknown field {unknown[0]!r}; choose from {', '.join(PROVENANCE_FIELDS)}")
    return ignore


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (shorter lines)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _write(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise BaselineError(f"baseline {path}: cannot write: {exc.strerror or exc}") from None
