"""The sequential suite as a pytest user meets it: the --kedit-sequential* options and ini keys,
one test per stream that -k sequential selects alone, and a stream run on the tiny model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_stream_harness import CAPITAL, HELD_OUT, LANGUAGE

from pytest_kedit.benchmark.streams import StreamSettings
from pytest_kedit.cli.main import main
from pytest_kedit.dataset.sources import builtin_folder
from pytest_kedit.errors import ConfigError
from pytest_kedit.run.options import read_options

#: Three streams of four edits over the tiny tokenizer's words.
STREAMS = [
    {
        "type": "sequential",
        "edits": [
            {"relation": {"id": relation.id, "prompt": relation.prompt, "query": None, "label": None},
             "subject": {"id": None, "label": subject}, "object": {"id": None, "label": old},
             "new_object": {"id": None, "label": new}, "neighbourhood": neighbours}
            for subject, relation, old, new, neighbours in order
        ],
        "locality": [{"relation": {"id": "P37", "prompt": LANGUAGE.prompt, "query": None, "label": None},
                      "subject": {"id": None, "label": "Germany"}, "object": {"id": None, "label": "German"}}],
        "held_out": list(HELD_OUT),
    }
    for order in [
        [("France", CAPITAL, "Paris", "Rome", []), ("Italy", CAPITAL, "Rome", "Berlin", []),
         ("France", LANGUAGE, "French", "English", [{"id": None, "label": "Switzerland"}]),
         ("Spain", CAPITAL, "Madrid", "Paris", [])],
        [("Spain", CAPITAL, "Madrid", "Paris", []), ("Italy", CAPITAL, "Rome", "Berlin", []),
         ("France", CAPITAL, "Paris", "Rome", []), ("Italy", LANGUAGE, "Italian", "English", [])],
        [("Italy", CAPITAL, "Rome", "Madrid", []), ("France", CAPITAL, "Paris", "Berlin", []),
         ("Spain", CAPITAL, "Madrid", "Rome", []), ("France", LANGUAGE, "French", "German", [])],
    ]
]


def data_with_streams(folder: Path) -> Path:
    """The built-in suites of the paper, and :data:`STREAMS` with their paraphrases."""
    shutil.copytree(builtin_folder(), folder, ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__", "sequential*"))
    (folder / "sequential.json").write_text(json.dumps(STREAMS))
    (folder / "sequential_prompts.json").write_text(json.dumps(
        {relation.id: list(relation.paraphrases) for relation in (CAPITAL, LANGUAGE)}))
    return folder


@pytest.mark.parametrize("args, ini, expected", [
    ((), "", StreamSettings()),
    (("--kedit-sequential=20", "--kedit-sequential-batch=5", "--kedit-sequential-every=10",
      "--kedit-sequential-scheme=final"), "", StreamSettings(20, 5, 10, "final")),
    ((), "kedit_sequential = 3\nkedit_sequential_scheme = immediate\n", StreamSettings(edits=3, scheme="immediate")),
    (("--kedit-sequential=4",), "kedit_sequential = 3\n", StreamSettings(edits=4)),
])
def test_the_options_and_ini_keys_set_how_streams_run(pytester: pytest.Pytester, args, ini, expected):
    if ini:
        pytester.makeini("[pytest]\n" + ini)
    assert read_options(pytester.parseconfig(*args)).stream == expected


@pytest.mark.parametrize("arg, message", [
    ("--kedit-sequential=0", "--kedit-sequential: must be at least 1, got 0"),
    ("--kedit-sequential-batch=two", "--kedit-sequential-batch: 'two' is not a whole number"),
    ("--kedit-sequential-every=-1", "--kedit-sequential-every: must be at least 1, got -1"),
    ("--kedit-sequential-scheme=later", "--kedit-sequential-scheme: 'later'; choose from immediate, final, both"),
])
def test_a_bad_stream_option_is_one_line_naming_it(pytester: pytest.Pytester, arg: str, message: str):
    with pytest.raises(ConfigError) as caught:
        read_options(pytester.parseconfig(arg))
    assert str(caught.value) == message


def test_only_the_options_a_run_changes_enter_its_provenance():
    assert StreamSettings().given() is None and StreamSettings(scheme="both", batched=True).given() is None
    assert StreamSettings(edits=20, scheme="final").given() == {"edits": 20, "scheme": "final"}


def test_k_sequential_selects_the_streams_alone_and_the_other_suites_keep_their_cases(
        kedit_project: Callable[..., pytest.Pytester], tmp_path: Path):
    data = data_with_streams(tmp_path / "data")
    project = kedit_project(streams=True, kedit_data=data, kedit_limit=2)

    def collected(*args: str) -> list[str]:
        result = project.runpytest_inprocess("--collect-only", "-q", "-p", "no:randomly", *args)
        return [line for line in result.stdout.lines if "::test_" in line]

    streams = collected("-k", "sequential")
    assert streams == [f"test_sequential.py::test_sequential_stream[sequential-{i:04d}]" for i in range(2)]
    everything = collected()
    assert everything[:2] == streams  # the long tests first, whatever the files' order
    others = everything[2:]
    (project.path / "test_sequential.py").unlink()
    assert others == collected()  # the paper's suites collect the same cases, in their order, with or without streams


def test_a_stream_runs_on_the_tiny_model_and_its_record_keeps_the_curve(
        kedit_project: Callable[..., pytest.Pytester], tmp_path: Path):
    data = data_with_streams(tmp_path / "data")
    project = kedit_project(streams=True, kedit_data=data, kedit_limit=1, kedit_split="sequential")
    report = tmp_path / "report"
    result = project.runpytest_inprocess("-p", "no:randomly", f"--kedit-report={report}", "--kedit-sequential=3",
                                         "--kedit-sequential-every=2", "--kedit-threshold=es=off", "--kedit-threshold=ppl=off")
    result.assert_outcomes(passed=1, skipped=2)  # the paper's suites have no case of the split
    out = result.stdout.str()
    assert "Table 3: Sequential editing" in out and "Table 1" not in out
    (record,) = [json.loads(line) for line in (report / "cases.jsonl").read_text().splitlines()]
    assert record["case_id"] == "sequential-0000" and record["relation"] == "stream"
    assert [point["edits"] for point in record["curve"]["checkpoints"]] == [2, 3]
    assert record["curve"]["schedule"] == {"edits": 3, "batch": 1, "every": 2, "scheme": "both"}
    assert set(record["metrics"]) == {"es", "gs", "es_imm", "gs_imm", "retention", "spec", "loc", "ppl", "norm", "collapse_at"}
    summary = json.loads((report / "summary.json").read_text())
    assert summary["sequential"] == {"edits": 3, "every": 2}
    assert json.loads((report / "run.json").read_text())["provenance"]["sequential"] == {"edits": 3, "every": 2}


def test_a_resumed_or_sharded_stream_run_writes_the_table3_md_of_an_uninterrupted_one(
        kedit_project: Callable[..., pytest.Pytester], tmp_path: Path):
    data = data_with_streams(tmp_path / "data")
    project = kedit_project(streams=True, kedit_data=data, kedit_limit=2, kedit_split="sequential")
    options = ("-p", "no:randomly", "--kedit-sequential=3", "--kedit-sequential-every=2", "--kedit-threshold=es=off",
               "--kedit-threshold=ppl=off")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    project.runpytest_inprocess(*options, f"--kedit-report={whole}").assert_outcomes(passed=2, skipped=2)
    expected = (whole / "table3.md").read_text()
    assert "| Method" in expected and "sequential 2" in expected and "partial" not in expected
    # a run killed after its first stream: its cases.jsonl holds one line, run.json, no summary or tables
    resumed.mkdir()
    (resumed / "run.json").write_text((whole / "run.json").read_text())
    (resumed / "cases.jsonl").write_text((whole / "cases.jsonl").read_text().splitlines()[0] + "\n")
    result = project.runpytest_inprocess(*options, f"--kedit-report={resumed}", "--kedit-resume")
    result.assert_outcomes(passed=2, skipped=2)
    assert f"resumed {resumed}: 1 cases reported from their records, 1 run" in result.stdout.str()
    assert (resumed / "table3.md").read_text() == expected
    shards = [tmp_path / f"shard{k}" for k in (1, 2)]
    for k, shard in enumerate(shards, start=1):
        project.runpytest_inprocess(*options, f"--kedit-report={shard}", f"--kedit-shard={k}/2").assert_outcomes(passed=1, skipped=2)
    assert main(["report", *map(str, shards), "--out", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "table3.md").read_text() == expected
