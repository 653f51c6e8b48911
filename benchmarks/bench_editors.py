"""Seconds per case of ROME, MEMIT and MEMIT+MLE, split by phase, and ROME against a straightforward ROME.

    python benchmarks/bench_editors.py --model smollm2-135m --cases 3
    python benchmarks/bench_editors.py --methods rome --cases 1 --reference 1

For each method (its packaged defaults for the model) and split, the mean seconds per case of:
edit optimisation (finding v*/z), the rest of the edit (keys, the update), probes, restore; and the
share of the case spent inside model forward and backward passes. The one-off costs (context
templates, second-moment statistics) are paid before the timed cases and reported apart.

``--reference N``: ROME at the published settings (21 context templates, 20 steps) on N cases of
each ConflictEdit split, against ``tests/reference_rome.ReferenceROME`` (the same algorithm, recomputing
everything at every step as the published scripts do). The upstream scripts needed one full run
per CS mode of reverse and composite cases (CS_exp, CS_imp); the harness gets both from one run,
so the reference is charged two runs there.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference is the tests' oracle
from reference_rome import ReferenceROME  # noqa: E402

from pytest_kedit.benchmark.cases import ConflictCase  # noqa: E402
from pytest_kedit.benchmark.registry import CONFLICT_EDIT, SPLIT_NAMES, splits_of  # noqa: E402
from pytest_kedit.dataset.sources import load_suite  # noqa: E402
from pytest_kedit.editors import create_editor, key_value, memit, rome  # noqa: E402
from pytest_kedit.editors.base import Editor  # noqa: E402
from pytest_kedit.editors.context_templates import context_templates  # noqa: E402
from pytest_kedit.editors.second_moment import second_moments  # noqa: E402
from pytest_kedit.model.loading import LoadedModel, load_model  # noqa: E402
from pytest_kedit.run.harness import Harness  # noqa: E402


class Clock:
    """Seconds spent in the model's forward and backward passes and in the v*/z optimisation."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def timed(self, kind: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[kind] += time.perf_counter() - start

        return wrapper

    def take(self) -> dict[str, float]:
        taken, self.seconds = dict(self.seconds), defaultdict(float)
        return taken


@contextmanager
def instrumented(loaded: LoadedModel, clock: Clock) -> Iterator[None]:
    model = loaded.model
    body, head = model.base_model, model.get_output_embeddings()
    patches = [
        (body, "forward", clock.timed("forward", body.forward)),
        (head, "forward", clock.timed("forward", head.forward)),
        (torch.autograd, "grad", clock.timed("backward", torch.autograd.grad)),
        (torch.Tensor, "backward", clock.timed("backward", torch.Tensor.backward)),
        (rome, "optimise_value", clock.timed("optimisation", key_value.optimise_value)),
        (memit, "optimise_value", clock.timed("optimisation", key_value.optimise_value)),
    ]
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, previous in saved:
            if previous is None:
                delattr(owner, name)
            else:
                setattr(owner, name, previous)


def one_off(editor: Editor) -> str:
    """Make sure templates and statistics exist; say what they cost."""
    hp, loaded = editor.hparams, editor.loaded
    start = time.perf_counter()
    context_templates(loaded, hp.context_template_length_params)
    parts = [f"context templates {time.perf_counter() - start:.1f}s"]
    if hp.mom2_adjustment:
        names = getattr(editor, "module_names", None) or [editor.module_name]
        _, info = second_moments(loaded, names, hp.mom2_dataset, hp.mom2_n_samples, hp.mom2_dtype)
        verb = "computed" if info["computed"] else "read from the cache"
        parts.append(f"statistics {verb} in {info['seconds']:.1f}s ({info['corpus']}, {info['tokens']} tokens)")
    return "; ".join(parts)


def run_cases(harness: Harness, cases: list[Any], clock: Clock) -> list[dict[str, float]]:
    rows = []
    for case in cases:
        clock.take()
        start = time.perf_counter()
        with instrumented(harness.loaded, clock):
            result = harness.run(case)
        total = time.perf_counter() - start
        inside = clock.take()
        timings = result.timings
        rows.append(
            {
                "total": total,
                "optimisation": inside.get("optimisation", 0.0),
                "edit other": timings["edit"] - inside.get("optimisation", 0.0),
                "probe": timings["probe"],
                "restore": timings["restore"],
                "passes": inside.get("forward", 0.0) + inside.get("backward", 0.0),
            }
        )
    return rows


