"""The docs say what the code does: the metric list in docs/metrics.md is the registry's, and the
GitHub Actions workflow of docs/ci.md is valid YAML whose commands use options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_kedit.ci.baseline import safe_name
from pytest_kedit.ci.gates import parse_gates
from pytest_kedit.ci.regression import parse_tolerance
from pytest_kedit.cli.main import build_parser
from pytest_kedit.results.tables import metric_table
from pytest_kedit.run.options import read_options

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_metrics_md_lists_the_registry_as_kedit_metrics_prints_it():
    assert metric_table() in (DOCS / "metrics.md").read_text(encoding="utf-8")


def workflow() -> dict[str, Any]:
    """The GitHub Actions workflow of docs/ci.md ("## A workflow"), parsed."""
    text = (DOCS / "ci.md").read_text(encoding="utf-8")
    section = text[text.index("## A workflow"):]
    (block,) = re.findall(r"^```yaml\n(.*?)^```", section, flags=re.M | re.S)[:1]
    parsed: dict[str, Any] = yaml.safe_load(block)
    return parsed


def commands(job: dict[str, Any], program: str, env: dict[str, str]) -> list[list[str]]:
    """The command lines of ``program`` in a job's ``run`` steps, as arguments after the program
    name: ``${{ matrix.shard }}`` is 1, ``$NAME`` the workflow's env, a pipe or redirection ends it."""
    found = []
    for step in job["steps"]:
        script = re.sub(r"\$\{\{ matrix\.shard \}\}", "1", step.get("run", ""))
        script = re.sub(r"\$([A-Z_]+)", lambda m: env.get(m[1], m[0]), script.replace("\\\n", " "))
        for line in (script.split("\n") if "\n" in script.strip() else [script]):
            words = shlex.split(line.split("|")[0].split(">>")[0])
            if words[:1] == [program]:
                found.append(words[1:])
    return found


def test_the_ci_workflow_is_valid_yaml_with_a_shard_matrix_a_merge_and_a_baseline_update(
        pytester: pytest.Pytester) -> None:
    parsed = workflow()
    jobs, env = parsed["jobs"], parsed["env"]
    assert set(jobs) == {"shard", "merge"}
    assert jobs["shard"]["strategy"]["matrix"]["shard"] == [1, 2, 3] and jobs["merge"]["needs"] == "shard"
    steps = [step for job in jobs.values() for step in job["steps"]]
    assert {step["uses"].split("@")[0] for step in steps if "uses" in step} >= {
        "actions/checkout", "actions/setup-python", "actions/cache", "actions/upload-artifact", "actions/download-artifact"}
    assert all(step["with"]["python-version"] == "3.11" for step in steps if step.get("uses", "").startswith("actions/setup-python"))
    assert all(step["with"]["path"] == "${{ env.KEDIT_CACHE_DIR }}" for step in steps if step.get("uses", "").startswith("actions/cache"))
    assert "KEDIT_CACHE_DIR" in env and any("torch==2.13.0" in step.get("run", "") and "cpu" in step["run"] for step in steps)
    shard_run, update_run = commands(jobs["shard"], "pytest", env)
    for args in (shard_run, update_run):
        assert "--kedit-shard=1/3" in args and "--kedit-report=kedit-shard-1" in args
    assert "--kedit-baseline" in shard_run and "--kedit-update-baseline" in update_run
    for args in (shard_run, update_run):  # every option exists (pytest --help) and every value is valid
        config = pytester.parseconfig(*args)
        read_options(config)
    # the merge job: kedit report of the shards, then kedit gate (a push) or kedit baseline (an update)
    report, gate, baseline = (build_parser().parse_args(args) for args in commands(jobs["merge"], "kedit", env))
    assert report.command == "report" and report.out == Path("merged")
    assert gate.command == "gate" and gate.dirs == [Path("merged")] and gate.baseline == Path(env["KEDIT_BASELINE"])
    assert gate.gate and parse_gates(gate.gate, gate.gate_mode, has_baseline=True)
    assert parse_tolerance(gate.tolerance, "--tolerance") == 0.05
    assert baseline.command == "baseline" and baseline.dirs == [Path("merged")]
    assert baseline.out == Path(env["KEDIT_BASELINE"])
    # the shards judge against the default file, which kedit baseline writes
    assert pytester.parseconfig(*shard_run).getoption("kedit_baseline") == "default"
    assert str(baseline.out) == f".kedit/baselines/{safe_name('smollm2-135m')}/{safe_name('mine')}.json"
