"""The plugin's options: each a command-line flag ``--kedit-NAME`` and an ini key ``kedit_NAME``.

Declaring them (:func:`add_options`), asking whether a session has any (:func:`options_given`,
:func:`options_set`) and the header line (:func:`header_line`) import nothing of the benchmark:
pytest imports this module on every run, also one without kedit cases. Reading them into
:class:`KeditOptions`, which checks every value, imports the parsers it needs; the plugin does
it only for a benchmark run (a test asks for a case, or a ``--kedit-*`` option is on the command
line), so a bad ``kedit_*`` ini value never breaks a run of other tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import pytest

from pytest_kedit.errors import ConfigError
from pytest_kedit.results.provenance import PROVENANCE_FIELDS

if TYPE_CHECKING:
    from pytest_kedit.benchmark.protocol import Protocol
    from pytest_kedit.benchmark.streams import StreamSettings
    from pytest_kedit.benchmark.thresholds import Thresholds
    from pytest_kedit.ci.gates import Gate, GateMode
    from pytest_kedit.dataset.shards import Shard

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_METHOD = "ft"
#: The value of --kedit-baseline (given alone) and of ini kedit_baseline that means the default path.
DEFAULT_BASELINE = "default"
#: The marker of every benchmark case (``-m "not kedit"`` leaves them out).
MARKER = "kedit"
MARKER_HELP = "kedit: a case of the knowledge-editing pitfalls benchmark (pytest-kedit); deselect with -m 'not kedit'"


class Option(NamedTuple):
    """One option: ``--kedit-NAME`` (and its ``aliases``), ini key ``kedit_NAME`` (and ``ini_aliases``)."""

    name: str
    metavar: str | None
    help: str
    #: the default as the help shows it; None: the help says what happens without the option
    default: str | None = None
    #: "string" (a value), "args" (repeatable, adds to the ini key's list) or "bool" (a flag)
    kind: str = "string"
    aliases: tuple[str, ...] = ()
    ini_aliases: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        """The name of the option's value, for ``config.getoption`` and ``config.getini``."""
        return _dest(self.name)


