"""The benchmark's splits and the metrics they report, each said once.

Everything that lists metrics or splits is derived from :data:`METRICS` and :data:`SPLITS`:
the columns of Table 1 and Table 2, the default thresholds and the metrics they may name,
the per-split threshold counts of a run, the cases each suite's test is parametrized with (by
benchmark name: ``pytest_kedit.run.case_tests``), the data files read. A split is its data
file, its case parser (:mod:`pytest_kedit.benchmark.cases`), its plan
(:mod:`pytest_kedit.benchmark.plans`: which edits reach which model state, which facts are probed
there) and its scoring (:mod:`pytest_kedit.benchmark.scoring`: the metrics as pure functions of those
probabilities). docs/architecture.md lists the files to touch to add a metric or a split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pytest_kedit.benchmark import plans, scoring
from pytest_kedit.benchmark.cases import Case, parse_conflict_case, parse_round_case, parse_stream_case
from pytest_kedit.errors import ConfigError

#: Which way a metric improves.
Direction = Literal["higher", "lower"]
#: The state name of each model probed by a plan, in the paper's notation.
STATES = {"theta": "θ", "theta_s": "θs", "theta_m": "θm", "theta_prime": "θ'"}


@dataclass(frozen=True)
class Metric:
    """One per-case metric of the benchmark."""

    key: str
    #: the paper's name, used in tables and failure messages
    label: str
    better: Direction
    #: a per-case 0/1 indicator (its mean is a rate; paired comparisons use McNemar's test)
    binary: bool
    #: what a robust editor achieves, e.g. ``">=1"``; None: no default threshold
    default_threshold: str | None
    description: str
    #: a share or rate, which tables, gates and comparisons take ×100; False: a ratio or a count,
    #: taken as it is
    percent: bool = True

    def worse_by(self, baseline: float, current: float) -> float:
        """How much worse ``current`` is than ``baseline`` in this metric's direction, on their
        scale: positive when it got worse, negative when it got better, 0 when equal, NaN when
        either is NaN."""
        return baseline - current if self.better == "higher" else current - baseline

    @property
    def scale(self) -> float:
        """What the tables and gates multiply this metric's values by: 100 for a share or a rate,
        1 for a ratio or a count (:attr:`percent`)."""
        return 100.0 if self.percent else 1.0

    def on_scale(self, percent: float) -> float:
        """A number ×100 of this metric (``mean_percent`` of its values, an end of a paired
        interval) on the tables' scale: as it is for a share or a rate, ÷100 for a ratio or a count."""
        return percent if self.percent else percent / 100

    @property
    def arrow(self) -> str:
        """The direction in which this metric is better, as tables mark it: ``↑`` or ``↓``."""
        return "↑" if self.better == "higher" else "↓"


@dataclass(frozen=True)
class Benchmark:
    """ConflictEdit or RoundEdit (the splits of one table of the paper), or Sequential (streams of edits)."""

    name: str
    table: int
    title: str
    prompts_file: str
    parse: Callable[..., Case]


@dataclass(frozen=True)
class Split:
    """One split of the benchmark: its data file, plan, scoring and metrics in table order."""

    name: str
    benchmark: Benchmark
    data_file: str
    #: the column prefix in its table ("Coverage", "EASY")
    heading: str
    metrics: tuple[str, ...]
    #: (case, multi_label, --kedit-protocol choices, stream settings) -> the stages of model states to reach and probe
    plan: Callable[..., plans.Plan]
    #: (case, probabilities, --kedit-protocol choices, stream settings) -> the metrics and their evidence
    score: Callable[..., scoring.Scores]

    @property
    def title(self) -> str:
        """The split in headings: its benchmark and its heading ("ConflictEdit Reverse"), once when
        they are the same word ("Sequential")."""
        return self.heading if self.heading == self.benchmark.name else f"{self.benchmark.name} {self.heading}"

    def column(self, metric: str) -> str:
        """The header of the metric's column in the split's table ("Reverse CS_imp")."""
        return METRICS[metric].label if metric in OWN_COLUMNS else f"{self.heading} {METRICS[metric].label}"


