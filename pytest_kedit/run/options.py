"""The plugin's options: each a command-line flag ``--kedit-NAME`` and an ini key ``kedit_NAME``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from pytest_kedit.benchmark.protocol import Protocol, resolve_protocol
from pytest_kedit.benchmark.registry import SPLITS, check_splits, default_threshold_specs
from pytest_kedit.benchmark.thresholds import Thresholds, parse_number, parse_thresholds
from pytest_kedit.ci.baseline import default_path, parse_ignore
from pytest_kedit.ci.gates import Gate, GateMode, parse_gates
from pytest_kedit.ci.regression import DEFAULT_TOLERANCE, parse_tolerance
from pytest_kedit.dataset.shards import Shard, parse_shard
from pytest_kedit.errors import ConfigError
from pytest_kedit.results.provenance import PROVENANCE_FIELDS

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_METHOD = "ft"

# name, ini type, default, help
_OPTIONS: list[tuple[str, str, str | None, str]] = [
    ("model", "string", DEFAULT_MODEL, "model: embedded alias (smollm2-135m, gemma3-270m), Hugging Face id or local path"),
    ("method", "string", DEFAULT_METHOD, "editing method: ft, or any registered in the pytest_kedit.editors entry points"),
    ("hparams", "string", None, "YAML file of hyper-parameters (EasyEdit key names); default: packaged per method and model"),
    ("device", "string", "auto", "auto, cpu, cuda or cuda:N; auto spreads pytest-xdist workers over the visible GPUs"),
    ("dtype", "string", "auto", "auto, float32, float16 or bfloat16"),
    ("data", "string", None, "folder in the upstream layout (e.g. .../pitfalls/GPT2-XL), or upstream:GPT2-XL / "
     "upstream:GPT-J (the published files, downloaded once); default: the built-in suites"),
    ("split", "string", None, "comma-separated splits to run, each of which must be in the data: " + ", ".join(SPLITS)
     + "; default: every split the data has"),
    ("limit", "string", None, "run only the first N cases of each split"),
    ("sample", "string", None, "run a sample of N cases per split, stratified by relation and drawn with --kedit-seed "
     "(from the first --kedit-limit cases when both are given)"),
    ("shard", "string", None, "run shard K of N (K/N, e.g. 2/3): within each split, the cases ordered by relation "
     "and case id and dealt round-robin; merge the shards' report folders with kedit report"),
    ("report", "string", None, "folder for table1.md, table2.md, relations.md, cases.jsonl and summary.json"),
    ("html", "string", None, "also write the visual report, one self-contained HTML page, to this file "
     "(needs pip install 'pytest-kedit[html]')"),
    ("seed", "string", "0", "seed for every case's random state"),
    ("protocol", "string", "paper", "paper (the paper's definitions) or upstream (the published code's choices, to "
     "compare with the published tables: prompts' trailing spaces, Others, D scaling, FT/ROME/MEMIT defaults; "
     "kedit docs fidelity)"),
    ("distortion", "string", None, "D scaling: paper (JS divergence) or upstream (JS/|Obj|, as in the published Table 2); "
     "default: the protocol's"),
    ("tolerance", "string", f"{DEFAULT_TOLERANCE:g}", "with a baseline: how much worse (per-case scale, as the thresholds) a metric may get "
     "before its case regresses; a missed threshold the baseline met always regresses"),
    ("baseline-ignore", "string", None, "with a baseline: comma-separated provenance fields that may differ from "
     "the baseline's, e.g. hparams to gate a change of hyper-parameters; one of " + ", ".join(PROVENANCE_FIELDS)),
    ("gate-mode", "string", "significant", "how a gate relative to the baseline fails: significant (the whole paired "
     "95 percent interval of run - baseline beyond the margin) or point (the difference itself)"),
]
#: The value of --kedit-baseline (given alone) and of ini kedit_baseline that means the default path.
DEFAULT_BASELINE = "default"


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("kedit", "knowledge-editing pitfalls benchmark (pytest-kedit)")
    for name, _, default, help_text in _OPTIONS:
        key = name.replace("-", "_")
        group.addoption(f"--kedit-{name}", dest=f"kedit_{key}", default=None, help=f"{help_text} (default: {default})")
        parser.addini(f"kedit_{key}", help_text, type="string", default=default)
    group.addoption(
        "--kedit-threshold",
        dest="kedit_threshold",
        action="append",
        default=[],
        help="per-case threshold [SPLIT.]METRIC>=V, [SPLIT.]METRIC<=V or [SPLIT.]METRIC=off; repeatable; "
        f"overrides kedit_thresholds (default: {' '.join(default_threshold_specs())})",
    )
    parser.addini("kedit_thresholds", "per-case thresholds, one per line or space-separated", type="args", default=[])
    by_relation_help = "also print the per-relation (and, for RoundEdit, per-arity) breakdown of every metric"
    group.addoption("--kedit-by-relation", dest="kedit_by_relation", action="store_true", default=None,
                    help=f"{by_relation_help} (default: only written to relations.md in --kedit-report)")
    parser.addini("kedit_by_relation", by_relation_help, type="bool", default=False)
    resume_help = ("continue the partial run in --kedit-report: cases it recorded under the same model, data, "
                   "hparams, seed, thresholds and versions are reported from their records, not run again")
    group.addoption("--kedit-resume", dest="kedit_resume", action="store_true", default=None, help=resume_help)
    parser.addini("kedit_resume", resume_help, type="bool", default=False)
    baseline_help = ("judge every case against this baseline file: a case fails only when it regressed; alone, or "
                     f"'{DEFAULT_BASELINE}': .kedit/baselines/<model>/<method>.json under the rootdir")
    group.addoption("--kedit-baseline", dest="kedit_baseline", nargs="?", const=DEFAULT_BASELINE, default=None,
                    metavar="PATH", help=f"{baseline_help} (default: no baseline)")
    parser.addini("kedit_baseline", baseline_help, type="string", default=None)
    update_help = ("write this run's per-case results as the baseline (--kedit-baseline's file, or the default path); "
                   "missed thresholds become known failures (xfail)")
    group.addoption("--kedit-update-baseline", dest="kedit_update_baseline", action="store_true", default=None,
                    help=update_help)
    parser.addini("kedit_update_baseline", update_help, type="bool", default=False)
    group.addoption("--kedit-gate", dest="kedit_gate", action="append", default=[],
                    help="aggregate gate on the tables' x100 scale, checked when the session ends: SPLIT.METRIC>=V, "
                    "SPLIT.METRIC<=V, or relative to the baseline SPLIT.METRIC<=baseline+V; repeatable; adds to kedit_gates")
    parser.addini("kedit_gates", "aggregate gates, one per line or space-separated", type="args", default=[])


@dataclass(frozen=True)
class KeditOptions:
    model: str
    method: str
    hparams: str | None
    device: str
    dtype: str
    data: str | None
    splits: tuple[str, ...]
    #: the splits were named (--kedit-split or kedit_split), so each must be in the data
    splits_given: bool
    limit: int | None
    sample: int | None
    #: this run's shard of the cases (after limit and sample); None: every case
    shard: Shard | None
    report: str | None
    html: str | None
    seed: int
    #: D's scaling: --kedit-distortion, else the protocol's
    distortion: str
    #: the resolved --kedit-protocol (its ``distortion`` is :attr:`distortion`)
    protocol: Protocol
    thresholds: Thresholds
    by_relation: bool
    #: continue the run recorded in :attr:`report` (:mod:`pytest_kedit.run.resume`)
    resume: bool
    #: the baseline file to judge cases against or to update (resolved); None: no baseline
    baseline: str | None
    #: write this run's results as the baseline instead of judging against it
    update_baseline: bool
    #: how much worse a metric may get before its case regresses (per-case scale)
    tolerance: float
    #: provenance fields allowed to differ from the baseline's
    baseline_ignore: tuple[str, ...]
    gates: tuple[Gate, ...]
    gate_mode: GateMode

    @property
    def gating(self) -> bool:
        """Cases are judged against the baseline (a baseline is given, and is not being updated)."""
        return self.baseline is not None and not self.update_baseline


def read_options(config: pytest.Config) -> KeditOptions:
    """Command line over ini over defaults; bad values raise ConfigError."""

    def value(name: str) -> str | None:
        given = config.getoption(f"kedit_{name}")
        return given if given is not None else (config.getini(f"kedit_{name}") or None)

    named_splits = value("split")
    splits = tuple(s.strip() for s in (named_splits or ",".join(SPLITS)).split(",") if s.strip())
    check_splits(splits, "--kedit-split")
    protocol = resolve_protocol(value("protocol") or "paper", value("distortion"))
    specs = [*config.getini("kedit_thresholds"), *config.getoption("kedit_threshold")]
    return KeditOptions(
        model=value("model") or DEFAULT_MODEL,
        method=value("method") or DEFAULT_METHOD,
        hparams=value("hparams"),
        device=value("device") or "auto",
        dtype=value("dtype") or "auto",
        data=value("data"),
        splits=splits,
        splits_given=named_splits is not None,
        limit=_integer("limit", value("limit"), minimum=1),
        sample=_integer("sample", value("sample"), minimum=1),
        shard=None if value("shard") is None else parse_shard(str(value("shard"))),
        report=value("report"),
        html=value("html"),
        seed=_integer("seed", value("seed"), minimum=0) or 0,
        distortion=protocol.distortion,
        protocol=protocol,
        thresholds=parse_thresholds(specs),
        by_relation=bool(config.getoption("kedit_by_relation") or config.getini("kedit_by_relation")),
        resume=_resume(config, value("report")),
        **_baseline_options(config, value),
    )


def _baseline_options(config: pytest.Config, value: Callable[[str], str | None]) -> dict[str, Any]:
    """The baseline and gate fields of :class:`KeditOptions`. ``--kedit-update-baseline`` alone
    writes to the default path; a relative gate needs a baseline."""
    update = bool(config.getoption("kedit_update_baseline") or config.getini("kedit_update_baseline"))
    named = value("baseline")
    baseline = None
    if named == DEFAULT_BASELINE or (named is None and update):
        baseline = str(default_path(config.rootpath, value("model") or DEFAULT_MODEL, value("method") or DEFAULT_METHOD))
    elif named is not None:
        baseline = str(Path(named).expanduser())
        if Path(baseline).is_dir():  # `--kedit-baseline suites/` takes the test folder as its value
            raise ConfigError(f"--kedit-baseline: {named} is a folder, not a baseline file; for the default file write "
                              f"--kedit-baseline={DEFAULT_BASELINE} or put --kedit-baseline after the test paths")
    tolerance = parse_tolerance(value("tolerance"), "--kedit-tolerance")
    ignore = parse_ignore(value("baseline_ignore"), "--kedit-baseline-ignore")
    specs = [*config.getini("kedit_gates"), *config.getoption("kedit_gate")]
    mode = value("gate_mode") or "significant"
    gates = parse_gates(specs, mode, has_baseline=baseline is not None)  # checks the mode too
    return {"baseline": baseline, "update_baseline": update, "tolerance": tolerance, "baseline_ignore": ignore, "gates": gates,
            "gate_mode": cast(GateMode, mode)}


def _resume(config: pytest.Config, report: str | None) -> bool:
    """``--kedit-resume`` (or ini ``kedit_resume``); it continues a report folder, so it needs one."""
    resume = bool(config.getoption("kedit_resume") or config.getini("kedit_resume"))
    if resume and not report:
        raise ConfigError("--kedit-resume: continues the run in a report folder; give --kedit-report=DIR too")
    return resume


def _integer(name: str, raw: str | None, minimum: int) -> int | None:
    """The whole number of ``--kedit-{name}`` (None when not given), at least ``minimum``."""
    return None if raw is None else parse_number(raw, f"--kedit-{name}", minimum, whole=True)
