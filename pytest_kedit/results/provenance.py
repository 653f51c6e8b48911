"""What a run's case results depend on, so that results are only combined with results made the
same way: a baseline with the run gated against it, a partial report with the run resuming it.

A provenance is a flat mapping built from a run summary (``summary.json``, or the summary a
running worker can already state once its model has loaded). Two provenances match when every
field in :data:`PROVENANCE_FIELDS` is equal; :func:`provenance_difference` names the first field
that is not, down to the hyper-parameter key. Results of runs that may have read different splits
are combined under :func:`run_difference`, which compares the data file by file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

#: Bumped whenever a protocol or a metric changes what a case records for the same inputs.
PROTOCOL_VERSION = 1

#: The fields that must agree; ``thresholds`` only for a resumed run (a baseline is judged
#: against the thresholds of the run that reads it).
PROVENANCE_FIELDS: tuple[str, ...] = (
    "model",
    "model_fingerprint",
    "method",
    "data_fingerprint",
    "hparams",
    "editor_fingerprint",
    "seed",
    "distortion_scaling",
    "protocol",
    "protocol_version",
    "package_version",
)

#: Fields added after provenances were first written, with the value an older provenance stands for.
LATER_FIELDS: dict[str, Any] = {"editor_fingerprint": None}

#: The fields known only once a process has loaded its model and editor.
LOADED_FIELDS: tuple[str, ...] = ("model_fingerprint", "editor_fingerprint", "hparams")

#: The provenance field with each data file's own fingerprint (file name -> sha256), which
#: :func:`run_difference` compares instead of ``data_fingerprint`` over the files both runs read.
DATA_FILES = "data_files"


def provenance(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance of a run from its summary (the keys ``summary.json`` has), in its JSON form
    (tuples become lists), so that a provenance read back from a file equals the one it was made from;
    :data:`DATA_FILES` only when the summary's ``data`` has ``files``."""
    fields = {
        "model": summary.get("model"),
        "model_fingerprint": summary.get("model_fingerprint"),
        "method": summary.get("method"),
        "data_fingerprint": (summary.get("data") or {}).get("fingerprint"),
        "hparams": summary.get("hparams") or {},
        "editor_fingerprint": summary.get("editor_fingerprint"),
        "seed": summary.get("seed"),
        "distortion_scaling": summary.get("distortion_scaling", "paper"),
        "protocol": summary.get("protocol", "paper"),
        "protocol_version": summary.get("protocol_version", PROTOCOL_VERSION),
        "package_version": (summary.get("versions") or {}).get("pytest_kedit"),
        "thresholds": list(summary.get("thresholds") or []),
    }
    files = (summary.get("data") or {}).get("files")
    if files:  # a summary written before files had fingerprints of their own has none
        fields[DATA_FILES] = files
    return dict(json.loads(json.dumps(fields, default=str)))


def provenance_difference(recorded: Mapping[str, Any], current: Mapping[str, Any],
                          fields: Sequence[str] = PROVENANCE_FIELDS) -> str | None:
    """The first field in which ``current`` differs from ``recorded``, as
    ``"hparams.v_lr: 0.5 recorded, 0.1 now"``; None when they agree on every field."""
    for name in fields:
        difference = _difference(name, recorded.get(name), current.get(name))
        if difference is not None:
            return difference
    return None


def _difference(path: str, recorded: Any, current: Any) -> str | None:
    if isinstance(recorded, Mapping) and isinstance(current, Mapping):
        for key in sorted(set(recorded) | set(current), key=str):
            difference = _difference(f"{path}.{key}", recorded.get(key), current.get(key))
            if difference is not None:
                return difference
        return None
    if recorded == current:
        return None
    return f"{path}: {recorded!r} recorded, {current!r} now"


def run_difference(recorded: Mapping[str, Any], current: Mapping[str, Any],
                   fields: Sequence[str] = PROVENANCE_FIELDS) -> str | None:
    """:func:`provenance_difference` for results combined across runs that may have read different
    splits (a baseline made on all five splits, a run of one): when both provenances have
    :data:`DATA_FILES`, ``data_fingerprint`` stands for the files both read, compared one by one,
    so a run of fewer splits matches; a file both read that differs is named, as
    ``"data_fingerprint: easy.json differs (sha256 1a2b3c4d5e6f recorded, 9f8e7d6c5b4a now)"``.
    Without them on either side (a provenance written before they existed) the overall
    fingerprints are compared."""
    recorded_files, current_files = recorded.get(DATA_FILES) or {}, current.get(DATA_FILES) or {}
    for name in fields:
        if name == "data_fingerprint" and recorded_files and current_files:
            difference = next((f"data_fingerprint: {file} differs (sha256 {recorded_files[file][:12]} recorded, "
                               f"{current_files[file][:12]} now)"
                               for file in sorted(set(recorded_files) & set(current_files))
                               if recorded_files[file] != current_files[file]), None)
        else:
            difference = _difference(name, recorded.get(name), current.get(name))
        if difference is not None:
            return difference
    return None
