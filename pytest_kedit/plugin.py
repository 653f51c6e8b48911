"""pytest hooks and fixtures of pytest-kedit. They only wire things together: options come from
``options``, cases from ``datasets``, the work from ``session``, the tables from ``tables``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pytest

from pytest_kedit.benchmark.registry import BENCHMARKS, METRICS, SPLITS, splits_of
from pytest_kedit.ci.gates import gates_markdown
from pytest_kedit.ci.step_summary import append_step_summary, run_markdown
from pytest_kedit.dataset.sources import Entry, resolve_source
from pytest_kedit.errors import KeditError
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.tables import threshold_summary, timing_summary
from pytest_kedit.run.junit import replace_record
from pytest_kedit.run.options import add_options, read_options
from pytest_kedit.run.resume import PROVENANCE_PROPERTY, take_property
from pytest_kedit.run.session import USER_PROPERTY, Collector, SessionVerdict, Worker

if TYPE_CHECKING:
    from pytest_kedit.editors.base import Editor
    from pytest_kedit.model.loading import LoadedModel
    from pytest_kedit.run.harness import Harness

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
            from pytest_kedit.report.html import require_matplotlib

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
        check_resume(worker.options, worker.provenance())
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
        if hasattr(request.config, "workerinput"):
            # A pytest-xdist worker cannot end the session (pytest.exit crashes it): it errors this
            # test and stops, and the controller stops the session with this line.
            request.session.shouldstop = f"kedit: {exc}"
            pytest.fail(f"kedit: {exc}", pytrace=False)
        pytest.exit(f"kedit: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


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
    with --kedit-update-baseline, a missed threshold is an xfail (recorded as a known failure).
    A case that cannot run (a bad record, an input longer than the model's context) is an error
    of the test's setup, not a failure: it never reached the editor."""

    def attach(record: CaseRecord) -> None:
        # A record that could not be parsed has no case: name it by its test id ("reverse-0042").
        record.case_id = record.case_id or request.node.callspec.id
        record.split = record.split or record.case_id.split("-")[0]
        request.node.user_properties.append((USER_PROPERTY, record.to_json()))
        if kedit_worker.options.report:  # for run.json, which a resumed run is checked against
            request.node.user_properties.append((PROVENANCE_PROPERTY, json.dumps(kedit_worker.provenance())))

    entry = _case_entry(request)
    problem = kedit_worker.unrunnable(entry) if entry is not None else None
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
        if record.error is not None:
            pytest.fail(record.error, pytrace=False)
        if judgement is not None and judgement.verdict == "regressed":
            pytest.fail("\n".join(judgement.regressions), pytrace=False)
        if judgement is not None and judgement.verdict == "known":
            pytest.xfail(judgement.reason)
        if kedit_worker.options.update_baseline and record.failures:
            pytest.xfail("recorded in the baseline as a known failure: " + ", ".join(
                f"{METRICS[metric].label} = {record.metrics[metric]:.4g}" for metric in record.failed_metrics))
        return record

    return run


