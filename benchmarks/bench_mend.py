"""MEND's costs: training time per 1,000 steps and where it goes, and seconds per benchmark case.

    OMP_NUM_THREADS=1 python benchmarks/bench_mend.py --model smollm2-135m --steps 50 --cases 2

Training: ``--steps`` steps of ``kedit train-mend`` (the model's packaged hyper-parameters, no
validation) from scratch in a temporary folder, on the published GPT2-XL data; the seconds of each
phase are scaled to 1,000 steps. Cases: the trained network in the cache (``kedit train-mend``
first) on the first ``--cases`` cases of every built-in split, mean seconds per case by phase
(edit, probe, restore) and the seconds of the edits alone (one ``apply`` each).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.editors import create_editor
from pytest_kedit.editors.hparams import load_hparams
from pytest_kedit.editors.mend.editor import MENDHyperParams
from pytest_kedit.editors.mend.training import MENDTrainer
from pytest_kedit.editors.mend.training_data import training_data
from pytest_kedit.errors import KeditError
from pytest_kedit.model.loading import LoadedModel, load_model
from pytest_kedit.run.harness import Harness
from pytest_kedit.storage.cache import ENV_CACHE_DIR


def bench_training(loaded: LoadedModel, source: str, steps: int) -> None:
    hp = load_hparams("mend", MENDHyperParams, loaded.name, loaded.family, None)
    hp = dataclasses.replace(hp, val_interval=10**9, max_minutes=None)
    data = training_data(source, None)
    with tempfile.TemporaryDirectory() as out, mock.patch.dict(os.environ, {ENV_CACHE_DIR: out}):
        trainer = MENDTrainer(loaded, hp, data, Path(out) / "run")  # publishes into the temporary cache
        start = time.perf_counter()
        trainer.run(max_steps=steps)
        wall = time.perf_counter() - start
    seconds = {phase: s for phase, s in trainer.timer.seconds.items() if phase != "validation"}
    wall -= trainer.timer.seconds.get("validation", 0.0)  # the one validation at the end of the run
    print(f"training: {steps} steps in {wall:.1f} s -> {wall / steps * 1000 / 60:.1f} min per 1,000 steps")
    print("| phase | s per 1,000 steps | share |\n| --- | ---: | ---: |")
    for phase, s in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"| {phase} | {s / steps * 1000:.0f} | {s / wall:.0%} |")
    rest = wall - sum(seconds.values())
    print(f"| other (data order, checkpoint, publishing) | {rest / steps * 1000:.0f} | {rest / wall:.0%} |")


def bench_cases(loaded: LoadedModel, cases: int) -> None:
    try:
        editor = create_editor("mend", loaded)
    except KeditError as exc:
        print(f"cases: skipped: {exc}")
        return
    harness = Harness(loaded, editor)
    suite = load_suite(None, list(SPLITS), limit=cases)
    per_case: list[float] = []
    phases: dict[str, list[float]] = defaultdict(list)
    for entries in suite.splits.values():
        for case in entries:
            start = time.perf_counter()
            result = harness.run(case)  # type: ignore[arg-type]
            per_case.append(time.perf_counter() - start)
            for phase, s in result.timings.items():
                phases[phase].append(s)
    request = next(iter(suite.splits["coverage"])).edits[0].request()  # type: ignore[union-attr]
    edits = []
    for _ in range(5):
        start = time.perf_counter()
        editor.apply(loaded.model, loaded.tokenizer, [request]).restore(loaded.model)
        edits.append(time.perf_counter() - start)
    print(f"cases: {len(per_case)}, mean {statistics.mean(per_case):.2f} s per case (max {max(per_case):.2f} s); "
          f"one edit {statistics.median(edits):.3f} s (median of 5)")  # fmt: skip
    print(" ".join(f"{phase} {statistics.mean(s):.2f} s" for phase, s in phases.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--source", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "pitfalls" / "GPT2-XL"))
    parser.add_argument("--steps", type=int, default=50, help="training steps to time (0: none)")
    parser.add_argument("--cases", type=int, default=2, help="cases per built-in split to time (0: none)")
    args = parser.parse_args()
    loaded = load_model(args.model)
    if args.steps:
        bench_training(loaded, args.source, args.steps)
    if args.cases:
        bench_cases(loaded, args.cases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
