"""The summary of a run: ``summary.json`` of a report folder, built once by the controller at the
end of a session (:mod:`pytest_kedit.run.session`) and validated once when a report folder is read
back (:meth:`RunSummary.from_json`).

Its fields: what ran (``model``, ``method``, ``hparams_file`` and the resolved ``hparams``,
``device``, ``dtype``, ``model_source``, ``model_fingerprint``, ``editor_fingerprint``, ``probe_version``,
``statistics``: where second-moment statistics came from), on what (``data``, ``splits``,
``limit``, ``sample``, ``shard``), how (``seed``, ``distortion_scaling``, ``protocol``,
``thresholds``, ``sequential``: the stream options and ``--kedit-carry`` that differ from their
defaults), with which ``versions``, how far it got (``complete``, ``cases_expected``,
``cases_done``, ``outcomes``, ``timings``), and what it found (``counts``, ``intervals``). A run
merged from shards also has ``shards`` (the shards merged) and ``shards_missing``
(:mod:`pytest_kedit.results.shard_merge`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_kedit.benchmark.metrics import DISTORTION_SCALINGS
from pytest_kedit.benchmark.protocol import PROTOCOLS
from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.benchmark.thresholds import Thresholds, parse_thresholds
from pytest_kedit.dataset.shards import Shard, parse_shard
from pytest_kedit.errors import ConfigError, KeditError
from pytest_kedit.results.provenance import provenance


class SummaryError(KeditError):
    """A ``summary.json`` that is not a valid run summary; the message names the file, the field
    and, for a JSON syntax error, the line."""

    def __init__(self, path: str | os.PathLike[str], message: str, line: int | None = None):
        where = str(path) if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class RunData:
    """The data a run read: ``source`` as ``--kedit-data`` named it (the built-in suites' folder,
    ``upstream:NAME@COMMIT``), the ``fingerprint`` of the files read and each file's own sha256."""

    source: str | None
    fingerprint: str | None
    files: dict[str, str]


@dataclass(frozen=True)
class RunSummary:
    """A run summary (see the module docstring); :meth:`to_json` is ``summary.json``."""

    model: str
    method: str
    #: the ``--kedit-hparams`` file; None: the packaged defaults
    hparams_file: str | None
    #: as asked for (``auto``, ``cpu``, ...)
    device: str
    dtype: str
    splits: tuple[str, ...]
    limit: int | None
    #: ``{"size": N, "seed": SEED}`` of ``--kedit-sample``; None: every case
    sample: dict[str, int] | None
    #: this run's shard; None: every case (and in a merge of shards)
    shard: Shard | None
    seed: int
    distortion_scaling: str
    protocol: str
    thresholds: Thresholds
    hparams: dict[str, Any]
    model_source: str | None
    #: None when no case reached the model
    model_fingerprint: str | None
    editor_fingerprint: str | None
    #: the version of the probe that measured the cases; None when no case reached the model
    probe_version: int | None
    statistics: dict[str, Any]
    data: RunData
    #: ``pytest_kedit``, ``torch``, ``transformers``, ``python``
    versions: dict[str, str]
    #: false when the run was interrupted or finished fewer cases than were collected
    complete: bool
    cases_expected: int
    cases_done: int
    #: outcome -> number of cases
    outcomes: dict[str, int]
    #: seconds per phase (``model_load``, ``edit``, ``probe``, ``restore``, ``total``) and ``processes``
    timings: dict[str, float]
    #: :func:`~pytest_kedit.results.aggregation.run_counts`; None until the run's report computes it
    counts: dict[str, Any] | None = None
    #: :func:`~pytest_kedit.results.aggregation.interval_summary`; None until the run's report computes it
    intervals: dict[str, Any] | None = None
    #: a merge of shards: the shards merged, in order; None for any other run
    shards: tuple[Shard, ...] | None = None
    #: a merge of shards: the shards that were not there
    shards_missing: tuple[Shard, ...] = ()
    #: the ``--kedit-sequential*`` and ``--kedit-carry`` options that differ from their defaults; None: none does
    sequential: dict[str, Any] | None = None

    def provenance(self) -> dict[str, Any]:
        """The run's :func:`~pytest_kedit.results.provenance.provenance`."""
        return provenance(model=self.model, model_fingerprint=self.model_fingerprint, method=self.method,
                          data_fingerprint=self.data.fingerprint, data_files=self.data.files, hparams=self.hparams,
                          editor_fingerprint=self.editor_fingerprint, seed=self.seed,
                          distortion_scaling=self.distortion_scaling, protocol=self.protocol,
                          probe_version=self.probe_version, package_version=self.versions.get("pytest_kedit"),
                          thresholds=self.thresholds.specs(), sequential=self.sequential)

    def to_mapping(self) -> dict[str, Any]:
        """The summary as ``summary.json`` holds it: thresholds as specs, shards as ``K/N``;
        ``shards`` and ``shards_missing`` only in a merge of shards."""
        fields = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        fields.update(splits=list(self.splits), thresholds=self.thresholds.specs(), data=dataclasses.asdict(self.data),
                      shard=None if self.shard is None else str(self.shard))
        if self.shards is None:
            del fields["shards"], fields["shards_missing"]
        else:
            fields.update(shards=[str(shard) for shard in self.shards],
                          shards_missing=[str(shard) for shard in self.shards_missing])
        return fields

    def to_json(self) -> str:
        """The text of ``summary.json``: :meth:`to_mapping` with sorted keys, indent 2."""
        return json.dumps(self.to_mapping(), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, source: str | Mapping[str, Any], path: str | os.PathLike[str]) -> RunSummary:
        """Parse (when ``source`` is text) and validate a ``summary.json`` read from ``path``.
        Every field is required but ``shards`` and ``shards_missing`` (which go together) and
        ``sequential`` (null when absent); unknown fields are ignored. Raises :class:`SummaryError` naming ``path`` and the field at fault."""
        if isinstance(source, str):
            try:
                source = json.loads(source)
            except json.JSONDecodeError as exc:
                raise SummaryError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
        if not isinstance(source, Mapping):
            raise SummaryError(path, "must be a JSON object")
        read = _Fields(source, path)
        merged = "shards" in source
        return cls(
            model=read.text("model"),
            method=read.text("method"),
            hparams_file=read.optional("hparams_file", str, "a string"),
            device=read.value("device", str, "a string"),
            dtype=read.value("dtype", str, "a string"),
            splits=tuple(read.strings("splits", SPLITS)),
            limit=read.optional("limit", int, "a whole number"),
            sample=read.optional("sample", dict, "an object of whole numbers", _whole),
            shard=read.shard("shard"),
            seed=read.value("seed", int, "a whole number"),
            distortion_scaling=read.choice("distortion_scaling", DISTORTION_SCALINGS),
            protocol=read.choice("protocol", PROTOCOLS),
            thresholds=read.thresholds("thresholds"),
            hparams=read.value("hparams", dict, "an object"),
            model_source=read.optional("model_source", str, "a string"),
            model_fingerprint=read.optional("model_fingerprint", str, "a string"),
            editor_fingerprint=read.optional("editor_fingerprint", str, "a string"),
            probe_version=read.optional("probe_version", int, "a whole number"),
            statistics=read.value("statistics", dict, "an object"),
            data=read.run_data("data"),
            versions=read.value("versions", dict, "an object of strings", _string),
            complete=read.value("complete", bool, "true or false"),
            cases_expected=read.value("cases_expected", int, "a whole number"),
            cases_done=read.value("cases_done", int, "a whole number"),
            outcomes=read.value("outcomes", dict, "an object of whole numbers", _whole),
            timings=read.value("timings", dict, "an object of numbers", _number),
            counts=read.optional("counts", dict, "an object"),
            intervals=read.optional("intervals", dict, "an object"),
            shards=tuple(read.shards("shards")) if merged else None,
            shards_missing=tuple(read.shards("shards_missing")) if merged else (),
            sequential=read.optional("sequential", dict, "an object") if "sequential" in source else None,
        )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _string(value: Any) -> bool:
    return isinstance(value, str)


