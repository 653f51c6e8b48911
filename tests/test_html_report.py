"""The visual report: what its figures show, the page's structure and numbers, its geometry, the
``--html`` / ``--kedit-html`` entry points, and the page in a real browser."""

from __future__ import annotations

import dataclasses
import random
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_kedit.benchmark.plans import PERPLEXITY, norm_name
from pytest_kedit.benchmark.registry import CONFLICT_EDIT, METRICS, SPLITS, splits_of
from pytest_kedit.ci.comparison import compare_runs
from pytest_kedit.cli.main import main
from pytest_kedit.dataset.sources import Suite, load_suite
from pytest_kedit.errors import KeditError
from pytest_kedit.report import html as html_report
from pytest_kedit.report.figure_data import (
    CURVE_METRICS,
    conflict_panels,
    distortion_cases,
    distortion_panel,
    flipped_cases,
    report_runs,
    round_edit_labels,
    stream_curves,
)
from pytest_kedit.results.aggregation import aggregate, intervals
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import load_runs, write_report

pytest.importorskip("matplotlib", reason="the visual report needs the html extra: pip install 'pytest-kedit[html]'")

from run_summaries import run_summary

from pytest_kedit.report import canvas as figure_canvas  # noqa: E402  (after the skip: it imports matplotlib)
from pytest_kedit.report import figures
from pytest_kedit.results.summary import RunData, RunSummary

MODEL = "smollm2-135m"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
#: item -> how many the page promises for :func:`runs` (six splits, two methods; a per-split item
#: for each split, the conflict scatter for the five scores of ConflictEdit)
ITEMS = {"table1": 1, "table2": 1, "table3": 1, "cell-comparison": 6, "stream-curve": 9, "conflict-scatter": 5,
         "relation-heatmap": 6, "paired-differences": 6, "provenance": 1}


@pytest.fixture(scope="module")
def suite() -> Suite:
    return load_suite(None, list(SPLITS))


def synthetic_record(case: Any, method: str, rng: random.Random) -> CaseRecord:
    """The record of ``case`` had an editor given it random probabilities: every fact its
    plan probes (and a stream's perplexities and update norm), scored by its split, so the record
    is what a run would write."""
    split = SPLITS[case.split]
    p = {}
    for stage in split.plan(case):
        p[stage.state] = {name: 0.002 + 0.7 * rng.random() ** 2 for name, _ in stage.probes}
        p[stage.state] |= {PERPLEXITY: 10 + rng.random()} if stage.perplexity else {}
        p[stage.state] |= {norm_name("lm.weight"): rng.random() / 10} if stage.norms else {}
    scores = split.score(case, p)
    return CaseRecord(case.case_id, case.split, case.relation_group, getattr(case, "arity", None), MODEL, method,
                      metrics=scores.values, probabilities=p, timings={"edit": 0.5, "probe": 0.2, "restore": 0.01},
                      curve=scores.curve)


def synthetic_summary(suite: Suite, method: str) -> RunSummary:
    return run_summary(model=MODEL, method=method, data=RunData(suite.source, suite.fingerprint, suite.files),
                       hparams={"lr": 0.5}, model_fingerprint="f00d",
                       timings={"model_load": 1.0, "edit": 40.0, "probe": 10.0, "total": 60.0, "processes": 1})


Runs = dict[tuple[str, str], tuple[RunSummary, list[CaseRecord]]]


def runs(suite: Suite, methods: tuple[str, ...] = ("ft", "rome")) -> Runs:
    """Every built-in case run by each method, with seeded random probabilities."""
    out = {}
    for seed, method in enumerate(methods):
        rng = random.Random(seed)
        records = [synthetic_record(case, method, rng) for entries in suite.splits.values() for case in entries]
        out[MODEL, method] = (synthetic_summary(suite, method), records)
    return out


