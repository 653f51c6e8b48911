"""How much each difference between the paper and its published code moves each Table 1/2 cell:
the table of docs/fidelity.md ("Measured on the embedded model").

    python benchmarks/bench_fidelity.py --methods rome --limit 1            # a smoke run
    python benchmarks/bench_fidelity.py --data upstream:GPT2-XL --sample 20 # 1 and 4 need the published data
    python benchmarks/bench_fidelity.py --runs paper:rome=runs/rome upstream:rome=runs/rome-up "2,000 windows:rome=runs/rome-w2000"

For each method (its packaged defaults for the model), the cases run under ``--kedit-protocol=paper``;
then under ``upstream``, and with each of its choices switched alone on top of ``paper``: the
trailing-space scoring (difference 1 of docs/fidelity.md), D as JS/|Obj| (3), a repeated o1
removed only once (4), FT's ``prompt_last`` (5), ROME's plain-prompt update key (2), MEMIT's grouped
key averaging (7) (a choice a method has no key for is skipped). 3 and 4 change only the
scoring, so they re-score the ``paper`` run's probabilities. For ROME and MEMIT, also the second moment from 200, 2,000 and
20,000 windows of sampled text (``mom2_n_samples``; the statistics are computed once and cached).

``--runs`` builds the same rows from report folders of ``pytest suites`` runs made beforehand (for
instance side by side, one thread each): ``paper:M=DIR`` and ``upstream:M=DIR`` for method M, and
``LABEL:M=DIR`` for any other variant (e.g. ``--kedit-hparams`` with another ``mom2_n_samples``).
The choices that change only the scoring, 3 and 4, re-score the paper run; a choice of the
method's hyper-parameters alone re-scores the upstream run under ``paper``, which is exact when
the data has neither a prompt ending in a space nor a repeated o1 (checked), as in the built-in suites.

Per method, a Markdown table with one row per Table 1/2 cell: its value under ``paper`` (×100),
then for each variant the difference of means ×100 (variant − paper) on the cases both ran, with
its paired bootstrap interval (:func:`pytest_kedit.ci.comparison.compare_runs`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from tabulate import tabulate

from pytest_kedit.benchmark.protocol import PAPER, UPSTREAM, Protocol
from pytest_kedit.benchmark.registry import BENCHMARKS, SPLIT_NAMES, SPLITS, table_columns
from pytest_kedit.ci.comparison import compare_runs
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.editors import create_editor
from pytest_kedit.model.loading import LoadedModel, load_model
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import load_run
from pytest_kedit.results.summary import RunSummary
from pytest_kedit.run.harness import Harness

#: Each choice of ``upstream`` alone on top of ``paper``: (label, protocol, re-score only); the
#: numbers are those of the differences in docs/fidelity.md.
SINGLE_CHOICES: tuple[tuple[str, Protocol, bool], ...] = (
    ("1: trailing space kept", dataclasses.replace(PAPER, name="paper+1", keep_trailing_space=True), False),
    ("3: D = JS/|Obj|", dataclasses.replace(PAPER, name="paper+3", distortion="upstream"), True),
    ("4: first o1 removed only", dataclasses.replace(PAPER, name="paper+4", remove_first_o1_only=True), True),
    *((f"{number}: {key}: {value}", dataclasses.replace(PAPER, name=f"paper+{number}", hparams=((key, value),)), False)
      for number, (key, value) in zip((5, 2, 7), UPSTREAM.hparams)),
)
WINDOWS = (200, 2000, 20000)


def run(loaded: LoadedModel, method: str, protocol: Protocol, cases: Sequence[Any], seed: int,
        **hparams: Any) -> list[CaseRecord]:
    """Every case under ``protocol`` (hyper-parameters: the packaged defaults, the protocol's, then ``hparams``)."""
    editor = create_editor(method, loaded, None, protocol.hparams_defaults())
    editor.hparams = dataclasses.replace(editor.hparams, **hparams)
    harness = Harness(loaded, editor, protocol, seed)
    records = []
    for case in cases:
        result = harness.run(case)
        records.append(CaseRecord(case.case_id, case.split, case.relation_group, getattr(case, "arity", None),
                                  loaded.name, method, metrics=result.metrics, probabilities=result.probabilities))
    return records


def rescore(records: Sequence[CaseRecord], cases: Sequence[Any], protocol: Protocol) -> list[CaseRecord]:
    """The records with their metrics scored again from their probabilities under ``protocol``."""
    by_id = {case.case_id: case for case in cases}
    return [dataclasses.replace(r, metrics=SPLITS[r.split].score(by_id[r.case_id], r.probabilities, protocol).values)
            for r in records]


def applies(loaded: LoadedModel, method: str, protocol: Protocol) -> bool:
    """Whether the method has a key for each of the protocol's hyper-parameters (else it equals paper)."""
    fields = {f.name for f in dataclasses.fields(create_editor(method, loaded).hparams)}
    return all(key in fields for key, _ in protocol.hparams)


def differences(paper: Sequence[CaseRecord], variant: Sequence[CaseRecord]) -> dict[tuple[str, str], Any]:
    """Per (split, metric): the variant against paper (:class:`pytest_kedit.ci.comparison.MetricComparison`)."""
    return {(s.split, m.metric): m for s in compare_runs(paper, variant, top=0).splits for m in s.metrics}


def print_method_table(method: str, paper: Sequence[CaseRecord], variants: Sequence[tuple[str, Sequence[CaseRecord]]]) -> None:
    """One row per Table 1/2 cell: paper's value, then per variant ``difference [low, high]`` (×100)."""
    compared = [differences(paper, records) for _, records in variants]
    rows = []
    for benchmark in BENCHMARKS:
        for split, metric, label in table_columns(benchmark):
            found = [c.get((split, metric)) for c in compared]
            base = next((f.mean_a for f in found if f is not None), None)
            rows.append([label, "–" if base is None else f"{base:.2f}",
                         *("–" if f is None else f"{f.difference:+.1f} [{f.interval[0]:+.1f}, {f.interval[1]:+.1f}]"
                           for f in found)])
    print(f"\n{method}, {len(paper)} cases\n")
    print(tabulate(rows, headers=["cell", "paper", *(label for label, _ in variants)], tablefmt="pipe",
                   disable_numparse=True), flush=True)


def bench_method(loaded: LoadedModel, method: str, cases: Sequence[Any], seed: int, windows: Sequence[int]) -> None:
    start = time.perf_counter()
    paper = run(loaded, method, PAPER, cases, seed)
    variants = [("upstream (all)", run(loaded, method, UPSTREAM, cases, seed))]
    for label, protocol, rescore_only in SINGLE_CHOICES:
        if applies(loaded, method, protocol):
            variants.append((label, rescore(paper, cases, protocol) if rescore_only
                             else run(loaded, method, protocol, cases, seed)))
    hparams = create_editor(method, loaded).hparams
    if hasattr(hparams, "mom2_n_samples") and hparams.mom2_adjustment:
        variants.extend((f"{count:,} windows", run(loaded, method, PAPER, cases, seed, mom2_n_samples=count))
                        for count in windows if count != hparams.mom2_n_samples)
    print_method_table(f"{method} on {loaded.name} ({time.perf_counter() - start:.0f}s; paper's statistics: "
                       f"{getattr(hparams, 'mom2_n_samples', '–')} windows)", paper, variants)


def upstream_scoring_is_paper_scoring(cases: Sequence[Any]) -> bool:
    """Whether differences 1 and 4 change nothing on these cases: no probed prompt ends in white space, and
    each state probes the same pairs under both protocols (a repeated o1 would add one to Others)."""
    for case in cases:
        plans = [SPLITS[case.split].plan(case, False, protocol) for protocol in (PAPER, UPSTREAM)]
        pairs = [[pair for stage in plan for _, query in stage.probes for pair in query.pairs()] for plan in plans]
        if pairs[0] != pairs[1] or any(prefix != prefix.rstrip() for prefix, _ in pairs[0]):
            return False
    return True


def table_from_runs(specs: Sequence[str], data: str | None) -> None:
    """The rows of :func:`bench_method`, per method, from report folders given as ``LABEL:METHOD=DIR``."""
    runs: dict[str, dict[str, tuple[RunSummary, list[CaseRecord]]]] = {}
    for spec in specs:
        head, _, folder = spec.partition("=")
        label, _, method = head.rpartition(":")
        runs.setdefault(method, {})[label] = load_run(folder)
    suite = load_suite(data, list(SPLIT_NAMES))
    cases = [case for split in suite.splits.values() for case in split if not isinstance(case, Exception)]
    exact = upstream_scoring_is_paper_scoring(cases)
    for method, by_label in runs.items():
        paper_summary, paper = by_label.pop("paper")
        upstream = by_label.pop("upstream", (None, None))[1]
        variants = [("upstream (all)", upstream)] if upstream is not None else []
        for label, protocol, rescore_only in SINGLE_CHOICES:
            if rescore_only:
                variants.append((label, rescore(paper, cases, protocol)))
            elif (protocol.hparams and upstream is not None and exact
                  and all(key in paper_summary.hparams for key, _ in protocol.hparams)):
                variants.append((label, rescore(upstream, cases, PAPER)))
        variants.extend((label, records) for label, (_, records) in by_label.items())
        print_method_table(method, paper, variants)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--methods", default="ft,rome,memit,memit-mle")
    parser.add_argument("--data", default=None, help="as --kedit-data (default: the built-in suites)")
    parser.add_argument("--splits", default=",".join(SPLIT_NAMES))
    parser.add_argument("--limit", type=int, default=None, help="the first N cases of each split")
    parser.add_argument("--sample", type=int, default=None, help="a stratified sample of N cases per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--windows", default=",".join(map(str, WINDOWS)),
                        help="second-moment window counts for ROME and MEMIT; empty: none")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--runs", nargs="+", metavar="LABEL:METHOD=DIR",
                        help="build the table from these report folders instead of running")
    args = parser.parse_args()
    if args.runs:
        table_from_runs(args.runs, args.data)
        return

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    suite = load_suite(args.data, args.splits.split(","), args.limit, args.sample, args.seed)
    cases = [case for split in suite.splits.values() for case in split if not isinstance(case, Exception)]
    windows = [int(w) for w in args.windows.split(",") if w]
    print(f"{loaded.name} on {loaded.device}, {args.threads} thread(s); suite {suite.source}, {len(cases)} cases", file=sys.stderr)
    for method in filter(None, args.methods.split(",")):
        bench_method(loaded, method, cases, args.seed, windows)


if __name__ == "__main__":
    main()