def mean(rows: list[dict[str, float]], key: str) -> float:
    return statistics.fmean(r[key] for r in rows) if rows else float("nan")


def bench_method(loaded: LoadedModel, method: str, suite: Any, splits: list[str]) -> None:
    editor = create_editor(method, loaded)
    print(f"\n{method} on {loaded.name}: layers {editor.hparams.layers}; one-off: {one_off(editor)}", flush=True)
    harness, clock = Harness(loaded, editor), Clock()
    print(f"{'split':<10} {'cases':>5} {'s/case':>7} {'optimise':>9} {'edit rest':>9} {'probes':>7} {'restore':>8} {'in passes':>9}")
    everything = []
    for split in splits:
        cases = [c for c in suite.splits.get(split, []) if not isinstance(c, Exception)]
        rows = run_cases(harness, cases, clock)
        everything += rows
        share = sum(r["passes"] for r in rows) / sum(r["total"] for r in rows) if rows else float("nan")
        print(
            f"{split:<10} {len(rows):>5} {mean(rows, 'total'):>7.2f} {mean(rows, 'optimisation'):>9.2f}"
            f" {mean(rows, 'edit other'):>9.2f} {mean(rows, 'probe'):>7.2f} {mean(rows, 'restore'):>8.4f} {share:>9.0%}",
            flush=True,
        )
    share = sum(r["passes"] for r in everything) / sum(r["total"] for r in everything)
    print(f"{'all':<10} {len(everything):>5} {mean(everything, 'total'):>7.2f}{'':>46} {share:>9.0%}")


def bench_reference(loaded: LoadedModel, suite: Any, count: int) -> None:
    base = create_editor("rome", loaded).hparams
    published = dataclasses.replace(base, context_template_length_params=[[5, 10], [10, 10]], v_num_grad_steps=20)
    ours, reference = rome.ROMEEditor(published, loaded), ReferenceROME(published, loaded)
    print(f"\nROME at the published settings (layer {published.layers}, 21 templates, 20 steps) against the reference")
    print(f"one-off: {one_off(ours)}")
    print(f"{'split':<10} {'cases':>5} {'ours s/case':>11} {'ref s/run':>10} {'ref runs':>8} {'ratio':>6} {'edit ratio':>10}")
    clock = Clock()
    totals = {"ours": 0.0, "reference": 0.0}
    for split in splits_of(CONFLICT_EDIT):
        cases = [c for c in suite.splits.get(split, []) if isinstance(c, ConflictCase)][:count]
        if not cases:
            continue
        fast = run_cases(Harness(loaded, ours), cases, clock)
        slow = run_cases(Harness(loaded, reference), cases, clock)
        runs = 1 if split == "coverage" else 2  # upstream: one full run per CS mode
        ours_total, ref_total = sum(r["total"] for r in fast), runs * sum(r["total"] for r in slow)
        edit_ratio = sum(r["optimisation"] + r["edit other"] for r in slow) / sum(r["optimisation"] + r["edit other"] for r in fast)
        totals["ours"] += ours_total
        totals["reference"] += ref_total
        print(
            f"{split:<10} {len(cases):>5} {ours_total / len(cases):>11.2f} {ref_total / runs / len(cases):>10.2f}"
            f" {runs:>8} {ref_total / ours_total:>5.1f}x {edit_ratio:>9.1f}x",
            flush=True,
        )
    print(f"{'all':<10} {'':>5} {'':>11} {'':>10} {'':>8} {totals['reference'] / totals['ours']:>5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--methods", default="rome,memit,memit-mle")
    parser.add_argument("--cases", type=int, default=3, help="cases per split")
    parser.add_argument("--splits", default=",".join(SPLIT_NAMES))
    parser.add_argument("--data", default=None, help="suite folder (default: the built-in suites)")
    parser.add_argument("--reference", type=int, default=0, help="cases per ConflictEdit split for the reference comparison")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    splits = args.splits.split(",")
    suite = load_suite(args.data, splits, args.cases)
    print(f"{loaded.name} on {loaded.device}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}; suite {suite.source}")
    for method in filter(None, args.methods.split(",")):
        bench_method(loaded, method, suite, splits)
    if args.reference:
        bench_reference(loaded, load_suite(args.data, list(splits_of(CONFLICT_EDIT)), args.reference), args.reference)


if __name__ == "__main__":
    main()