class Page(HTMLParser):
    """The page parsed: every tag closed in order, the promised items, the table cells' numbers,
    the text of each item."""

    VOID = {"meta", "br", "img", "hr", "input", "link"}

    def __init__(self, text: str):
        super().__init__()
        self.stack: list[str] = []
        self.items: list[str] = []
        self.item_text: dict[str, list[str]] = {}
        #: (method, split, metric) -> (mean, interval) as printed in Table 1 / Table 2
        self.cells: dict[tuple[str, str, str], list[str]] = {}
        self._method = ""
        self._cell: tuple[str, str, str] | None = None
        self._in_th = False
        self.feed(text)
        self.close()
        assert self.stack == [], f"unclosed tags: {self.stack}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)
        if attributes.get("data-item"):
            self.items.append(str(attributes["data-item"]))
            self.item_text.setdefault(self.items[-1], [])
        if tag == "th":
            self._in_th = True
        if tag == "td" and attributes.get("data-split"):
            self._cell = (self._method, str(attributes["data-split"]), str(attributes["data-metric"]))
            self.cells[self._cell] = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """An SVG element written ``<path .../>``: opened and closed at once."""

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag == "th":
            self._in_th = False
        if tag == "td":
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_th and "tr" in self.stack and data.strip():
            self._method = data.strip()
        if self._cell is not None and data.strip():
            self.cells[self._cell].append(data.strip())
        if self.items and "figure" in self.stack:
            self.item_text[self.items[-1]].append(data)


# -- What the figures show -----------------------------------------------------------------------

def round_record(method: str = "ft", d: float = 0.1, case_id: str = "easy-0000", **changes: Any) -> CaseRecord:
    """A RoundEdit case with o1 German, others French and Italian, o* Spanish."""
    probabilities = {
        "theta": {"German": 0.5, "French": 0.2, "Italian": 0.05},
        "theta_m": {"o*": 0.6, "o1": 0.1},
        "theta_prime": {"o*": 0.3, "German": 0.4, "French": 0.25, "Italian": 0.01},
    }
    record = CaseRecord(case_id, case_id.split("-")[0], "P37", "1-3", MODEL, method,
                        metrics={"succ": 1.0, "d": d, "ir": 0.5, "fr": 0.0}, probabilities=probabilities)
    return dataclasses.replace(record, **changes)


def test_figure5_orders_o1_then_the_others_by_p_theta_then_o_star():
    panel = distortion_panel("ft", round_record(), ("German", "Spanish"))
    assert [(bars.label, bars.role) for bars in panel.objects] == [
        ("German", "o1"), ("French", "other"), ("Italian", "other"), ("Spanish", "o*")]
    assert panel.objects[0].p == {"theta": 0.5, "theta_m": 0.1, "theta_prime": 0.4}
    assert panel.objects[3].p == {"theta_m": 0.6, "theta_prime": 0.3}
    assert [bars.lost for bars in panel.objects[1:3]] == [False, True]
    assert panel.d == pytest.approx(10.0) and panel.ir == pytest.approx(50.0) and panel.p_mid_o1 is None


def test_figure5_without_the_labels_marks_no_object_as_o1():
    panel = distortion_panel("ft", round_record(), None)
    assert [(bars.label, bars.role) for bars in panel.objects] == [
        ("German", "object"), ("French", "object"), ("Italian", "object"), ("o*", "o*")]
    assert panel.p_mid_o1 == 0.1


def bars_of(svg: str, figure_id: str) -> dict[tuple[int, int, str], tuple[float, float, float, float]]:
    """(panel, object, state) -> (left, right, top, bottom) of every bar of the figure, in SVG units."""
    found = {}
    for match in re.finditer(rf'<g id="{figure_id}-p(\d+)-o(\d+)-(\w+)">.*?<path d="([^"]*)"', svg, re.DOTALL):
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", match.group(4))]
        xs, ys = numbers[0::2], numbers[1::2]
        found[int(match.group(1)), int(match.group(2)), match.group(3)] = (min(xs), max(xs), min(ys), max(ys))
    return found