def _dest(name: str) -> str:
    """The name of option ``--kedit-NAME``'s value: ``kedit_NAME``, dashes as underscores."""
    return "kedit_" + name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("model", "MODEL", "embedded alias (smollm2-135m, gemma3-270m), Hugging Face id or local path", DEFAULT_MODEL),
    Option("method", "METHOD", "editing method: ft, or any registered in the pytest_kedit.editors entry points",
           DEFAULT_METHOD),
    Option("hparams", "PATH", "YAML file of hyper-parameters (EasyEdit key names); default: packaged per method and model"),
    Option("device", "DEVICE", "auto, cpu, cuda or cuda:N; auto spreads pytest-xdist workers over the visible GPUs", "auto"),
    Option("dtype", "DTYPE", "auto, float32, float16 or bfloat16", "auto"),
    Option("data", "DATA", "folder in the upstream layout (e.g. .../pitfalls/GPT2-XL), or upstream:GPT2-XL / "
           "upstream:GPT-J (the published files, downloaded once); default: the built-in suites"),
    Option("split", "SPLITS", "comma-separated splits to run (kedit metrics lists them), each of which must be in "
           "the data; default: every split the data has (with --kedit-carry, but sequential)"),
    Option("limit", "N", "run only the first N cases of each split; default: all"),
    Option("sample", "N", "run a sample of N cases per split, stratified by relation and drawn with --kedit-seed "
           "(from the first --kedit-limit cases when both are given); default: all"),
    Option("shard", "K/N", "run shard K of N (e.g. 2/3): within each split, the cases ordered by relation "
           "and case id and dealt round-robin; merge the shards' report folders with kedit report"),
    Option("report", "DIR", "folder for table1.md, table2.md, relations.md, cases.jsonl and summary.json"),
    Option("html", "PATH", "also write the visual report, one self-contained HTML page, to this file "
           "(needs pip install 'pytest-kedit[html]')"),
    Option("seed", "N", "seed for every case's random state", "0"),
    Option("protocol", "NAME", "paper (the paper's definitions) or upstream (the published code's choices, to "
           "compare with the published tables: prompts' trailing spaces, Others, D scaling, FT/ROME/MEMIT defaults; "
           "kedit docs fidelity)", "paper"),
    Option("distortion", "NAME", "D scaling: paper (JS divergence) or upstream (JS/|Obj|, as in the published "
           "Table 2); default: the protocol's"),
    Option("threshold", "SPEC", "per-case threshold [SPLIT.]METRIC>=V, [SPLIT.]METRIC<=V or [SPLIT.]METRIC=off; "
           "repeatable; overrides ini kedit_threshold; default: each metric's default threshold (kedit metrics)",
           kind="args", ini_aliases=("kedit_thresholds",)),
    Option("sequential", "N", "apply the first N edits of each stream of the sequential split; default: all of them"),
    Option("sequential-batch", "B", "edits of a stream per batch (one call of MEMIT and its kin, B calls of one edit for "
           "other methods); default: the checkpoint spacing for MEMIT and its kin, 1 for other methods"),
    Option("sequential-every", "K", "measure a stream at the first batch end after every K edits, and after its last; "
           "default: a tenth of the stream, rounded up"),
    Option("sequential-scheme", "NAME", "score a stream's edits right after their batch (immediate: es_imm, gs_imm), on "
           "the model after the stream (final: es, gs), or both (and retention)", "both"),
    Option("carry", "K", "measure the ConflictEdit and RoundEdit cases on a model that carries K edits: once per "
           "process the editor applies the first K edits of the data's stream (sequential.json) whose subject no "
           "case edits or probes, in a stream's batches; every case starts from that model, its θ probed live, "
           "and is restored to it; not with the sequential split", "0"),
    Option("by-relation", None, "also print the per-relation (and, for RoundEdit, per-arity) breakdown of every "
           "metric; default: only written to relations.md in --kedit-report", kind="bool"),
    Option("resume", None, "continue the partial run in --kedit-report: cases it recorded under the same model, "
           "data, hparams, seed, thresholds and versions are reported from their records, not run again", kind="bool"),
    Option("baseline", "PATH", "judge every case against this baseline file: a case fails only when it regressed; "
           f"alone, or '{DEFAULT_BASELINE}': .kedit/baselines/<model>/<method>.json under the rootdir; "
           "default: no baseline"),
    Option("baseline-update", None, "write this run's per-case results as the baseline (--kedit-baseline's file, "
           "or the default path); missed thresholds become known failures (xfail)", kind="bool",
           aliases=("--kedit-update-baseline",), ini_aliases=("kedit_update_baseline",)),
    Option("baseline-tolerance", "T", "with a baseline: how much worse (per-case scale, as the thresholds) a metric "
           "may get before its case regresses; a missed threshold the baseline met always regresses", "1e-4",
           aliases=("--kedit-tolerance",), ini_aliases=("kedit_tolerance",)),
    Option("baseline-ignore", "FIELD,...", "with a baseline: comma-separated provenance fields that may differ "
           "from the baseline's, e.g. hparams to gate a change of hyper-parameters; one of "
           + ", ".join(PROVENANCE_FIELDS)),
    Option("gate", "SPEC", "aggregate gate on the tables' x100 scale, checked when the session ends: "
           "SPLIT.METRIC>=V, SPLIT.METRIC<=V, or relative to the baseline SPLIT.METRIC<=baseline+V; repeatable; "
           "adds to ini kedit_gate", kind="args", ini_aliases=("kedit_gates",)),
    Option("gate-mode", "MODE", "how a gate relative to the baseline fails: significant (the whole paired 95 "
           "percent interval of run - baseline beyond the margin) or point (the difference itself)", "significant"),
)


#: An option's kind -> the type of its ini key and the ini key's value when it is not set.
_INI_TYPES: dict[str, tuple[Literal["string", "args", "bool"], Any]] = {"string": ("string", None), "args": ("args", []), "bool": ("bool", False)}


