"""Cases per minute of ``kedit build-suite``'s knowledge checks, and where the time goes.

    python benchmarks/bench_build_suite.py [--model smollm2-135m]
        [--from ../shared/datasets/pitfalls/GPT2-XL] [--records 64] [--batch-size 32]

Decides the first ``--records`` records of each split that has a check (composite, easy, hard)
in batches, as the builder does, without writing anything. The time of each split is broken
down into greedy generation (composite), the next-token rank pass and the probe (RoundEdit),
and the rest; the last column projects the split's whole source file at the measured rate.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_kedit.benchmark.cases import Case
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.errors import DataError
from pytest_kedit.model.loading import load_model
from pytest_kedit.suite_build import knowledge_check
from pytest_kedit.suite_build.knowledge_check import KnowledgeCheck

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "pitfalls" / "GPT2-XL"
CHECKED_SPLITS = ("composite", "easy", "hard")
SECONDS: dict[str, float] = defaultdict(float)


def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, adding its wall time to ``SECONDS[name]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SECONDS[name] += time.perf_counter() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--from", dest="source", type=Path, default=DEFAULT_SOURCE, help="default: %(default)s")
    parser.add_argument("--records", type=int, default=64, help="records decided per split (default: 64)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    knowledge_check.Continuations._generate_batch = timed(  # type: ignore[method-assign]
        "generation", knowledge_check.Continuations._generate_batch
    )
    knowledge_check.next_token_ranks = timed("rank pass", knowledge_check.next_token_ranks)
    knowledge_check.probe = timed("probe", knowledge_check.probe)

    loaded = load_model(args.model, device="cpu", dtype="float32")
    suite = load_suite(str(args.source), CHECKED_SPLITS)
    print(f"{args.model} on {args.source}, first {args.records} records per split, batches of {args.batch_size}\n")
    print("| split | cases/min | s/case | generation | rank pass | probe | other | kept | whole split |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for split in CHECKED_SPLITS:
        entries = suite.splits[split]
        cases: list[Case] = [e for e in entries[: args.records] if not isinstance(e, DataError)]
        SECONDS.clear()
        kept = 0
        start = time.perf_counter()
        for first in range(0, len(cases), args.batch_size):
            check = KnowledgeCheck(loaded.model, loaded.tokenizer, batch_size=args.batch_size)
            kept += sum(v.passed for v in check.check_split(split, cases[first : first + args.batch_size]))
        total = time.perf_counter() - start
        parts = [SECONDS[name] for name in ("generation", "rank pass", "probe")]
        shares = " | ".join(f"{100 * part / total:.0f} %" for part in [*parts, total - sum(parts)])
        whole = total / len(cases) * len(entries) / 60
        print(
            f"| {split} | {60 * len(cases) / total:.0f} | {total / len(cases):.2f} | {shares} | "
            f"{kept}/{len(cases)} | {whole:.0f} min ({len(entries)} records) |"
        )


if __name__ == "__main__":
    main()
