"""Shards: dealing cases to K/N (a partition, balanced per split and relation), merging the shard
folders with ``kedit report`` into the unsharded run's tables, and three real sharded runs."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from run_summaries import run_summary

from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.cli.main import main
from pytest_kedit.dataset.shards import Shard, deal, parse_shard
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.errors import ConfigError
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import load_runs, merge_tables, write_report
from pytest_kedit.results.summary import RunData, RunSummary

#: A split's entries as (relation, case id): a few relations, ids unique.
split_keys = st.lists(st.sampled_from(["P17", "P19", "P27", "P131", ""]), max_size=60).map(
    lambda relations: [(relation, f"reverse-{i:04d}") for i, relation in enumerate(relations)])


@given(split_keys, st.integers(min_value=1, max_value=7))
def test_the_shards_partition_a_split(keys: list[tuple[str, str]], count: int) -> None:
    dealt = [deal(keys, Shard(index, count)) for index in range(1, count + 1)]
    assert sorted(position for shard in dealt for position in shard) == list(range(len(keys)))
    assert all(shard == sorted(shard) for shard in dealt)  # each shard keeps file order


@given(split_keys, st.integers(min_value=1, max_value=7))
def test_shard_sizes_differ_by_at_most_one_in_the_split_and_in_each_relation(keys: list[tuple[str, str]],
                                                                             count: int) -> None:
    dealt = [deal(keys, Shard(index, count)) for index in range(1, count + 1)]
    sizes = [len(shard) for shard in dealt]
    assert max(sizes) - min(sizes) <= 1
    for relation in {relation for relation, _ in keys}:
        per_shard = [sum(keys[position][0] == relation for position in shard) for shard in dealt]
        assert max(per_shard) - min(per_shard) <= 1, relation


@given(split_keys, st.integers(min_value=1, max_value=5), st.randoms(use_true_random=False))
def test_a_shard_depends_on_the_cases_not_on_their_order_in_the_file(keys: list[tuple[str, str]], count: int,
                                                                     rng: Any) -> None:
    shuffled = list(keys)
    rng.shuffle(shuffled)
    for index in range(1, count + 1):
        assert sorted(keys[p] for p in deal(keys, Shard(index, count))) == \
            sorted(shuffled[p] for p in deal(shuffled, Shard(index, count)))


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2", "2/3/4"])
def test_a_bad_shard_is_one_line_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--kedit-shard: .*K") as info:
        parse_shard(text)
    assert "\n" not in str(info.value)


def test_parse_shard_reads_k_of_n() -> None:
    assert parse_shard("2/3") == Shard(2, 3) and str(parse_shard(" 1 / 1 ")) == "1/1"


def test_the_built_in_suites_deal_after_limit_and_sample() -> None:
    full = load_suite(None, list(SPLITS), limit=12, sample=8, seed=1)
    splits = list(full.splits)
    shards = [load_suite(None, list(SPLITS), limit=12, sample=8, seed=1, shard=Shard(k, 3)) for k in (1, 2, 3)]
    for split in splits:
        ids = [case.case_id for shard in shards for case in shard.splits[split]]  # type: ignore[union-attr]
        assert sorted(ids) == sorted(case.case_id for case in full.splits[split])  # type: ignore[union-attr]
        assert len(set(ids)) == len(ids)
        assert max(len(s.splits[split]) for s in shards) - min(len(s.splits[split]) for s in shards) <= 1
    assert {shard.fingerprint for shard in shards} == {full.fingerprint}


def _record(case_id: str, relation: str, **metrics: float) -> CaseRecord:
    return CaseRecord(case_id=case_id, split=case_id.split("-")[0], relation=relation, arity=None, model="m",
                      method="ft", metrics=metrics, nodeid=f"suites/test_x.py::t[{case_id}]")


RECORDS = [_record(f"reverse-{i:04d}", f"P{i % 3}", cs_exp=float(i % 2), cs_imp=float(i % 3 == 0), cm=i / 10)
           for i in range(10)] + [_record(f"easy-{i:04d}", "P1", succ=1.0, d=i / 100, ir=0.5, fr=float(i == 2))
                                  for i in range(5)] + [
    _record(f"sequential-{i:04d}", "stream", es=i / 4, loc=1 - i / 8, ppl=1 + i / 3, norm=i / 50, collapse_at=100.0 - i)
    for i in range(4)]


def _summary(shard: Shard | None = None, **changes: Any) -> RunSummary:
    return run_summary(**{"hparams": {"lr": 0.1}, "data": RunData("x", "abc", {}), "thresholds": ["cs_imp>=1"],
                          "shard": shard, "timings": {"model_load": 1.0, "total": 2.0}, **changes})


def _write_shards(tmp_path: Path, count: int = 3, **changes: Any) -> list[Path]:
    folders = []
    for index in range(1, count + 1):
        shard = Shard(index, count)
        mine = [r for split in ("reverse", "easy", "sequential")
                for r in _in_shard([r for r in RECORDS if r.split == split], shard)]
        folder = tmp_path / f"shard-{index}"
        write_report(folder, _summary(shard, cases_expected=len(mine), cases_done=len(mine), **changes), mine)
        folders.append(folder)
    return folders


def _in_shard(records: list[CaseRecord], shard: Shard) -> list[CaseRecord]:
    return [records[p] for p in deal([(str(r.relation), r.case_id) for r in records], shard)]


def test_kedit_report_merges_shards_into_the_unsharded_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = write_report(tmp_path / "whole", _summary(), RECORDS)
    folders = _write_shards(tmp_path)
    assert main(["report", *map(str, folders), "--out", str(tmp_path / "merged")]) == 0
    assert capsys.readouterr().out == f"{whole.table1}\n\n{whole.table2}\n\n{whole.table3}\n"
    for name in ("table1.md", "table2.md", "table3.md"):
        assert (tmp_path / "merged" / name).read_text() == (tmp_path / "whole" / name).read_text()
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert merged["shards"] == ["1/3", "2/3", "3/3"] and merged["shards_missing"] == [] and merged["complete"]
    assert merged["counts"] == whole.summary.counts and merged["intervals"] == whole.summary.intervals
    assert merged["cases_done"] == len(RECORDS) and merged["timings"]["model_load"] == 3.0
    # the merged folder is a report folder: kedit report reads it back to the same tables
    assert main(["report", str(tmp_path / "merged")]) == 0
    assert capsys.readouterr().out == f"{whole.table1}\n\n{whole.table2}\n\n{whole.table3}\n"


def test_a_missing_shard_prints_the_tables_of_the_others_marked_partial(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    first, _, third = _write_shards(tmp_path)
    assert main(["report", str(first), str(third), "--out", str(tmp_path / "merged")]) == 0
    out = capsys.readouterr().out
    assert "Note: m / ft: partial: shard 2/3 missing (merged 1/3, 3/3)." in out
    assert (tmp_path / "merged" / "table3.md").read_text().endswith("Note: m / ft: partial: shard 2/3 missing "
                                                                     "(merged 1/3, 3/3).\n")
    assert json.loads((tmp_path / "merged" / "summary.json").read_text())["complete"] is False


@pytest.mark.parametrize("change, message", [
    ({"hparams": {"lr": 0.2}}, "are not shards of one run: hparams.lr: 0.1 recorded, 0.2 now"),
    ({"seed": 1}, "are not shards of one run: seed: 0 recorded, 1 now"),
    ({"model_fingerprint": "g"}, "are not shards of one run: model_fingerprint"),
])
def test_shards_of_different_runs_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         change: dict[str, Any], message: str) -> None:
    folders = _write_shards(tmp_path)
    other = _write_shards(tmp_path / "other", **change)
    assert main(["report", str(folders[0]), str(folders[1]), str(other[2])]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_overlapping_shards_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folders = _write_shards(tmp_path)
    assert main(["report", *map(str, folders), str(folders[0])]) == 2
    assert "shard 1/3 is in both" in capsys.readouterr().err
    two = _write_shards(tmp_path / "two", count=2)
    assert main(["report", str(folders[0]), str(two[0])]) == 2
    assert "shards split in different numbers [2, 3]" in capsys.readouterr().err
    lines = (folders[1] / "cases.jsonl").read_text().splitlines()
    first_line = (folders[0] / "cases.jsonl").read_text().splitlines()[0]
    (folders[1] / "cases.jsonl").write_text("\n".join([*lines, first_line]) + "\n")
    assert main(["report", *map(str, folders)]) == 2
    assert "overlapping shards" in capsys.readouterr().err


def test_a_shard_with_an_unsharded_run_of_the_same_method_is_refused(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    write_report(tmp_path / "whole", _summary(), RECORDS)
    folders = _write_shards(tmp_path)
    assert main(["report", str(tmp_path / "whole"), str(folders[0])]) == 2
    assert "not a shard" in capsys.readouterr().err


def test_runs_of_other_methods_keep_their_own_rows(tmp_path: Path) -> None:
    folders = _write_shards(tmp_path)
    rome = [dataclasses.replace(r, method="rome") for r in RECORDS]
    write_report(tmp_path / "rome", _summary(method="rome"), rome)
    runs = load_runs([*folders, tmp_path / "rome"])
    assert list(runs.by_key) == [("m", "ft"), ("m", "rome")]
    table1_md, _ = merge_tables(runs)
    assert "several runs" not in table1_md and "partial" not in table1_md
    assert re.search(r"^\| ft +\|", table1_md, re.M) and re.search(r"^\| rome +\|", table1_md, re.M)


@pytest.fixture
def project(kedit_project: Callable[..., pytest.Pytester]) -> pytest.Pytester:
    return kedit_project(kedit_limit=4)


def _ids(result: pytest.RunResult) -> list[str]:
    return re.findall(r"\[([a-z]+-\d{4})\]", result.stdout.str())


def test_a_bad_shard_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nkedit_shard = 4/3\n")
    pytester.makepyfile(test_suite="def test_case(conflict_case):\n    pass\n")
    result = pytester.runpytest_subprocess("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*kedit: --kedit-shard: '4/3' needs 1 <= K <= N*"])


@pytest.mark.slow
def test_three_sharded_runs_merged_by_kedit_report_equal_the_unsharded_run(project: pytest.Pytester,
                                                                          tmp_path: Path) -> None:
    off = [f"--kedit-threshold={metric}=off" for metric in ("cs", "cs_exp", "cs_imp", "succ", "fr", "tfd")]
    collected = [_ids(project.runpytest_subprocess("--collect-only", "-q", f"--kedit-shard={k}/3")) for k in (1, 2, 3)]
    assert sorted(i for ids in collected for i in ids) == sorted(_ids(project.runpytest_subprocess("--collect-only", "-q")))
    assert all(set(a).isdisjoint(b) for a in collected for b in collected if a is not b)
    whole = project.runpytest_subprocess(f"--kedit-report={tmp_path / 'whole'}", *off)
    whole.assert_outcomes(passed=20)
    for k in (1, 2, 3):
        run = project.runpytest_subprocess(f"--kedit-shard={k}/3", f"--kedit-report={tmp_path / f'shard{k}'}", *off)
        run.assert_outcomes(passed=len(collected[k - 1]))
        assert json.loads((tmp_path / f"shard{k}" / "summary.json").read_text())["shard"] == f"{k}/3"
    folders = [str(tmp_path / f"shard{k}") for k in (3, 1, 2)]  # any order
    assert main(["report", *folders, "--out", str(tmp_path / "merged")]) == 0
    for name in ("table1.md", "table2.md"):
        assert (tmp_path / "merged" / name).read_text() == (tmp_path / "whole" / name).read_text()
