"""pytest hooks and fixtures of pytest-kedit. They only wire things together: options come from
``options``, cases from ``datasets``, the work from ``session``, the tables from ``tables``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pytest

from .datasets import Entry, resolve_source
from .errors import KeditError
from .options import add_options, read_options
from .record import CaseRecord
from .registry import BENCHMARKS, SPLITS, splits_of
from .session import USER_PROPERTY, Collector, Worker
from .tables import threshold_summary, timing_summary

if TYPE_CHECKING:
    from .editors.base import Editor
    from .harness import Harness
    from .models import LoadedModel

WORKER = pytest.StashKey[Worker]()
CASE_ID = re.compile(rf"\[({'|'.join(SPLITS)})-(\d+|invalid)\]$")
#: The key of a worker's process facts in pytest-xdist's ``workeroutput``.
PROCESS_OUTPUT = "kedit_process"


def count_cases(nodeids: Iterable[str]) -> int:
    """How many of the tests are benchmark cases: their parameter id is a case id
    (``reverse-0042``, or ``reverse-invalid`` for a file that could not be read)."""
    return sum(bool(CASE_ID.search(nodeid)) for nodeid in nodeids)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    try:
        options = read_options(config)
        # Resolved here (a download for upstream:NAME): errors raised while collecting would
        # reach the user as a collection error with a stack, not as a one-line usage error.
        resolve_source(options.data)
        if options.html:
            # Imported only when asked for: the visual report brings in scipy.stats and matplotlib.
            from .html_report import require_matplotlib

            require_matplotlib()
    except KeditError as exc:
        raise pytest.UsageError(f"kedit: {exc}") from None
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        config.pluginmanager.register(KeditReporter(Collector(options)), "kedit-reporter")
        config.stash[WORKER] = Worker(options)
    else:
        worker_index = int(workerinput["workerid"].removeprefix("gw"))
        config.stash[WORKER] = Worker(options, worker_index, int(workerinput["workercount"]))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for benchmark in BENCHMARKS:
        if benchmark.fixture not in metafunc.fixturenames:
            continue
        worker = metafunc.config.stash[WORKER]
        try:
            entries = worker.suite.entries([s for s in worker.options.splits if s in splits_of(benchmark)])
        except KeditError as exc:
            raise pytest.UsageError(f"kedit: {exc}") from None
        metafunc.parametrize(benchmark.fixture, [entry for _, entry in entries], ids=[ident for ident, _ in entries])


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before any case runs (and under --collect-only): check every option and the data once,
    when the session holds kedit cases."""
    fixtures = {benchmark.fixture for benchmark in BENCHMARKS}
    if hasattr(config, "workerinput") or not any(fixtures & set(getattr(item, "fixturenames", ())) for item in items):
        return
    from .preflight import check_options, check_suite  # imports torch: only for runs with kedit cases

    worker = config.stash[WORKER]
    try:
        check_options(worker.options)
        check_suite(worker.options, worker.suite)
    except KeditError as exc:
        raise pytest.UsageError(f"kedit: {exc}") from None


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[PROCESS_OUTPUT] = session.config.stash[WORKER].process_info()


@pytest.fixture(scope="session")
def kedit_worker(pytestconfig: pytest.Config) -> Worker:
    return pytestconfig.stash[WORKER]


@pytest.fixture(scope="session")
def kedit_harness(kedit_worker: Worker) -> Harness:
    """The model and editor of the run, loaded once per process."""
    try:
        return kedit_worker.harness
    except KeditError as exc:
        pytest.exit(f"kedit: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def kedit_model(kedit_harness: Harness) -> LoadedModel:
    return kedit_harness.loaded


@pytest.fixture(scope="session")
def kedit_editor(kedit_harness: Harness) -> Editor:
    return kedit_harness.editor


@pytest.fixture
def kedit_run(request: pytest.FixtureRequest, kedit_worker: Worker, kedit_harness: Harness) -> Callable[[Entry], CaseRecord]:
    """Run a case (edits, probes, restore) and attach its record to the test's report."""

    def run(entry: Entry) -> CaseRecord:
        __tracebackhide__ = True

        def attach(record: CaseRecord) -> None:
            # A record that could not be parsed has no case: name it by its test id ("reverse-0042").
            record.case_id = record.case_id or request.node.callspec.id
            record.split = record.split or record.case_id.split("-")[0]
            request.node.user_properties.append((USER_PROPERTY, record.to_json()))

        try:
            record = kedit_worker.run(entry)
        except Exception as exc:  # a bug, not a user error: keep the traceback, record the case anyway
            attach(kedit_worker.error_record(entry, exc))
            raise
        attach(record)
        if record.error is not None:
            pytest.fail(record.error, pytrace=False)
        return record

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
                record = CaseRecord.from_json(str(value))
                record.nodeid = report.nodeid
                record.outcome = "error" if record.error else report.outcome
                self.collector.add(record)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collector.expected = count_cases(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """pytest-xdist: every worker collects the same tests; the controller collects none."""
        self.collector.expected = count_cases(ids)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist: a worker finished; keep what it loaded."""
        self.collector.add_process(getattr(node, "workeroutput", {}).get(PROCESS_OUTPUT))

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, exitstatus: int,
                                config: pytest.Config) -> None:
        if not self.collector.records:
            return
        worker = config.stash[WORKER]
        options = worker.options
        if not self.collector.processes:  # no xdist: this process ran the cases
            self.collector.add_process(worker.process_info())
        run = self.collector.finish(worker.suite, interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
        write = terminalreporter.write_line
        terminalreporter.section(f"kedit: {run.summary['model']} × {run.summary['method']}")
        if options.sample is not None:
            write(f"stratified sample of {options.sample} cases per split (by relation, seed {options.seed})")
            write("")
        splits = {record.split for record in run.records}
        tables = [table for benchmark, table in zip(BENCHMARKS, (run.table1, run.table2))
                  if splits & set(splits_of(benchmark))]
        if options.by_relation:
            tables.append(run.relations)
        for block in (*tables, threshold_summary(run.records, options.thresholds), timing_summary(run.summary)):
            if block:
                for line in block.splitlines():
                    write(line)
                write("")
        if options.report:
            write(f"report written to {options.report}")
        if options.html:
            from .html_report import write_html_report

            key = (run.summary["model"], run.summary["method"])
            try:
                write_html_report(options.html, {key: (run.summary, run.records)},
                                  {key: [options.report] if options.report else []})
                write(f"visual report written to {options.html}")
            except KeditError as exc:
                write(f"kedit: visual report not written: {exc}", red=True)
