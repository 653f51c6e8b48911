"""Stratified samples (``--kedit-sample``): proportions, determinism, and the sample of a loaded suite."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pytest_kedit.benchmark.cases import ConflictCase, RoundCase
from pytest_kedit.dataset.sampling import stratified_sample, stratum
from pytest_kedit.dataset.sources import builtin_folder, load_suite
from pytest_kedit.errors import DataError

UPSTREAM = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "pitfalls" / "GPT2-XL"
needs_upstream = pytest.mark.skipif(
    not UPSTREAM.is_dir(), reason=f"the upstream pitfalls datasets are not at {UPSTREAM} (they sit beside the project in CI)"
)

# Strata of very different sizes: "P1" is common, "P9" rare.
keys_lists = st.lists(st.sampled_from(["P1", "P1", "P1", "P1", "P2", "P2", "P3", "P17", "P9"]), max_size=150)
sizes = st.integers(0, 160)
seeds = st.integers(0, 2**32 - 1)


def quotas(keys: list[str], n: int) -> dict[str, float]:
    return {key: n * size / len(keys) for key, size in Counter(keys).items()}


def counts(keys: list[str], indices: list[int]) -> Counter[str]:
    return Counter(keys[i] for i in indices)


@given(keys_lists, sizes, seeds)
def test_a_sample_is_sorted_distinct_indices_of_min_n_and_size_items(keys, n, seed):
    indices = stratified_sample(keys, n, seed)
    assert indices == sorted(set(indices))
    assert all(0 <= i < len(keys) for i in indices)
    assert len(indices) == min(n, len(keys))
    assert stratified_sample(keys, n, seed) == indices  # deterministic


@given(keys_lists, sizes, seeds)
@example(["P1"] * 97 + ["P2", "P3", "P9"], 4, 0)  # quotas 3.88, 0.04, 0.04, 0.04: the minimum of one wins
@example(["P1", "P1", "P2", "P3"], 2, 0)  # fewer cases than strata: no minimum
def test_every_stratum_gets_its_share(keys, n, seed):
    got = counts(keys, stratified_sample(keys, n, seed))
    quota = quotas(keys, n)
    size = Counter(keys)
    if n >= len(keys):
        assert got == size
        return
    for key in size:
        assert got[key] <= math.ceil(quota[key])  # never more than its quota rounded up
        if n >= len(size):
            assert got[key] >= 1  # every stratum present
        if n < len(size) or min(quota.values()) >= 1:
            assert got[key] >= math.floor(quota[key])  # plain largest remainder: floor or ceiling
    for larger in size:
        for smaller in size:
            if size[larger] > size[smaller]:
                assert got[larger] >= got[smaller]


def test_different_seeds_draw_different_samples():
    keys = ["P1"] * 40 + ["P2"] * 20
    samples = {tuple(stratified_sample(keys, 15, seed)) for seed in range(5)}
    assert len(samples) == 5
    assert all(counts(keys, list(sample)) == {"P1": 10, "P2": 5} for sample in samples)


@pytest.mark.slow
def test_a_sample_does_not_depend_on_the_hash_seed():
    code = "from pytest_kedit.dataset.sampling import stratified_sample as s; print(s([f'P{i % 7}' for i in range(300)], 40, 3))"
    outputs = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
                              capture_output=True, text=True, check=True).stdout for hash_seed in (1, 2)}
    assert len(outputs) == 1


def test_a_stratum_is_the_relation_of_e1_or_of_the_round_edit():
    suite = load_suite(None, ["composite", "easy"])
    composite, easy = suite.splits["composite"][0], suite.splits["easy"][0]
    assert isinstance(composite, ConflictCase) and isinstance(easy, RoundCase)
    assert stratum(composite) == composite.edits[0].relation.id
    assert stratum(easy) == easy.edit.relation.id


def test_load_suite_keeps_bad_records_and_ids_and_samples_after_the_limit(tmp_path: Path):
    folder = tmp_path / "suite"
    shutil.copytree(builtin_folder(), folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    records = json.loads((folder / "reverse_edit.json").read_text())
    del records[2]["edits"]
    (folder / "reverse_edit.json").write_text(json.dumps(records))
    entries = load_suite(str(folder), ["reverse"], limit=12, sample=5, seed=1).splits["reverse"]
    errors = [entry for entry in entries if isinstance(entry, DataError)]
    cases = [entry for entry in entries if isinstance(entry, ConflictCase)]
    assert [error.record for error in errors] == [2] and len(cases) == 5
    assert all(case.index < 12 and case.case_id == f"reverse-{case.index:04d}" for case in cases)
    assert [case.index for case in cases] == sorted(case.index for case in cases)
    again = load_suite(str(folder), ["reverse", "easy"], limit=12, sample=5, seed=1).splits["reverse"]
    assert [getattr(e, "case_id", None) for e in again] == [getattr(e, "case_id", None) for e in entries]


@needs_upstream
def test_a_100_case_sample_of_reverse_covers_every_relation_in_proportion():
    full = [e for e in load_suite(str(UPSTREAM), ["reverse"]).splits["reverse"] if isinstance(e, ConflictCase)]
    entries = load_suite(str(UPSTREAM), ["reverse"], sample=100, seed=0).splits["reverse"]
    sample = [e for e in entries if isinstance(e, ConflictCase)]
    assert len(entries) == len(sample) == 100 and len(full) == 2500
    size, got = Counter(map(stratum, full)), Counter(map(stratum, sample))
    assert set(got) == set(size)
    for key, count in got.items():
        assert count in (math.floor(100 * size[key] / len(full)), math.ceil(100 * size[key] / len(full)))
    by_index = {case.index: case for case in full}
    assert all(by_index[case.index] == case for case in sample)  # ids keep their record index
    assert [case.index for case in sample] == sorted(case.index for case in sample)
