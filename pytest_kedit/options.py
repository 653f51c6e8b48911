"""The plugin's options: each a command-line flag ``--kedit-NAME`` and an ini key ``kedit_NAME``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from .errors import ConfigError
from .metrics import DISTORTION_SCALINGS
from .registry import SPLITS, default_threshold_specs
from .thresholds import Thresholds, parse_thresholds

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
    ("report", "string", None, "folder for table1.md, table2.md, relations.md, cases.jsonl and summary.json"),
    ("html", "string", None, "also write the visual report, one self-contained HTML page, to this file "
     "(needs pip install 'pytest-kedit[html]')"),
    ("seed", "string", "0", "seed for every case's random state"),
    ("distortion", "string", "paper", "D scaling: paper (JS divergence) or upstream (JS/|Obj|, as in the published Table 2)"),
]


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("kedit", "knowledge-editing pitfalls benchmark (pytest-kedit)")
    for name, _, default, help_text in _OPTIONS:
        group.addoption(f"--kedit-{name}", dest=f"kedit_{name}", default=None, help=f"{help_text} (default: {default})")
        parser.addini(f"kedit_{name}", help_text, type="string", default=default)
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
    report: str | None
    html: str | None
    seed: int
    distortion: str
    thresholds: Thresholds
    by_relation: bool

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "method": self.method,
            "hparams_file": self.hparams,
            "device": self.device,
            "dtype": self.dtype,
            "splits": list(self.splits),
            "limit": self.limit,
            "sample": None if self.sample is None else {"size": self.sample, "seed": self.seed},
            "seed": self.seed,
            "distortion_scaling": self.distortion,
            "thresholds": self.thresholds.specs(),
        }


def read_options(config: pytest.Config) -> KeditOptions:
    """Command line over ini over defaults; bad values raise ConfigError."""

    def value(name: str) -> str | None:
        given = config.getoption(f"kedit_{name}")
        return given if given is not None else (config.getini(f"kedit_{name}") or None)

    named_splits = value("split")
    splits = tuple(s.strip() for s in (named_splits or ",".join(SPLITS)).split(",") if s.strip())
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ConfigError(f"--kedit-split: unknown or empty {unknown or splits}; choose from {', '.join(SPLITS)}")
    distortion = value("distortion") or "paper"
    if distortion not in DISTORTION_SCALINGS:
        raise ConfigError(f"--kedit-distortion: {distortion!r}; choose from {', '.join(DISTORTION_SCALINGS)}")
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
        report=value("report"),
        html=value("html"),
        seed=_integer("seed", value("seed"), minimum=0) or 0,
        distortion=distortion,
        thresholds=parse_thresholds(specs),
        by_relation=bool(config.getoption("kedit_by_relation") or config.getini("kedit_by_relation")),
    )


def _integer(name: str, raw: str | None, minimum: int) -> int | None:
    if raw is None:
        return None
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"--kedit-{name}: {raw!r} is not a whole number") from None
    if number < minimum:
        raise ConfigError(f"--kedit-{name}: must be at least {minimum}, got {number}")
    return number