def test_figure5_draws_each_bar_in_its_place_with_its_height():
    panels = [distortion_panel("ft", round_record(), ("German", "Spanish")),
              distortion_panel("rome", round_record("rome", probabilities={
                  "theta": {"German": 0.5, "French": 0.2, "Italian": 0.05}, "theta_m": {"o*": 0.9, "o1": 0.02},
                  "theta_prime": {"o*": 0.05, "German": 0.7, "French": 0.1, "Italian": 0.1}}), ("German", "Spanish"))]
    svg = figures.distortion_figure("fig", panels)
    bars = bars_of(svg, "fig")
    expected = {(number, position, state): p for number, panel in enumerate(panels)
                for position, objects in enumerate(panel.objects) for state, p in objects.p.items()}
    assert set(bars) == set(expected)
    # left to right: panel, then object, then θ, θm, θ'
    order = sorted(expected, key=lambda key: (key[0], key[1], ("theta", "theta_m", "theta_prime").index(key[2])))
    lefts = [bars[key][0] for key in order]
    assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts)
    # every bar stands on the same baseline and its height is p on one scale (coordinates have two decimals)
    assert len({round(bottom, 1) for _, _, _, bottom in bars.values()}) == 1
    tallest = max(expected, key=expected.__getitem__)
    scale = (bars[tallest][3] - bars[tallest][2]) / expected[tallest]
    assert all(abs(bottom - top - scale * expected[key]) < 0.03 for key, (_, _, top, bottom) in bars.items())
    assert "D = 10.00, IR = 50.00" in svg and "o1: German" in svg and "o*: Spanish" in svg
    lost, kept = (re.search(rf'<text style="[^"]*fill: {colour}[^"]*"[^>]*>{name}</text>', svg)
                  for colour, name in ((figure_canvas.LOST_COLOUR, "Italian"), (figure_canvas.KEPT_COLOUR, "French")))
    assert lost and kept
    assert "<title>ft: o1: German, θ': p = 0.4</title>" in svg


def test_the_default_cases_are_the_largest_and_the_median_distortion_of_each_method(suite: Suite):
    by_method = {}
    for method, ds in (("ft", {"easy-0000": 0.1, "easy-0001": 0.5, "easy-0002": 0.3}), ("rome", {"easy-0000": 0.9})):
        records = [round_record(method, d, case_id) for case_id, d in ds.items()]
        by_method[MODEL, method] = (synthetic_summary(suite, method), records)
    rows = report_runs(by_method)
    choices = distortion_cases(rows)
    assert [(c.case_id, c.reasons) for c in choices] == [
        ("easy-0000", ("largest D for rome", "median D for rome")),
        ("easy-0001", ("largest D for ft",)),
        ("easy-0002", ("median D for ft",)),
    ]
    assert distortion_cases(rows, ["easy-0002"]) == choices
    with pytest.raises(KeditError, match="no run has this case"):
        distortion_cases(rows, ["easy-0099"])


def test_a_conflict_case_cannot_be_figure5(suite: Suite):
    rows = report_runs(runs(suite))
    with pytest.raises(KeditError, match="Figure 5 shows RoundEdit cases"):
        distortion_cases(rows, ["reverse-0001"])


def test_o1_and_o_star_come_from_the_runs_data_while_it_is_unchanged(suite: Suite):
    found = round_edit_labels(synthetic_summary(suite, "ft"))
    assert found.unavailable is None and found.labels["easy-0000"] == ("German", "Spanish")
    changed = dataclasses.replace(synthetic_summary(suite, "ft"), data=RunData(suite.source, "0" * 64, suite.files))
    assert round_edit_labels(changed) == ({}, f"its data {suite.source} has changed since the run (another fingerprint)")
    assert round_edit_labels(run_summary(data=RunData(None, None, {}))).unavailable


def test_the_conflict_scatter_puts_a_case_above_the_diagonal_exactly_when_it_counts(suite: Suite):
    rows = report_runs(runs(suite))
    panels = conflict_panels(rows)
    assert [(p.split, p.metric) for p in panels] == [
        (split, m) for split in splits_of(CONFLICT_EDIT) for m in SPLITS[split].metrics if m.startswith("cs")]
    for panel in panels:
        for series, run in zip(panel.series, rows):
            assert series.mean == run.result[panel.split][panel.metric]
            assert all((point.p_new > point.p_old) == (point.score == 1) for point in series.points)


def test_the_flipped_cases_are_the_pairs_mcnemar_counts(suite: Suite):
    (_, a), (_, b) = runs(suite).values()
    flipped = flipped_cases(a, b)
    comparison = compare_runs(a, b)
    for split in comparison.splits:
        for metric in split.metrics:
            if metric.flips is not None:
                mine = [f for f in flipped if f.split == split.split and f.metric == metric.metric]
                assert sum(f.value_a > f.value_b for f in mine) == metric.flips.pass_to_fail
                assert sum(f.value_a < f.value_b for f in mine) == metric.flips.fail_to_pass