def add_options(parser: pytest.Parser) -> None:
    """Declare every option of :data:`OPTIONS` in the ``kedit`` group of ``pytest --help``, and its ini key."""
    group = parser.getgroup("kedit", "knowledge-editing pitfalls benchmark (pytest-kedit)")
    for option in OPTIONS:
        shown = option.help if option.default is None else f"{option.help} (default: {option.default})"
        flags = (f"--kedit-{option.name}", *option.aliases)
        if option.kind == "bool":
            group.addoption(*flags, dest=option.dest, action="store_true", default=None, help=shown)
        elif option.kind == "args":
            group.addoption(*flags, dest=option.dest, action="append", default=[], metavar=option.metavar, help=shown)
        elif option.name == "baseline":  # given alone, it means the default file
            group.addoption(*flags, dest=option.dest, nargs="?", const=DEFAULT_BASELINE, default=None,
                            metavar=option.metavar, help=shown)
        else:
            group.addoption(*flags, dest=option.dest, default=None, metavar=option.metavar, help=shown)
        ini_type, ini_default = _INI_TYPES[option.kind]
        parser.addini(option.dest, option.help, type=ini_type, default=ini_default, aliases=option.ini_aliases)


def options_given(config: pytest.Config) -> bool:
    """Whether a ``--kedit-*`` option is on the command line (or in ``PYTEST_ADDOPTS``)."""
    return any(config.getoption(option.dest) not in (None, []) for option in OPTIONS)


def options_set(config: pytest.Config) -> bool:
    """Whether a ``--kedit-*`` option is given or a ``kedit_*`` ini key is set: the session is
    meant as a benchmark run, whether or not it turns out to have cases."""
    return options_given(config) or any(config.getini(option.dest) not in (None, [], False) for option in OPTIONS)


def _raw(config: pytest.Config, option: str) -> str | None:
    """The value of a string option as given: the command line's, else the ini key's, else None."""
    given = config.getoption(_dest(option))
    return given if given is not None else (config.getini(_dest(option)) or None)


def _flag(config: pytest.Config, option: str) -> bool:
    """Whether a flag option is set, on the command line or by its ini key."""
    return bool(config.getoption(_dest(option)) or config.getini(_dest(option)))


def header_line(config: pytest.Config) -> str:
    """The line of pytest's header for a benchmark run: ``kedit: MODEL × METHOD, protocol P,
    device D, baseline B``, the options as given (command line over ini over default), unchecked."""
    model, method = _raw(config, "model") or DEFAULT_MODEL, _raw(config, "method") or DEFAULT_METHOD
    baseline = _raw(config, "baseline")
    if _flag(config, "baseline-update"):
        shown = f"{baseline or DEFAULT_BASELINE} (updated by this run)"
    else:
        shown = baseline or "none"
    return (f"kedit: {model} × {method}, protocol {_raw(config, 'protocol') or 'paper'}, "
            f"device {_raw(config, 'device') or 'auto'}, baseline {shown}")


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
    #: how each stream of the sequential split runs (--kedit-sequential*), and the edits carried (--kedit-carry)
    stream: StreamSettings
    by_relation: bool
    #: continue the run recorded in :attr:`report` (:mod:`pytest_kedit.run.resume`)
    resume: bool
    #: the baseline file to judge cases against or to update (resolved); None: no baseline
    baseline: str | None
    #: write this run's results as the baseline instead of judging against it (--kedit-baseline-update)
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
    """Command line over ini over defaults; bad values raise ConfigError naming the option."""
    # Imported here, not at the top: the parsers import the benchmark's registry (numpy, scipy),
    # which a pytest run without kedit cases must not pay for.
    from pytest_kedit.benchmark.protocol import resolve_protocol
    from pytest_kedit.benchmark.registry import check_splits
    from pytest_kedit.benchmark.thresholds import parse_thresholds
    from pytest_kedit.dataset.shards import parse_shard

    def value(name: str) -> str | None:
        return _raw(config, name)

    stream = _stream(value)
    named_splits = value("split")
    splits = tuple(s.strip() for s in (named_splits or ",".join(_default_splits(stream.carry))).split(",") if s.strip())
    check_splits(splits, "--kedit-split")
    if stream.carry and "sequential" in splits:
        raise ConfigError(f"--kedit-carry={stream.carry}: carried edits are for the ConflictEdit and RoundEdit cases; "
                          "a stream of the sequential split starts from the original model: leave it out of --kedit-split")
    protocol = resolve_protocol(value("protocol") or "paper", value("distortion"))
    specs = [*config.getini("kedit_threshold"), *config.getoption("kedit_threshold")]
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
        stream=stream,
        by_relation=_flag(config, "by-relation"),
        resume=_resume(config, value("report")),
        **_baseline_options(config, value),
    )


