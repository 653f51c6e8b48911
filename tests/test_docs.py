"""The docs say what the code does: the metric list in docs/metrics.md is the registry's; the GitHub
Actions workflow of docs/ci.md is the one kedit init writes, and its commands use options that exist;
the project's own workflow runs what it says."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_kedit.ci.gates import parse_gates
from pytest_kedit.ci.regression import parse_tolerance
from pytest_kedit.cli.init_project import workflow_text
from pytest_kedit.cli.main import build_parser
from pytest_kedit.results.tables import metric_table
from pytest_kedit.run.options import read_options

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_metrics_md_lists_the_registry_as_kedit_metrics_prints_it():
    assert metric_table() in (DOCS / "metrics.md").read_text(encoding="utf-8")


def docs_workflow() -> str:
    """The GitHub Actions workflow of docs/ci.md ("## A workflow"), as written there."""
    text = (DOCS / "ci.md").read_text(encoding="utf-8")
    section = text[text.index("## A workflow"):]
    (block,) = re.findall(r"^```yaml\n(.*?)^```", section, flags=re.M | re.S)[:1]
    return str(block)


def commands(job: dict[str, Any], program: str) -> list[list[str]]:
    """The command lines of ``program`` in a job's ``run`` steps, as arguments after the program
    name: ``${{ matrix.shard }}`` is 1, a pipe or redirection ends it."""
    found = []
    for step in job["steps"]:
        script = re.sub(r"\$\{\{ matrix\.shard \}\}", "1", step.get("run", "")).replace("\\\n", " ")
        for line in (script.split("\n") if "\n" in script.strip() else [script]):
            words = shlex.split(line.split("|")[0].split(">>")[0])
            if words[:1] == [program]:
                found.append(words[1:])
    return found


def test_docs_ci_md_shows_the_workflow_kedit_init_writes():
    assert docs_workflow() == workflow_text()


def test_the_users_workflow_shards_merges_gates_and_updates_the_baseline_with_the_options_that_exist(
        pytester: pytest.Pytester) -> None:
    parsed = yaml.safe_load(workflow_text())
    jobs = parsed["jobs"]
    assert set(jobs) == {"shard", "merge", "update-baseline"}
    assert jobs["shard"]["strategy"]["matrix"]["shard"] == [1, 2, 3]
    assert jobs["merge"]["needs"] == "shard" and jobs["update-baseline"]["needs"] == "merge"
    # read-only but for the job that opens the baseline's pull request; bash (pipefail) for every script
    assert parsed["permissions"] == {"contents": "read"} and parsed["defaults"] == {"run": {"shell": "bash"}}
    assert [name for name, job in jobs.items() if "permissions" in job] == ["update-baseline"]
    assert all(job["timeout-minutes"] > 0 for job in jobs.values()) and parsed["concurrency"]["cancel-in-progress"]
    steps = jobs["shard"]["steps"]
    shard_runs = [step["env"]["PYTEST_ADDOPTS"] for step in steps if step.get("run") == "pytest suites/"]
    gated, update = (shlex.split(re.sub(r"\$\{\{ matrix\.shard \}\}", "1", addopts)) for addopts in shard_runs)
    for args in (gated, update):
        assert "--kedit-shard=1/3" in args and "--kedit-report=kedit-shard-1" in args
        read_options(pytester.parseconfig(*args, "suites/"))  # every option exists and every value is valid
    assert pytester.parseconfig(*gated, "suites/").getoption("kedit_baseline") == "default"
    assert "--kedit-baseline-update" in update
    # the model: one cache for every shard, saved once; the rest: a cache per shard saved under a new key each run
    caches = [step for step in steps if step.get("uses", "").startswith("actions/cache/")]
    model = [step for step in caches if step["with"]["path"] == "${{ env.KEDIT_CACHE_DIR }}/models"]
    assert [step["uses"].split("@")[0] for step in model] == ["actions/cache/restore", "actions/cache/save"]
    assert "matrix.shard == 1" in model[1]["if"] and "cache-hit" in model[1]["if"]
    run_caches = [step for step in caches if step not in model]
    assert all("github.run_id" in step["with"]["key"] and "!${{ env.KEDIT_CACHE_DIR }}/models" in step["with"]["path"]
               for step in run_caches)
    assert "restore-keys" in run_caches[0]["with"] and "matrix.shard" in run_caches[0]["with"]["key"]
    # the merge job: kedit report of the shards, kedit gate of the merged run; the update job: kedit baseline
    report, gate = (build_parser().parse_args(args) for args in commands(jobs["merge"], "kedit"))
    assert report.command == "report" and report.out == Path("merged")
    assert gate.command == "gate" and gate.dirs == [Path("merged")] and gate.baseline is None
    assert gate.gate and parse_gates(gate.gate, gate.gate_mode, has_baseline=True)
    assert parse_tolerance(gate.tolerance, "--baseline-tolerance") == 0.05
    (baseline,) = (build_parser().parse_args(args) for args in commands(jobs["update-baseline"], "kedit"))
    assert baseline.command == "baseline" and baseline.dirs == [Path("merged")] and baseline.baseline is None


def uses(workflow: dict[str, Any]) -> dict[str, set[str]]:
    """Every action a workflow uses (``actions/cache/restore`` counted as ``actions/cache``) -> its versions."""
    found: dict[str, set[str]] = {}
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                name, version = step["uses"].split("@")
                found.setdefault("/".join(name.split("/")[:2]), set()).add(version)
    return found


def test_both_workflows_use_one_major_of_each_action_with_pip_caching():
    ours = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    users = yaml.safe_load(workflow_text())
    for workflow in (ours, users):
        assert all(len(versions) == 1 for versions in uses(workflow).values())
        setups = [step for job in workflow["jobs"].values() for step in job["steps"]
                  if step.get("uses", "").startswith("actions/setup-python")]
        assert setups and all(step["with"]["cache"] == "pip" for step in setups)
    shared = set(uses(ours)) & set(uses(users))
    assert {"actions/checkout", "actions/setup-python", "actions/cache", "actions/upload-artifact"} <= shared
    assert all(uses(ours)[action] == uses(users)[action] for action in shared)


def test_the_projects_workflow_lints_tests_and_gates_the_main_job_with_its_report_as_an_artifact():
    parsed = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    jobs = parsed["jobs"]
    runs = {name: [step.get("run", "") for step in job["steps"]] for name, job in jobs.items()}
    assert "tox -e lint" in runs["lint"] and 'tox -e tests -- -m "not slow"' in runs["fast-tests"]
    assert "tox -e tests" in runs["tests"]
    assert any(run.startswith("tox -e suites") and "--kedit-html=kedit-report/" in run for run in runs["suites"])
    artifact = next(step for step in jobs["suites"]["steps"] if step.get("uses", "").startswith("actions/upload-artifact"))
    assert artifact["with"]["path"] == "kedit-report"
    assert parsed["permissions"] == {"contents": "read"} and parsed["defaults"] == {"run": {"shell": "bash"}}
    assert all(job["timeout-minutes"] > 0 for job in jobs.values())