def stream_record(method: str, every: int, locality: list[float], case_id: str = "sequential-0000") -> CaseRecord:
    """A 100-edit stream checkpointed every ``every`` edits: at checkpoint k (from 1) ES = 1 - k/100,
    the PPL ratio 1 + k/10, locality ``locality[k - 1]``, the update norm n/100 after edit n; its
    collapse point the first checkpoint with locality under 1/2 (the PPL ratio stays under 2)."""
    checkpoints = [{"edits": n, "es": 1 - k / 100, "ppl": 1 + k / 10, "loc": locality[k - 1], "norm": n / 100}
                   for k, n in enumerate(range(every, 101, every), start=1)]
    collapse = next((point["edits"] for point in checkpoints if point["loc"] < 0.5), 100)
    last = {key: value for key, value in checkpoints[-1].items() if key != "edits"}
    return CaseRecord(case_id, "sequential", "stream", None, MODEL, method, metrics={**last, "collapse_at": float(collapse)},
                      curve={"schedule": {"edits": 100, "batch": 1, "every": every, "scheme": "final"},
                             "checkpoints": checkpoints,
                             "batches": [{"edits": n, "norm": n / 100, "norms": {"w": n / 100}} for n in range(1, 101)]})


def test_the_curves_are_one_figure_per_metric_one_line_per_run_with_the_collapse_points(tmp_path: Path, suite: Suite):
    ft = [stream_record("ft", 10, [1.0, 0.9, 0.8, 0.4, 0.3, 0.6, 0.2, 0.2, 0.1, 0.1]),
          stream_record("ft", 20, [1.0, 1.0, 1.0, 1.0, 0.9], "sequential-0001")]
    rome = [stream_record("rome", 10, [1.0] * 10)]
    folders = [tmp_path / "ft", tmp_path / "rome"]
    for folder, records in zip(folders, (ft, rome)):
        write_report(folder, synthetic_summary(suite, records[0].method), records)
    runs_read = load_runs(folders)
    panels = stream_curves(report_runs(runs_read.by_key))
    assert [panel.metric for panel in panels] == ["es", "loc", "ppl", "norm"]  # the metrics the streams have, in order
    assert set(CURVE_METRICS) >= {"es", "gs", "es_imm", "gs_imm", "retention", "spec", "loc", "ppl", "norm"}
    for panel in panels:
        assert [(line.run, line.position) for line in panel.lines] == [("ft", 0), ("rome", 1)]
        ft_line, rome_line = panel.lines
        assert (ft_line.collapses, ft_line.streams, rome_line.collapses) == ((40,), 2, ())
        assert ft_line.legend == "ft (2 streams): 1 collapsed, at 40 edits"
        assert rome_line.legend == "rome: no collapse in 100 edits"
    es, loc, ppl, norm = panels
    # ft's line: the mean of its two streams where both have a checkpoint (every 20 edits), ES ×100 as in Table 3
    assert es.lines[0].edits == (20, 40, 60, 80, 100)
    assert es.lines[0].values == pytest.approx([100 * ((1 - 2 * j / 100) + (1 - j / 100)) / 2 for j in range(1, 6)])
    assert loc.lines[0].values == pytest.approx([100 * (0.9 + 1.0) / 2, 100 * (0.4 + 1.0) / 2, 100 * (0.6 + 1.0) / 2,
                                                 100 * (0.2 + 1.0) / 2, 100 * (0.1 + 0.9) / 2])
    assert ppl.lines[1].edits == tuple(range(10, 101, 10)) and ppl.lines[1].values == pytest.approx([1 + k / 10 for k in range(1, 11)])
    assert (loc.collapse_level, ppl.collapse_level, es.collapse_level) == (50, 2, None)
    assert norm.lines[1].edits == tuple(range(1, 101)) and norm.lines[1].values[-1] == 1.0  # after every batch, as it is
    out = tmp_path / "page.html"
    assert main(["report", *map(str, folders), "--html", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    parsed = Page(page)
    assert parsed.items.count("stream-curve") == 4 and '<section id="streams">' in page
    curves = "".join(parsed.item_text["stream-curve"])  # the captions and the SVGs' text: a legend entry per figure and run
    assert curves.count("ft (2 streams): 1 collapsed, at 40 edits") == 4 and curves.count("rome: no collapse in 100 edits") == 4
    assert "ES (final)" in curves and "ES (immediate)" not in curves  # a scheme the streams did not score is not drawn
    paper_only = html_report.html_report({key: (summary, [r for r in records if r.split != "sequential"])
                                          for key, (summary, records) in runs(suite, ("ft",)).items()})
    assert 'id="streams"' not in paper_only


# -- The page ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(suite: Suite) -> str:
    return html_report.html_report(runs(suite), cases=["hard-0003"])


def test_the_page_parses_and_holds_every_promised_item(suite: Suite, page: str):
    parsed = Page(page)
    rows = report_runs(runs(suite))
    expected = {**ITEMS, "figure5": len(distortion_cases(rows, ["hard-0003"]))}
    assert {item: parsed.items.count(item) for item in expected} == expected
    assert "hard-0003" in "".join(parsed.item_text["figure5"]) and "asked for with --case" in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") \
        .replace('xmlns:xlink="http://www.w3.org/1999/xlink"', "")
    assert "src=" not in page and "href=\"http" not in page  # nothing to fetch
    ids = re.findall(r' id="([^"]*)"', page)
    assert len(ids) == len(set(ids))


def test_the_tables_and_charts_print_the_runs_aggregate(suite: Suite, page: str):
    parsed = Page(page)
    for (_, method), (_, records) in runs(suite).items():
        result, bounds = aggregate(records), intervals(records)
        for split, values in bounds.items():
            for metric, (low, high) in values.items():
                if split == "sequential" and not METRICS[metric].percent:  # Table 3 shows ratios as table3.md does
                    assert parsed.cells[method, split, metric] == [f"{result[split][metric] / 100:.2f}",
                                                                   f"[{low / 100:.2f}, {high / 100:.2f}]"]
                else:
                    assert parsed.cells[method, split, metric] == [f"{result[split][metric]:.2f}", f"[{low:.1f}, {high:.1f}]"]
        charts = "".join(parsed.item_text["cell-comparison"])
        assert all(f"{result[split][metric]:.2f}" in charts for split in bounds for metric in bounds[split])
        scatter = "".join(parsed.item_text["conflict-scatter"])
        assert f"{method}: CS_imp {result['reverse']['cs_imp']:.2f}" in scatter


def test_the_provenance_says_whether_the_run_finished(suite: Suite):
    finished = html_report.html_report(runs(suite, ("ft",)))
    assert "<tr><th>complete</th><td>yes</td></tr>" in finished and "f00d" in finished and "lr" in finished
    summary, records = runs(suite, ("ft",))[MODEL, "ft"]
    stopped = html_report.html_report({(MODEL, "ft"): (dataclasses.replace(summary, complete=False), records)})
    assert "<tr><th>complete</th><td>no: the run stopped before its last case</td></tr>" in stopped
    assert "paired-differences" not in stopped  # one run: nothing to compare


def test_without_matplotlib_html_fails_in_one_line_naming_the_extra(monkeypatch, tmp_path: Path, suite: Suite, capsys):
    folder = tmp_path / "run"
    summary, records = runs(suite, ("ft",))[MODEL, "ft"]
    write_report(folder, summary, records)
    find_spec = html_report.importlib.util.find_spec
    monkeypatch.setattr(html_report.importlib.util, "find_spec",
                        lambda name, *args: None if name == "matplotlib" else find_spec(name, *args))
    assert main(["report", str(folder), "--html", str(tmp_path / "out.html")]) == 2
    err = capsys.readouterr().err
    assert err == f"kedit: error: {html_report.MISSING_EXTRA}\n" and "pytest-kedit[html]" in err
    assert not (tmp_path / "out.html").exists()
    assert main(["report", str(folder)]) == 0  # the tables need no matplotlib


def test_without_matplotlib_kedit_html_is_a_usage_error_before_any_case(monkeypatch, pytester: pytest.Pytester):
    find_spec = html_report.importlib.util.find_spec
    monkeypatch.setattr(html_report.importlib.util, "find_spec",
                        lambda name, *args: None if name == "matplotlib" else find_spec(name, *args))
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess("--kedit-html=page.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"kedit: {html_report.MISSING_EXTRA}" in result.stderr.str()


def test_kedit_report_html_merges_runs_and_adds_a_case(tmp_path: Path, suite: Suite, capsys):
    folders = []
    for (_, method), (summary, records) in runs(suite).items():
        folders.append(str(tmp_path / method))
        write_report(folders[-1], summary, records)
    out = tmp_path / "report.html"
    assert main(["report", *folders, "--html", str(out), "--case", "easy-0005"]) == 0
    captured = capsys.readouterr()
    assert "Table 1" in captured.out and f"visual report written to {out}" in captured.err
    parsed = Page(out.read_text(encoding="utf-8"))
    assert parsed.items.count("paired-differences") == 6 and "easy-0005" in "".join(parsed.item_text["figure5"])
    assert str(tmp_path / "ft") in "".join(parsed.item_text["provenance"])
    assert main(["report", *folders, "--html", str(out), "--case", "coverage-0001"]) == 2
    assert "Figure 5 shows RoundEdit cases" in capsys.readouterr().err
    assert main(["report", *folders, "--case", "easy-0005"]) == 2
    assert "give --html FILE too" in capsys.readouterr().err


@pytest.mark.slow
def test_92_cases_and_a_stream_by_4_methods_make_a_page_under_2_mb(suite: Suite):
    page = html_report.html_report(runs(suite, ("ft", "rome", "memit", "mle")))
    assert [sum(len(entries) for split, entries in suite.splits.items() if split != "sequential"),
            len(suite.splits["sequential"])] == [92, 1]
    assert len(page.encode("utf-8")) < 2_000_000


@pytest.mark.slow
def test_the_plugin_and_the_tables_import_no_matplotlib():
    code = ("import sys, pytest_kedit.plugin, pytest_kedit.cli.main, pytest_kedit.report.html, pytest_kedit.results.tables; "
            "print('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


@pytest.mark.slow
def test_kedit_html_writes_the_page_at_the_end_of_a_run(pytester: pytest.Pytester, tiny_model_dir: Path,
                                                        tiny_ft_hparams: Path, tmp_path: Path):
    for suite_file in (Path(__file__).resolve().parents[1] / "suites").glob("test_*_edit.py"):  # the paper's suites
        pytester.makepyfile(**{suite_file.stem: suite_file.read_text()})
    out = tmp_path / "page.html"
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", f"--kedit-model={tiny_model_dir}", f"--kedit-hparams={tiny_ft_hparams}",
        "--kedit-split=reverse,easy", "--kedit-limit=1", f"--kedit-html={out}", *(f"--kedit-threshold={m}=off" for m in METRICS
                                                                                   if METRICS[m].default_threshold))
    result.assert_outcomes(passed=2)
    assert f"visual report written to {out}" in result.stdout.str()
    parsed = Page(out.read_text(encoding="utf-8"))
    assert {"table1", "table2", "figure5", "conflict-scatter", "provenance"} <= set(parsed.items)


# -- In a browser --------------------------------------------------------------------------------

def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``page`` with a fresh profile, logging the page's console to stderr."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
                           "--v=0", *args, page.as_uri()], capture_output=True, text=True, timeout=180, check=True)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed: apt-get install -y chromium "
                                                  "(.ci/run installs it in CI)")
def test_the_page_renders_in_chromium_without_console_errors(tmp_path: Path, page: str):
    from PIL import Image

    probe = tmp_path / "probe.html"
    probe.write_text('<!DOCTYPE html><html><body><script>console.error("kedit-probe")</script></body></html>')
    assert any("kedit-probe" in line for line in console_messages(chromium(tmp_path, probe, "--dump-dom").stderr))

    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    dom = chromium(tmp_path, path, "--dump-dom")
    assert console_messages(dom.stderr) == []
    assert dom.stdout.count('data-item="') == page.count('data-item="') and dom.stdout.count("<svg") == page.count("<svg")
    screenshot = tmp_path / "report.png"
    shot = chromium(tmp_path, path, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={screenshot}")
    assert console_messages(shot.stderr) == []
    image = Image.open(screenshot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    white = next((count for count, colour in colours if colour == (255, 255, 255)), 0)
    assert len(colours) > 50 and white < 0.97 * image.width * image.height

