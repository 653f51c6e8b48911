"""pytest hooks and fixtures of pytest-kedit. They only wire things together: options come from
``options``, cases from ``datasets``, the work from ``session``, the tables from ``report``."""

from __future__ import annotations

import json
from collections.abc import Callable

from typing import TYPE_CHECKING

import pytest

from .cases import CONFLICT_SPLITS, ROUND_SPLITS
from .datasets import Entry, resolve_source
from .errors import KeditError
from .options import add_options, read_options
from .report import threshold_summary, timing_summary
from .session import USER_PROPERTY, CaseOutcome, Collector, Runner, encode_record

if TYPE_CHECKING:
    from .editors.base import Editor
    from .models import LoadedModel
    from .protocols import Harness

RUNNER = pytest.StashKey[Runner]()
CASE_FIXTURES = {"conflict_case": CONFLICT_SPLITS, "round_case": ROUND_SPLITS}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    try:
        options = read_options(config)
        # Resolved here (a download for upstream:NAME): errors raised while collecting would
        # reach the user as a collection error with a stack, not as a one-line usage error.
        resolve_source(options.data)
    except KeditError as exc:
        raise pytest.UsageError(f"kedit: {exc}") from None
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        config.pluginmanager.register(KeditReporter(Collector(options)), "kedit-reporter")
        config.stash[RUNNER] = Runner(options)
    else:
        worker_index = int(workerinput["workerid"].removeprefix("gw"))
        config.stash[RUNNER] = Runner(options, worker_index, int(workerinput["workercount"]))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, kind_splits in CASE_FIXTURES.items():
        if fixture not in metafunc.fixturenames:
            continue
        runner = metafunc.config.stash[RUNNER]
        try:
            entries = runner.suite.entries([s for s in runner.options.splits if s in kind_splits])
        except KeditError as exc:
            raise pytest.UsageError(f"kedit: {exc}") from None
        metafunc.parametrize(fixture, [entry for _, entry in entries], ids=[ident for ident, _ in entries])


@pytest.fixture(scope="session")
def kedit_runner(pytestconfig: pytest.Config) -> Runner:
    return pytestconfig.stash[RUNNER]


@pytest.fixture(scope="session")
def kedit_harness(kedit_runner: Runner) -> Harness:
    """The model and editor of the run, loaded once per process."""
    try:
        return kedit_runner.harness
    except KeditError as exc:
        pytest.exit(f"kedit: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def kedit_model(kedit_harness: Harness) -> LoadedModel:
    return kedit_harness.loaded


@pytest.fixture(scope="session")
def kedit_editor(kedit_harness: Harness) -> Editor:
    return kedit_harness.editor


@pytest.fixture
def kedit_run(request: pytest.FixtureRequest, kedit_runner: Runner, kedit_harness: Harness) -> Callable[[Entry], CaseOutcome]:
    """Run a case (edits, probes, restore) and attach its record to the test's report."""

    def run(entry: Entry) -> CaseOutcome:
        __tracebackhide__ = True

        def attach(record: dict) -> None:
            # A record that could not be parsed has no case: name it by its test id ("reverse-0042").
            case_id = record["case_id"] or request.node.callspec.id
            record.update(case_id=case_id, split=record["split"] or case_id.split("-")[0])
            request.node.user_properties.append((USER_PROPERTY, encode_record(record)))

        try:
            outcome, record = kedit_runner.run(entry)
        except Exception as exc:  # a bug, not a user error: keep the traceback, record the case anyway
            attach(kedit_runner.error_record(entry, exc))
            raise
        attach(record)
        if outcome is None:
            pytest.fail(record["error"], pytrace=False)
        return outcome

    return run


class KeditReporter:
    """Controller-side hooks: collect case records as reports arrive, print the tables at the end."""

    def __init__(self, collector: Collector):
        self.collector = collector

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == USER_PROPERTY:
                record = json.loads(value)
                record["nodeid"] = report.nodeid
                record["outcome"] = "error" if record["error"] else report.outcome
                self.collector.add(record)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
        if not self.collector.records:
            return
        runner = config.stash[RUNNER]
        options = runner.options
        run = self.collector.finish(runner.suite)
        write = terminalreporter.write_line
        terminalreporter.section(f"kedit: {run.summary['model']} × {run.summary['method']}")
        if options.sample is not None:
            write(f"stratified sample of {options.sample} cases per split (by relation, seed {options.seed})")
            write("")
        splits = {record["split"] for record in run.records}
        tables = [run.table1 if splits & set(CONFLICT_SPLITS) else "", run.table2 if splits & set(ROUND_SPLITS) else ""]
        if options.by_relation:
            tables.append(run.relations)
        for block in (*tables, threshold_summary(run.records, options.thresholds), timing_summary(run.summary)):
            if block:
                for line in block.splitlines():
                    write(line)
                write("")
        if options.report:
            write(f"report written to {options.report}")
