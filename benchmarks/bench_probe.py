"""Probing with each prompt run once (``probe.probe``) against one full sequence per (prompt, object)
pair, on the probes of the built-in cases.

    python benchmarks/bench_probe.py --model smollm2-135m --threads 1

For every state of every case's plan (the paper protocol, single-label), the pairs probed there are
measured both ways, alternately, in one process: seconds per case of each, their ratio, the tokens
each way feeds the model, and the largest difference of a probability.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch
from tabulate import tabulate

from pytest_kedit.benchmark.protocol import PAPER
from pytest_kedit.benchmark.registry import SPLIT_NAMES, SPLITS
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.model.loading import load_model
from pytest_kedit.model.probe import Encoder, collate, length_batches, mean_logprob_per_pair, model_device, probe, token_logprobs


@torch.no_grad()
def probe_full_sequences(model: torch.nn.Module, encoder: Encoder, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """The probabilities with every pair's prompt and object fed as one sequence (the way before)."""
    encoded = [encoder(prefix, target) for prefix, target in pairs]
    result = np.empty(len(encoded), dtype=np.float64)
    for chunk in length_batches([len(e.prefix) + len(e.target) for e in encoded]):
        batch = collate([encoded[i] for i in chunk], encoder.pad_id, model_device(model))
        result[chunk] = np.exp(mean_logprob_per_pair(token_logprobs(model, batch), batch, len(chunk)).double().cpu().numpy())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--cases", type=int, default=None, help="the first N cases of each split (default: all)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    encoder = Encoder(loaded.tokenizer)
    suite = load_suite(None, list(SPLIT_NAMES), args.cases)
    rows = []
    for name in SPLIT_NAMES:
        cases = [c for c in suite.splits[name] if not isinstance(c, Exception)]
        seconds = {"shared prompt": 0.0, "full sequences": 0.0}
        tokens = {"shared prompt": 0, "full sequences": 0}
        largest = 0.0
        for case in cases:
            for stage in SPLITS[name].plan(case, False, PAPER):
                pairs = [pair for _, query in stage.probes for pair in query.pairs()]
                encoded = [encoder(*pair) for pair in pairs]
                tokens["full sequences"] += sum(len(e.prefix) + len(e.target) for e in encoded)
                tokens["shared prompt"] += sum(map(len, {e.prefix for e in encoded})) + sum(len(e.target) - 1 for e in encoded)
                results = {}
                for way, measure in (("shared prompt", probe), ("full sequences", probe_full_sequences)):
                    start = time.perf_counter()
                    results[way] = measure(loaded.model, encoder, pairs)
                    seconds[way] += time.perf_counter() - start
                largest = max(largest, float(np.max(np.abs(results["shared prompt"] - results["full sequences"]))))
        n = len(cases)
        rows.append([name, n, f"{seconds['full sequences'] / n:.2f}", f"{seconds['shared prompt'] / n:.2f}",
                     f"{seconds['full sequences'] / seconds['shared prompt']:.1f}x",
                     tokens["full sequences"] // n, tokens["shared prompt"] // n, f"{largest:.1e}"])
    print(f"{loaded.name}, {args.threads} thread(s); probes of every state of each case (paper protocol)\n")
    print(tabulate(rows, headers=["split", "cases", "full sequences, s/case", "shared prompt, s/case", "speed-up",
                                  "tokens/case before", "tokens/case now", "max |Δp|"], tablefmt="pipe"))


if __name__ == "__main__":
    main()