def _baseline_options(config: pytest.Config, value: Callable[[str], str | None]) -> dict[str, Any]:
    """The baseline and gate fields of :class:`KeditOptions`. ``--kedit-baseline-update`` alone
    writes to the default path; a relative gate needs a baseline."""
    from pytest_kedit.ci.baseline import default_path, parse_ignore
    from pytest_kedit.ci.gates import parse_gates
    from pytest_kedit.ci.regression import parse_tolerance

    update = _flag(config, "baseline-update")
    named = value("baseline")
    baseline = None
    if named == DEFAULT_BASELINE or (named is None and update):
        baseline = str(default_path(config.rootpath, value("model") or DEFAULT_MODEL, value("method") or DEFAULT_METHOD))
    elif named is not None:
        baseline = str(Path(named).expanduser())
        if Path(baseline).is_dir():  # `--kedit-baseline suites/` takes the test folder as its value
            raise ConfigError(f"--kedit-baseline: {named} is a folder, not a baseline file; for the default file write "
                              f"--kedit-baseline={DEFAULT_BASELINE} or put --kedit-baseline after the test paths")
    tolerance = parse_tolerance(value("baseline-tolerance"), "--kedit-baseline-tolerance")
    ignore = parse_ignore(value("baseline-ignore"), "--kedit-baseline-ignore")
    specs = [*config.getini("kedit_gate"), *config.getoption("kedit_gate")]
    mode = value("gate-mode") or "significant"
    gates = parse_gates(specs, mode, has_baseline=baseline is not None)  # checks the mode too
    return {"baseline": baseline, "update_baseline": update, "tolerance": tolerance, "baseline_ignore": ignore, "gates": gates,
            "gate_mode": cast("GateMode", mode)}


def _default_splits(carry: int) -> tuple[str, ...]:
    """The splits of a run that names none: every split, or carrying edits those of ConflictEdit and RoundEdit."""
    from pytest_kedit.benchmark.registry import PAPER_BENCHMARKS, SPLITS, splits_of

    return tuple(SPLITS) if not carry else tuple(split for benchmark in PAPER_BENCHMARKS for split in splits_of(benchmark))


def _stream(value: Callable[[str], str | None]) -> StreamSettings:
    """The :class:`~pytest_kedit.benchmark.streams.StreamSettings` of ``--kedit-sequential*`` and
    ``--kedit-carry``: whole numbers of at least 1 (``--kedit-carry``: 0), a scheme of
    :data:`~pytest_kedit.benchmark.streams.SCHEMES`."""
    from pytest_kedit.benchmark.streams import SCHEMES, StreamSettings

    scheme = value("sequential-scheme") or "both"
    if scheme not in SCHEMES:
        raise ConfigError(f"--kedit-sequential-scheme: {scheme!r}; choose from {', '.join(SCHEMES)}")
    return StreamSettings(edits=_integer("sequential", value("sequential"), minimum=1),
                          batch=_integer("sequential-batch", value("sequential-batch"), minimum=1),
                          every=_integer("sequential-every", value("sequential-every"), minimum=1), scheme=scheme,
                          carry=_integer("carry", value("carry"), minimum=0) or 0)


def _resume(config: pytest.Config, report: str | None) -> bool:
    """``--kedit-resume`` (or ini ``kedit_resume``); it continues a report folder, so it needs one."""
    resume = _flag(config, "resume")
    if resume and not report:
        raise ConfigError("--kedit-resume: continues the run in a report folder; give --kedit-report=DIR too")
    return resume


def _integer(name: str, raw: str | None, minimum: int) -> int | None:
    """The whole number of ``--kedit-{name}`` (None when not given), at least ``minimum``."""
    from pytest_kedit.benchmark.thresholds import parse_number

    return None if raw is None else parse_number(raw, f"--kedit-{name}", minimum, whole=True)