class _Fields:
    """Reads the fields of a decoded summary (or of its ``data``, ``prefix`` ``"data."``), each
    checked; a :class:`SummaryError` names ``path`` and the field."""

    def __init__(self, data: Mapping[str, Any], path: str | os.PathLike[str], prefix: str = ""):
        self.data, self.path, self.prefix = data, path, prefix

    def error(self, name: str, problem: str) -> SummaryError:
        return SummaryError(self.path, f"field '{self.prefix}{name}' {problem}")

    def get(self, name: str) -> Any:
        if name not in self.data:
            raise self.error(name, "is missing")
        return self.data[name]

    def value(self, name: str, kind: type, what: str, item: Callable[[Any], bool] | None = None,
              nullable: bool = False) -> Any:
        """The field, of ``kind`` (``int`` excludes booleans), its values each passing ``item``
        when given, or null when ``nullable``; else "must be ``what``"."""
        value: Any = self.get(name)
        if value is None and nullable:
            return None
        valid = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if valid and item is not None:
            valid = all(item(entry) for entry in value.values())
        if not valid:
            raise self.error(name, f"must be {what}{' or null' if nullable else ''}")
        return value

    def optional(self, name: str, kind: type, what: str, item: Callable[[Any], bool] | None = None) -> Any:
        """:meth:`value`, or None when the field is null."""
        return self.value(name, kind, what, item, nullable=True)

    def text(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str) or not value:
            raise self.error(name, "must be a non-empty string")
        return value

    def choice(self, name: str, choices: Mapping[str, Any] | tuple[str, ...]) -> str:
        value = self.get(name)
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def strings(self, name: str, choices: Mapping[str, Any] | None = None) -> list[str]:
        """A list of strings (each one of ``choices`` when given)."""
        value = self.get(name)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.error(name, "must be a list of strings")
        unknown = [item for item in value if choices is not None and item not in choices]
        if unknown:
            raise self.error(name, f"has {unknown[0]!r}, not one of {', '.join(choices or ())}")
        return value

    def run_data(self, name: str) -> RunData:
        fields = _Fields(self.value(name, dict, "an object"), self.path, f"{self.prefix}{name}.")
        return RunData(fields.optional("source", str, "a string"), fields.optional("fingerprint", str, "a string"),
                       fields.value("files", dict, "an object of strings", _string))

    def thresholds(self, name: str) -> Thresholds:
        try:
            return parse_thresholds(self.strings(name), defaults=False)
        except ConfigError as exc:
            raise self.error(name, f"has {exc}") from None

    def shard(self, name: str) -> Shard | None:
        value = self.get(name)
        return None if value is None else self._shard(name, value)

    def shards(self, name: str) -> list[Shard]:
        return [self._shard(name, value) for value in self.strings(name)]

    def _shard(self, name: str, value: Any) -> Shard:
        try:
            return parse_shard(str(value))
        except ConfigError:
            raise self.error(name, f"is {value!r}, not K/N") from None