def _case_entry(request: pytest.FixtureRequest) -> Entry | None:
    """The case parametrized into the requesting test (``conflict_case``, ``round_case``), if any."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    return next((params[b.fixture] for b in BENCHMARKS if b.fixture in params), None)


class KeditReporter:
    """Controller-side hooks: collect case records as reports arrive, print the tables at the end."""

    def __init__(self, collector: Collector):
        self.collector = collector
        self.verdict: SessionVerdict | None = None
        #: cases whose test errored in its setup: their data cannot run
        self.bad_data = 0
        #: pytest-xdist: the line with which a worker stopped the session on a usage error
        self.worker_usage_error: str | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect the record of a case's call; in every report of the case (junitxml writes the
        teardown's), replace the record by one property per metric before junitxml reads them."""
        record, report.user_properties = replace_record(report.user_properties, USER_PROPERTY)
        provenance, report.user_properties = take_property(report.user_properties, PROVENANCE_PROPERTY)
        bad_data = report.when == "setup" and report.failed  # the kedit_run fixture found the case cannot run
        if record is not None and (report.when == "call" or bad_data):
            record.nodeid = report.nodeid
            record.outcome = "error" if record.error else "xfailed" if hasattr(report, "wasxfail") else report.outcome
            self.collector.add(record, json.loads(str(provenance)) if provenance is not None else None)
            self.bad_data += bad_data

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collector.expected = count_cases(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """pytest-xdist: every worker collects the same tests; the controller collects none, so it
        checks the options when the first worker has collected (a worker cannot stop the session)."""
        first = self.collector.expected is None
        self.collector.expected = count_cases(ids)
        if first and self.collector.expected:
            preflight(node.config)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist: a worker finished; keep what it loaded, and the usage error it stopped on."""
        output = getattr(node, "workeroutput", {})
        self.collector.add_process(output.get(PROCESS_OUTPUT))
        if str(output.get("shouldstop") or "").startswith("kedit: "):
            self.worker_usage_error = output["shouldstop"]

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write or judge against the baseline, check the gates; a failed gate fails the session
        even when every case passed. Runs before the terminal summary, and on the controller
        after every xdist worker has finished."""
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

    def write_verdict(self, terminalreporter: pytest.TerminalReporter) -> None:
        """The baseline's lines and the gates, after the tables."""
        if self.verdict is None:
            return
        for line, bad in self.verdict.lines:
            terminalreporter.write_line(line, red=bad)
        gates = gates_markdown(self.verdict.gates, self.collector.options.gate_mode)
        for line in gates.splitlines():
            terminalreporter.write_line(line, red=self.verdict.failed and line.startswith("Gates:"))

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, exitstatus: int,
                                config: pytest.Config) -> None:
        if not self.collector.records:
            self.write_verdict(terminalreporter)
            return
        worker = config.stash[WORKER]
        options = worker.options
        if not self.collector.processes:  # no xdist: this process ran the cases
            self.collector.add_process(worker.process_info())
        run = self.collector.finish(worker.suite, interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
        write = terminalreporter.write_line
        terminalreporter.section(f"kedit: {run.summary['model']} × {run.summary['method']} (protocol: {options.protocol.name})")
        if options.sample is not None:
            write(f"stratified sample of {options.sample} cases per split (by relation, seed {options.seed})")
            write("")
        splits = {record.split for record in run.records}
        tables = [table for benchmark, table in zip(BENCHMARKS, (run.table1, run.table2))
                  if splits & set(splits_of(benchmark))]
        paper = list(tables)
        if options.by_relation:
            tables.append(run.relations)
        for block in (*tables, threshold_summary(run.records, options.thresholds), timing_summary(run.summary)):
            if block:
                for line in block.splitlines():
                    write(line)
                write("")
        if self.bad_data:
            write(f"{self.bad_data} case{'s' if self.bad_data != 1 else ''} could not run: bad data "
                  "(the errors above; not counted as threshold failures)", red=True)
        if options.resume:
            write(f"resumed {options.report}: {self.collector.reused} cases reported from their records, "
                  f"{len(self.collector.records) - self.collector.reused} run")
        if options.report:
            write(f"report written to {options.report}")
        if options.html:
            from pytest_kedit.report.html import write_html_report

            key = (run.summary["model"], run.summary["method"])
            try:
                write_html_report(options.html, {key: (run.summary, run.records)},
                                  {key: [options.report] if options.report else []})
                write(f"visual report written to {options.html}")
            except KeditError as exc:
                write(f"kedit: visual report not written: {exc}", red=True)
        self.write_verdict(terminalreporter)
        self.write_step_summary(terminalreporter, run.summary, paper)

    def write_step_summary(self, terminalreporter: pytest.TerminalReporter, summary: dict[str, Any],
                           tables: list[str]) -> None:
        """Under GitHub Actions (GITHUB_STEP_SUMMARY set): append the tables and the gates to the
        job summary; a file that cannot be written is a red line, not a lost run."""
        shard = f" (shard {summary['shard']})" if summary.get("shard") else ""
        gates = gates_markdown(self.verdict.gates, self.collector.options.gate_mode) if self.verdict else ""
        try:
            append_step_summary(run_markdown(f"kedit: {summary['model']} × {summary['method']}{shard}", tables, gates))
        except KeditError as exc:
            terminalreporter.write_line(f"kedit: {exc}", red=True)