METRICS: dict[str, Metric] = {
    metric.key: metric
    for metric in (
        Metric("single_succ", "Single Succ", "higher", True, None,
               "e2 applied alone to θ makes its new object more likely than the object it replaces"),
        Metric("cs", "CS", "higher", True, ">=1",
               "Conflict Score: after e1 then e2, the new fact k_n is more likely than the old fact k_o"),
        Metric("cs_exp", "CS_exp", "higher", True, ">=1", "Conflict Score with k_n the explicit fact of e2"),
        Metric("cs_imp", "CS_imp", "higher", True, ">=1", "Conflict Score with k_n the fact that e1 and e2 imply"),
        Metric("cm", "CM", "higher", False, None,
               "Conflict Magnitude: relative drop of k_o from θm to θ', clipped below at -1"),
        Metric("tfd", "TFD", "lower", False, "<=0.5", "Tied Fact Damage: relative drop of the tied fact k_f from θ to θ'"),
        Metric("succ", "Succ", "higher", False, ">=1",
               "RoundEdit success: half a point for e1 taking on θm, half for the undo e2 taking on θ'"),
        Metric("d", "D", "lower", False, None,
               "Distortion: Jensen-Shannon divergence of the true objects' distribution between θ and θ'"),
        Metric("ir", "IR", "lower", False, None, "Ignore Rate: share of the other true objects that lost probability"),
        Metric("fr", "FR", "lower", True, "<=0", "Failure Rate: more than half of the other true objects lost probability"),
        Metric("es", "ES (final)", "higher", False, ">=0.9",
               "Efficacy, final scheme: share of the stream's edits whose new object beats the old on the edit prompt, "
               "on the model after all of them"),
        Metric("gs", "GS (final)", "higher", False, None,
               "Generalisation, final scheme: the same over each edit's paraphrases, on the model after all of them"),
        Metric("es_imm", "ES (immediate)", "higher", False, None,
               "Efficacy, immediate scheme: share of the stream's edits whose new object beat the old on the edit "
               "prompt right after their batch"),
        Metric("gs_imm", "GS (immediate)", "higher", False, None,
               "Generalisation, immediate scheme: the same over each edit's paraphrases, right after its batch"),
        Metric("retention", "Retention", "higher", False, None,
               "Of the edits that took right after their batch, the share that still take after all of them"),
        Metric("spec", "Specificity", "higher", False, None,
               "Share of the edits' neighbourhood facts (other subjects, same relation and object) that still prefer "
               "their true object to the edit's new one"),
        Metric("loc", "Locality", "higher", False, None,
               "Share of the known facts the stream does not edit that kept at least half their probability"),
        Metric("ppl", "PPL ratio", "lower", False, "<=1.5",
               "Perplexity of the held-out text after the stream over its perplexity on the original model", percent=False),
        Metric("norm", "Update norm", "lower", False, None,
               "Largest relative change ‖W − W₀‖_F / ‖W₀‖_F of an edited matrix after the stream", percent=False),
        Metric("collapse_at", "Collapse at", "higher", False, None,
               "Edits made at the first checkpoint where the PPL ratio reached 2 or locality fell under 1/2; "
               "the stream's length when none did", percent=False),
    )
}
#: Metrics whose column header is their label alone (the paper's first Table 1 column).
OWN_COLUMNS = ("single_succ",)

CONFLICT_EDIT = Benchmark("ConflictEdit", 1, "Table 1: Knowledge Conflict", "conflict_prompts.json", parse_conflict_case)
ROUND_EDIT = Benchmark("RoundEdit", 2, "Table 2: Knowledge Distortion", "round_prompts.json", parse_round_case)
SEQUENTIAL = Benchmark("Sequential", 3, "Table 3: Sequential editing", "sequential_prompts.json", parse_stream_case)
BENCHMARKS = (CONFLICT_EDIT, ROUND_EDIT, SEQUENTIAL)
#: The paper's benchmarks (Table 1 and Table 2).
PAPER_BENCHMARKS = (CONFLICT_EDIT, ROUND_EDIT)

