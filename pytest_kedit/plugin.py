"""pytest hooks and fixtures of pytest-kedit. They only wire things together: options come from
``run.options``, cases from ``dataset.sources``, the work from ``run.session``, what travels from
a worker to the controller from ``run.transport``, the end of the session's lines from
``run.terminal``.

A pytest run without kedit cases pays for this module and the option declarations only: the
benchmark, torch and the rest are imported, and the options read and checked, when the session
turns out to be a benchmark run (:func:`_worker`): a ``--kedit-*`` option is on the command line
(checked when pytest configures), a test asks for a case (checked when it is collected), or,
under pytest-xdist, a worker collected cases (checked by the controller). A bad ``kedit_*`` ini
value therefore stops a run that has kedit cases, in one line, and no other run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_kedit.errors import KeditError
from pytest_kedit.run.case_tests import CASE_FIXTURES, OPTIONS_ERROR_ID, STREAM_FIXTURE, count_cases, has_kedit_tests
from pytest_kedit.run.options import MARKER, MARKER_HELP, add_options, header_line, options_given, options_set

if TYPE_CHECKING:
    from pytest_kedit.dataset.sources import Entry
    from pytest_kedit.editors.base import Editor
    from pytest_kedit.model.loading import LoadedModel
    from pytest_kedit.results.record import CaseRecord
    from pytest_kedit.run.folder_lock import FolderLock
    from pytest_kedit.run.harness import Harness
    from pytest_kedit.run.notices import Notices
    from pytest_kedit.run.session import Collector, SessionVerdict, Worker
    from pytest_kedit.run.terminal import Line
    from pytest_kedit.run.termination import Termination

# Annotated rather than subscripted: the types are imported for type checking only.
WORKER: pytest.StashKey[Worker] = pytest.StashKey()
NOTICES: pytest.StashKey[Notices] = pytest.StashKey()
TERMINATION: pytest.StashKey[Termination] = pytest.StashKey()
FOLDER_LOCK: pytest.StashKey[FolderLock] = pytest.StashKey()
#: set on a case's test when its run was an error (its machinery, its data), not a judgement
CASE_ERROR = pytest.StashKey[bool]()
#: Why the run cannot start (its options, its data, its report folder), kept from collection until
#: the session can stop on it.
OPTIONS_ERROR = pytest.StashKey[KeditError]()
REPORTER = "kedit-reporter"


def _usage_error(exc: KeditError) -> NoReturn:
    """Stop the session with ``exc`` as a one-line usage error."""
    from pytest_kedit.run.transport import usage_error

    raise pytest.UsageError(usage_error(exc)) from None


def _worker(config: pytest.Config) -> Worker:
    """This process's :class:`~pytest_kedit.run.session.Worker`, made on first use: the options
    read and checked (a KeditError otherwise), the data source resolved (a download for
    upstream:NAME), the run's notices kept (:mod:`pytest_kedit.run.notices`), and on the
    controller the report folder locked and the :class:`KeditReporter` registered."""
    if WORKER in config.stash:
        return config.stash[WORKER]
    from pytest_kedit.dataset.sources import resolve_source
    from pytest_kedit.run.folder_lock import FolderLock
    from pytest_kedit.run.notices import Notices
    from pytest_kedit.run.options import read_options
    from pytest_kedit.run.session import Collector, Worker
    from pytest_kedit.run.termination import Termination

    options = read_options(config)
    resolve_source(options.data)
    if options.html:
        # Imported only when asked for: the visual report brings in scipy.stats and matplotlib.
        from pytest_kedit.report.html import require_matplotlib

        require_matplotlib()
    workerinput = getattr(config, "workerinput", None)
    if options.report and workerinput is None:
        config.stash[FOLDER_LOCK] = FolderLock(options.report)
        config.stash[FOLDER_LOCK].acquire()
    config.stash[NOTICES] = Notices()
    config.stash[NOTICES].install()
    config.stash[TERMINATION] = Termination()
    if workerinput is None:
        worker = Worker(options)
        config.pluginmanager.register(KeditReporter(Collector(options, lambda: worker.previous_run), config), REPORTER)
    else:
        worker_index = int(workerinput["workerid"].removeprefix("gw"))
        worker = Worker(options, worker_index, int(workerinput["workercount"]))
    config.stash[WORKER] = worker
    return worker


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    if config.pluginmanager.hasplugin("html") and options_set(config):
        config.pluginmanager.register(ResultsTableColumn(), "kedit-html-column")
    if options_given(config):
        try:
            _worker(config)
        except KeditError as exc:
            _usage_error(exc)


def pytest_unconfigure(config: pytest.Config) -> None:
    if FOLDER_LOCK in config.stash:
        config.stash[FOLDER_LOCK].release()
    if TERMINATION in config.stash:
        config.stash[TERMINATION].restore()
    if NOTICES in config.stash:
        config.stash[NOTICES].remove()


def pytest_report_header(config: pytest.Config) -> str | None:
    """``kedit: MODEL × METHOD, protocol ..., device ..., baseline ...`` when the session has
    kedit options (command line or ini), as given."""
    return header_line(config) if options_set(config) else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per case, its id the case id; when the run cannot start (a bad option, data that
    cannot be read), one test (:data:`~pytest_kedit.run.case_tests.OPTIONS_ERROR_ID`), and the
    session stops on the error once collected (:func:`pytest_collection_modifyitems`, or under pytest-xdist the controller)."""
    wanted = [name for name in CASE_FIXTURES if name in metafunc.fixturenames]
    if not wanted:
        return
    config = metafunc.config
    try:
        from pytest_kedit.benchmark.registry import BENCHMARKS, splits_of

        worker = _worker(config)
        for name in wanted:
            (benchmark,) = [b for b in BENCHMARKS if b.name == CASE_FIXTURES[name]]
            entries = worker.suite.entries([s for s in worker.options.splits if s in splits_of(benchmark)])
            metafunc.parametrize(name, [entry for _, entry in entries], ids=[ident for ident, _ in entries])
    except KeditError as exc:
        config.stash[OPTIONS_ERROR] = config.stash.get(OPTIONS_ERROR, exc)
        for name in wanted:
            metafunc.parametrize(name, [exc], ids=[OPTIONS_ERROR_ID])


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark every test that asks for a case ``kedit`` (before -m selects), also the one test of a
    split list without cases."""
    if _asks_for_a_case(item):
        item.add_marker(MARKER)


def _asks_for_a_case(item: pytest.Item) -> bool:
    return any(name in getattr(item, "fixturenames", ()) for name in CASE_FIXTURES)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before any case runs (and under --collect-only), once -m and -k have deselected: when the
    session holds kedit tests, stop on options that could not be read, else check every option
    and the data once, and take SIGTERM as Ctrl-C (also in pytest-xdist workers). Streams run
    first: each is one long test, so pytest-xdist starts them while the other cases fill the
    other workers, instead of after them."""
    if not any(_asks_for_a_case(item) for item in items):
        return
    items.sort(key=lambda item: STREAM_FIXTURE not in getattr(item, "fixturenames", ()))
    workerinput = getattr(config, "workerinput", None)
    if OPTIONS_ERROR in config.stash and workerinput is None:
        _usage_error(config.stash[OPTIONS_ERROR])
    if TERMINATION in config.stash:  # not on a worker that could not read the options: the controller stops
        config.stash[TERMINATION].install()
    if workerinput is None:
        preflight(config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """pytest-xdist: every worker collects the same tests; the controller collects none. When
    the first worker has collected kedit tests, the controller reads the options (stopping on
    a bad one), checks them and takes SIGTERM as Ctrl-C (a worker cannot stop the session)."""
    config = node.config
    if WORKER not in config.stash and not has_kedit_tests(ids):
        return
    try:
        _worker(config)
    except KeditError as exc:
        _usage_error(exc)
    collector = config.pluginmanager.get_plugin(REPORTER).collector
    first = collector.expected is None
    collector.expected = count_cases(ids)
    if first and collector.expected:
        config.stash[TERMINATION].install()
        preflight(config)


def preflight(config: pytest.Config) -> None:
    """Check every option, the data, the baseline and the report folder to resume, as a one-line
    usage error; on the controller (under pytest-xdist, once the first worker has collected)."""
    from pytest_kedit.run.preflight import check_baseline, check_options, check_suite  # imports torch: only for runs with kedit cases
    from pytest_kedit.run.resume import check_resume

    worker = config.stash[WORKER]
    try:
        check_options(worker.options)
        check_suite(worker.options, worker.suite)
        check_baseline(worker.options, worker.provenance())
        check_resume(worker.previous_run, worker.provenance())
    except KeditError as exc:
        _usage_error(exc)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and WORKER in session.config.stash:
        from pytest_kedit.run.transport import pack_process

        pack_process(workeroutput, session.config.stash[WORKER].process_info())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Mark the report of a case's call that was an error (the mark travels to an xdist controller)."""
    report = yield
    if call.when == "call" and report.failed and item.stash.get(CASE_ERROR, False):
        report.kedit_error = True  # type: ignore[attr-defined]
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    """A case whose run was an error (a damaged cache entry that could not be rebuilt, a disk that
    could not be written, an exception of the editor) is an ERROR, as a fixture's error is, not a
    failure of its thresholds."""
    if report.when == "call" and report.failed and getattr(report, "kedit_error", False):
        return "error", "E", "ERROR"
    return None


@pytest.fixture(scope="session")
def kedit_worker(request: pytest.FixtureRequest) -> Worker:
    try:
        return _worker(request.config)
    except KeditError as exc:
        _stop(request, exc)


@pytest.fixture(scope="session")
def kedit_harness(request: pytest.FixtureRequest, kedit_worker: Worker) -> Harness:
    """The model and editor of the run, loaded once per process; a run gated against a baseline,
    or resuming a report folder, stops here when the loaded model or hparams differ from the
    baseline's or the folder's."""
    try:
        harness = kedit_worker.harness
        kedit_worker.check_baseline()
        kedit_worker.check_resume()
        return harness
    except KeditError as exc:
        _stop(request, exc)


def _stop(request: pytest.FixtureRequest, exc: KeditError) -> NoReturn:
    """Stop the session from a fixture with ``exc`` as a one-line usage error (exit status 4)."""
    from pytest_kedit.run.transport import usage_error

    if hasattr(request.config, "workerinput"):
        # A pytest-xdist worker cannot end the session (pytest.exit crashes it): it errors this
        # test and stops, and the controller stops the session with this line.
        request.session.shouldstop = usage_error(exc)
        pytest.fail(usage_error(exc), pytrace=False)
    pytest.exit(usage_error(exc), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def kedit_model(kedit_harness: Harness) -> LoadedModel:
    return kedit_harness.loaded


@pytest.fixture(scope="session")
def kedit_editor(kedit_harness: Harness) -> Editor:
    return kedit_harness.editor


@pytest.fixture
def kedit_run(request: pytest.FixtureRequest, kedit_worker: Worker, kedit_harness: Harness) -> Callable[[Entry], CaseRecord]:
    """Run a case (edits, probes, restore) and attach its record to the test's report. Gated
    against a baseline, the case fails only when it regressed, and a known failure is an xfail;
    with --kedit-baseline-update, a missed threshold is an xfail (recorded as a known failure).
    A case that cannot run (a bad record, an input longer than the model's context) is an error
    of the test's setup, not a failure: it never reached the editor."""
    from pytest_kedit.run.session import case_test_end, name_record
    from pytest_kedit.run.transport import pack_case, pack_notices

    def tell() -> None:
        request.node.user_properties.extend(pack_notices(request.config.stash[NOTICES].take()))

    def attach(record: CaseRecord) -> None:
        if record.outcome == "error":
            request.node.stash[CASE_ERROR] = True
        tell()
        name_record(record, request.node.callspec.id)
        # The provenance goes to run.json, which a resumed run is checked against.
        provenance = kedit_worker.provenance() if kedit_worker.options.report else None
        request.node.user_properties.extend(pack_case(record, provenance))

    entry = _case_entry(request)
    problem = kedit_worker.unrunnable(entry) if entry is not None else None
    tell()  # what loading the model said
    if entry is not None and problem is not None:
        attach(kedit_worker.error_record(entry, problem))
        pytest.fail(str(problem), pytrace=False)

    def run(entry: Entry) -> CaseRecord:
        __tracebackhide__ = True
        try:
            record = kedit_worker.run(entry)
        except Exception as exc:  # a bug, not a user error: keep the traceback, record the case anyway
            attach(kedit_worker.error_record(entry, exc))
            raise
        judgement = kedit_worker.judge(record)
        attach(record)
        end = case_test_end(record, judgement, kedit_worker.options.update_baseline)
        if end is not None:
            how, message = end
            if how == "fail":
                pytest.fail(message, pytrace=False)
            pytest.xfail(message)
        return record

    return run


def _case_entry(request: pytest.FixtureRequest) -> Entry | None:
    """The case parametrized into the requesting test (``conflict_case``, ``round_case``, ``stream_case``), if any."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    return next((params[name] for name in CASE_FIXTURES if name in params), None)


class KeditReporter:
    """Controller-side hooks of a benchmark run (registered by :func:`_worker`): collect case
    records as reports arrive, print the tables at the end."""

    def __init__(self, collector: Collector, config: pytest.Config):
        self.collector = collector
        self.config = config
        self.session: pytest.Session | None = None
        #: the lines of :mod:`pytest_kedit.run.notices` printed so far
        self.notices: set[str] = set()
        self.verdict: SessionVerdict | None = None
        #: pytest-xdist: the line with which a worker stopped the session on a usage error
        self.worker_usage_error: str | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect the record of a case's call; in every report of the case (junitxml writes the
        teardown's), replace the record by one property per metric before junitxml reads them."""
        from pytest_kedit.run.transport import unpack_case, unpack_notices

        record, provenance, report.user_properties = unpack_case(report.user_properties)
        notices, report.user_properties = unpack_notices(report.user_properties)
        for line in notices:
            if line not in self.notices:  # a test's properties accumulate over its reports
                self.notices.add(line)
                self.config.pluginmanager.getplugin("terminalreporter").write_line(line, yellow=True)
        bad_data = report.when == "setup" and report.failed  # the kedit_run fixture found the case cannot run
        if record is not None and (report.when == "call" or bad_data):
            self.collector.add_report(record, provenance, report.nodeid, report.outcome, hasattr(report, "wasxfail"),
                                      bad_data)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collector.expected = count_cases(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist: a worker finished; keep what it loaded, and the usage error it stopped on."""
        from pytest_kedit.run.transport import unpack_process, worker_usage_error

        output = getattr(node, "workeroutput", {})
        self.collector.add_process(unpack_process(output))
        self.worker_usage_error = worker_usage_error(output) or self.worker_usage_error

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write or judge against the baseline, check the gates; a failed gate fails the session
        even when every case passed. Runs before the terminal summary, and on the controller
        after every xdist worker has finished."""
        self.session = session
        if self.worker_usage_error is not None:  # the session ends as a serial run would: exit status 4
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
        if not self.collector.records and (not self.collector.expected or exitstatus not in (0, 1)):
            return  # no kedit case, or stopped before the first (usage error, baseline mismatch)
        worker = session.config.stash[WORKER]
        if not self.collector.processes:  # no xdist: this process ran the cases
            self.collector.add_process(worker.process_info())
        self.verdict = self.collector.verdict(worker.suite, interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
        if self.verdict.failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, exitstatus: int,
                                config: pytest.Config) -> None:
        """The run's section (:mod:`pytest_kedit.run.terminal`): its tables, notes, the baseline
        and the gates; without a case, the baseline's lines and the gates alone."""
        from pytest_kedit.run.terminal import heading, run_lines, terminated_line, verdict_lines

        if not self.collector.records:
            _write(terminalreporter, verdict_lines(self.verdict, self.collector.options))
            return
        suite = config.stash[WORKER].suite
        run = self.collector.finish(suite, interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
        terminalreporter.section(heading(run, self.collector.options))
        _write(terminalreporter, run_lines(self.collector, run, self.verdict))
        if config.stash[TERMINATION].received:
            _write(terminalreporter, [terminated_line(self.collector, run)])
        if self.collector.report_error is not None and self.session is not None \
                and self.session.exitstatus == pytest.ExitCode.OK:  # the report is lost: the session fails
            self.session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _write(terminalreporter: pytest.TerminalReporter, lines: list[Line]) -> None:
    for text, red in lines:
        terminalreporter.write_line(text, red=red)


class ResultsTableColumn:
    """pytest-html's hooks (registered only when pytest-html is there, for a session with kedit
    options): a column of each case's metrics in its results table (:mod:`pytest_kedit.run.html_table`)."""

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        from pytest_kedit.run.html_table import COLUMN, HEADER_CELL

        cells.insert(COLUMN, HEADER_CELL)

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        from pytest_kedit.run.html_table import COLUMN, metrics_cell

        cells.insert(COLUMN, metrics_cell(report.user_properties))
