"""What a run's case results depend on, so that results are only combined with results made the
same way: a baseline with the run gated against it, a partial report with the run resuming it.

A provenance is a flat mapping (:func:`provenance`) of what a run summary states
(:meth:`~pytest_kedit.results.summary.RunSummary.provenance`), or of what a running worker can
already state once its model has loaded. Two provenances match when every
field in :data:`PROVENANCE_FIELDS` is equal (the package version is recorded, not matched); :func:`provenance_difference` names the first field
that is not, down to the hyper-parameter key. Results of runs that may have read different splits
are combined under :func:`run_difference`, which compares the data file by file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

#: The version of what a case measures: bumped whenever a plan, a ``--kedit-protocol`` choice or a
#: metric changes what a case records for the same inputs. Its provenance key is ``protocol_version``;
#: with the probe's version (``probe_version``) it is what a baseline must match. A release that bumps
#: either says, in its release note, that baselines must be made again.
MEASUREMENT_VERSION = 1

#: The fields that must agree; ``thresholds`` only for a resumed run (a baseline is judged
#: against the thresholds of the run that reads it). The package version (``package_version``) is
#: recorded but not matched: a release that measures as the one before judges runs against its
#: baselines.
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
    "probe_version",
    "sequential",
)
#: The fields a recorded provenance may lack: read as null, the value of a run that did not set them.
OPTIONAL_FIELDS: tuple[str, ...] = ("sequential",)

#: The fields known only once a process has loaded its model and editor.
LOADED_FIELDS: tuple[str, ...] = ("model_fingerprint", "editor_fingerprint", "hparams", "probe_version")

#: The provenance field with each data file's own fingerprint (file name -> sha256), which
#: :func:`run_difference` compares instead of ``data_fingerprint`` over the files both runs read.
DATA_FILES = "data_files"


def provenance(*, model: str, model_fingerprint: str | None, method: str, data_fingerprint: str | None,
               data_files: Mapping[str, str], hparams: Mapping[str, Any], editor_fingerprint: str | None, seed: int,
               distortion_scaling: str, protocol: str, probe_version: int | None, package_version: str | None,
               thresholds: Sequence[str], sequential: Mapping[str, Any] | None) -> dict[str, Any]:
    """The provenance of a run (``thresholds`` as specs), in its JSON form (tuples become lists),
    so that a provenance read back from a file equals the one it was made from. The protocol
    version is this package's :data:`MEASUREMENT_VERSION`; ``probe_version`` is the version of the
    probe that measured the cases (None when no case reached the model); ``sequential`` the
    ``--kedit-sequential*`` and ``--kedit-carry`` options that differ from their defaults (None when none does)."""
    fields = {
        "model": model,
        "model_fingerprint": model_fingerprint,
        "method": method,
        "data_fingerprint": data_fingerprint,
        "hparams": hparams,
        "editor_fingerprint": editor_fingerprint,
        "seed": seed,
        "distortion_scaling": distortion_scaling,
        "protocol": protocol,
        "protocol_version": MEASUREMENT_VERSION,
        "probe_version": probe_version,
        "package_version": package_version,
        "thresholds": list(thresholds),
        "sequential": sequential,
        DATA_FILES: data_files,
    }
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
    splits (a baseline made on all five splits, a run of one): ``data_fingerprint`` stands for the
    files both read (:data:`DATA_FILES`), compared one by one, so a run of fewer splits matches; a
    file both read that differs is named, as
    ``"data_fingerprint: easy.json differs (sha256 1a2b3c4d5e6f recorded, 9f8e7d6c5b4a now)"``."""
    recorded_files, current_files = recorded.get(DATA_FILES) or {}, current.get(DATA_FILES) or {}
    for name in fields:
        if name == "data_fingerprint":
            difference = next((f"data_fingerprint: {file} differs (sha256 {recorded_files[file][:12]} recorded, "
                               f"{current_files[file][:12]} now)"
                               for file in sorted(set(recorded_files) & set(current_files))
                               if recorded_files[file] != current_files[file]), None)
        else:
            difference = _difference(name, recorded.get(name), current.get(name))
        if difference is not None:
            return difference
    return None