SPLITS: dict[str, Split] = {
    split.name: split
    for split in (
        Split("coverage", CONFLICT_EDIT, "coverage_edit.json", "Coverage", ("single_succ", "cs", "cm"),
              plans.coverage, scoring.coverage),
        Split("reverse", CONFLICT_EDIT, "reverse_edit.json", "Reverse", ("cs_exp", "cs_imp", "cm"),
              plans.reverse, scoring.reverse),
        Split("composite", CONFLICT_EDIT, "composite_edit.json", "Composite", ("cs_exp", "cs_imp", "cm", "tfd"),
              plans.composite, scoring.composite),
        Split("easy", ROUND_EDIT, "easy.json", "EASY", ("succ", "d", "ir", "fr"), plans.round_trip, scoring.round_trip),
        Split("hard", ROUND_EDIT, "hard.json", "HARD", ("succ", "d", "ir", "fr"), plans.round_trip, scoring.round_trip),
        Split("sequential", SEQUENTIAL, "sequential.json", "Sequential",
              ("es", "gs", "es_imm", "gs_imm", "retention", "spec", "loc", "ppl", "norm", "collapse_at"),
              plans.sequential, scoring.sequential),
    )
}
SPLIT_NAMES = tuple(SPLITS)
PROMPT_FILES = tuple(benchmark.prompts_file for benchmark in BENCHMARKS)


def splits_of(benchmark: Benchmark) -> tuple[str, ...]:
    """The names of the benchmark's splits, in table order."""
    return tuple(name for name, split in SPLITS.items() if split.benchmark is benchmark)


def table_columns(benchmark: Benchmark) -> tuple[tuple[str, str, str], ...]:
    """(split, metric, header) of every numeric column of the benchmark's table, in the paper's
    order: the splits in order, each split's metrics in order, own-column metrics first."""
    columns = [(name, metric, SPLITS[name].column(metric)) for name in splits_of(benchmark) for metric in SPLITS[name].metrics]
    return tuple(sorted(columns, key=lambda column: column[1] not in OWN_COLUMNS))


def default_threshold_specs() -> tuple[str, ...]:
    """The default thresholds as specs (``"cs_imp>=1"``), in :data:`METRICS` order."""
    return tuple(f"{m.key}{m.default_threshold}" for m in METRICS.values() if m.default_threshold is not None)


def check_split(name: str, where: str) -> None:
    """ConfigError ``{where}: unknown split 'NAME'; choose from coverage, ...`` unless ``name`` is
    a split of :data:`SPLITS`. ``where`` names the option or spec that gave it."""
    if name not in SPLITS:
        raise ConfigError(f"{where}: unknown split {name!r}; choose from {', '.join(SPLITS)}")


def check_splits(names: Sequence[str], where: str) -> None:
    """:func:`check_split` of every name, after a ConfigError naming ``where`` when there is none."""
    if not names:
        raise ConfigError(f"{where}: no split given; choose from {', '.join(SPLITS)}")
    for name in names:
        check_split(name, where)


def check_split_metric(split: str, metric: str, where: str) -> None:
    """:func:`check_split`, then ConfigError naming ``where`` unless ``metric`` is one of the split's."""
    check_split(split, where)
    if metric not in SPLITS[split].metrics:
        raise ConfigError(f"{where}: split {split} has no metric {metric!r}; it has {', '.join(SPLITS[split].metrics)}")


def split_order(name: str) -> tuple[int, str]:
    """Sort key: the registry's splits in order, unknown names after them."""
    return (SPLIT_NAMES.index(name) if name in SPLITS else len(SPLITS), name)
