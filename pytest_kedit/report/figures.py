"""The figures of the visual report, drawn with matplotlib as SVG to inline in the page.

Each function takes what :mod:`pytest_kedit.report.figure_data` computed and returns an ``<svg>``
element as text (:mod:`pytest_kedit.report.canvas` draws it). ``figure_id`` makes the figure's
element ids unique in the page: it salts matplotlib's own ids and prefixes the ids given to the
artists a reader may point at (the bars of Figure 5), which also carry a ``<title>`` shown when
the pointer rests on them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.ticker import LogFormatter, NullLocator

from pytest_kedit.benchmark.registry import METRICS, SPLITS, STATES
from pytest_kedit.ci.comparison import MetricComparison
from pytest_kedit.report.canvas import (
    BAR_WIDTH,
    BETTER_COLOUR,
    FONT_SIZE,
    KEPT_COLOUR,
    LOST_COLOUR,
    MISSING_COLOUR,
    RUN_MARKERS,
    STATE_COLOURS,
    STYLE,
    TITLE_Y,
    UNDECIDED_COLOUR,
    WORSE_COLOUR,
    Margins,
    below_rotated,
    drawing,
    inline_svg,
    panel_row,
    run_colour,
    text_width,
)
from pytest_kedit.report.figure_data import (
    DISTORTION_STATES,
    ConflictPanel,
    CurvePanel,
    DistortionPanel,
    ObjectBars,
    PairedComparison,
    RelationHeatmap,
    ReportRun,
)
from pytest_kedit.results.tables import DASH

# -- Per-cell comparison ------------------------------------------------------------------------

def cell_chart(figure_id: str, split: str, runs: Sequence[ReportRun]) -> str:
    """One panel per metric of ``split``: a bar per run with its mean ×100 printed over it, a
    whisker from the low to the high end of its bootstrap interval, and the metric's better
    direction in the title and the axis label."""
    metrics = [m for m in SPLITS[split].metrics if any(m in run.result.get(split, {}) for run in runs)]
    labels = [run.label for run in runs]
    rotation = 30 if len(runs) > 2 else 0
    with drawing(figure_id):
        figure, axes = panel_row(len(metrics), 0.45 + 0.38 * len(runs), 1.7, gap=0.85,
                               margins=Margins(0.6, below_rotated(labels, rotation), 0.3, 0.1))
        for ax, metric in zip(axes, metrics):
            _cell_panel(ax, split, metric, runs, rotation)
        return inline_svg(figure)


def _cell_panel(ax: Axes, split: str, metric: str, runs: Sequence[ReportRun], rotation: float) -> None:
    shown = [(index, run) for index, run in enumerate(runs) if metric in run.result.get(split, {})]
    means = [run.result[split][metric] for _, run in shown]
    lows, highs = zip(*(run.bounds[split][metric] for _, run in shown))
    positions = range(len(shown))
    ax.bar(positions, means, width=BAR_WIDTH, color=[run_colour(index) for index, _ in shown], alpha=0.85)
    ax.vlines(positions, lows, highs, color="black", linewidth=1)
    ax.hlines([*lows, *highs], [x - 0.12 for x in positions] * 2, [x + 0.12 for x in positions] * 2,
              color="black", linewidth=1)
    for x, mean, high in zip(positions, means, highs):
        ax.annotate(f"{mean:.2f}", (x, max(mean, high, 0)), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=FONT_SIZE - 1)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(positions, [run.label for _, run in shown], rotation=rotation,
                  ha="right" if rotation else "center", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(shown) - 0.4)
    if METRICS[metric].binary:
        ax.set_ylim(0, 112)  # a rate: its whole scale, and room for the printed mean
        ax.set_yticks([0, 25, 50, 75, 100])
    else:
        ax.margins(y=0.15)
    ax.set_title(f"{METRICS[metric].label} {METRICS[metric].arrow}", y=TITLE_Y)
    ax.set_ylabel(f"mean ×100, {METRICS[metric].better} is better")


# -- Figure 5 -----------------------------------------------------------------------------------

#: Figure 5's tick labels are cut to this many characters (the bar's tooltip has the whole name).
_NAME_LENGTH = 22
#: Figure 5: inches per object, and the empty object slots between two runs' panels.
_OBJECT_WIDTH = 0.5
_PANEL_GAP = 1
#: The per-relation heatmap: the empty columns between two runs' grids.
_HEATMAP_GAP = 0.5


def bar_gid(figure_id: str, panel: int, position: int, state: str) -> str:
    """The id of the bar of the ``position``-th object of the ``panel``-th panel in ``state``."""
    return f"{figure_id}-p{panel}-o{position}-{state}"


def distortion_figure(figure_id: str, panels: Sequence[DistortionPanel]) -> str:
    """Figure 5 for one case: a panel per run, side by side on one linear probability axis; per
    object a group of bars, one per state that probed it (θ, θm, θ', in that order, coloured
    by :data:`STATE_COLOURS`; the page gives the key). The ticks name o1 and o* (bold) and
    colour every other true object by whether it lost probability from θ to θ' (red: counted
    by IR) or not (green); over each panel, the run and its D and IR ×100.

    The panels are groups of one axes, not axes of their own: an axes costs more to build and
    draw than everything this figure puts in it."""
    starts = _panel_starts([len(panel.objects) for panel in panels])
    names = [_tick_name(bars) for panel in panels for bars in panel.objects]
    overhang = text_width(names[0]) * math.cos(math.radians(30)) - 0.6 * _OBJECT_WIDTH
    positions: list[float] = []
    heights: list[float] = []
    colours: list[str] = []
    gids: list[str] = []
    tooltips: dict[str, str] = {}
    for number, (panel, start) in enumerate(zip(panels, starts)):
        for position, bars in enumerate(panel.objects):
            for state in DISTORTION_STATES:
                if state in bars.p:
                    gid = bar_gid(figure_id, number, position, state)
                    positions.append(_bar_x(start + position, state))
                    heights.append(bars.p[state])
                    colours.append(STATE_COLOURS[state])
                    gids.append(gid)
                    tooltips[gid] = f"{panel.run}: {_object_name(bars)}, {STATES[state]}: p = {bars.p[state]:.4g}"
    with drawing(figure_id):
        figure, (ax,) = panel_row(1, _OBJECT_WIDTH * (starts[-1] + len(panels[-1].objects) + 0.2), 1.7, gap=0,
                                margins=Margins(max(0.55, overhang + 0.05), below_rotated(names, 30), 0.42, 0.1))
        for rectangle, gid in zip(ax.bar(positions, heights, width=BAR_WIDTH / len(DISTORTION_STATES), color=colours),
                                  gids):
            rectangle.set_gid(gid)
        ticks = [start + position for panel, start in zip(panels, starts) for position in range(len(panel.objects))]
        ax.set_xticks(ticks, names, rotation=30, ha="right", rotation_mode="anchor")
        objects = [bars for panel in panels for bars in panel.objects]
        for tick, bars in zip(ax.get_xticklabels(), objects):
            if bars.role in ("o1", "o*"):
                tick.set_fontweight("bold")
            elif bars.role == "other":
                tick.set_color(LOST_COLOUR if bars.lost else KEPT_COLOUR)
        top = ax.get_xaxis_transform()
        for panel, start in zip(panels, starts):
            middle = start + (len(panel.objects) - 1) / 2
            ax.text(middle, 1.03, f"{panel.run}\nD = {_value(panel.d)}, IR = {_value(panel.ir)}", transform=top,
                    ha="center", va="bottom")
        for start in starts[1:]:
            ax.axvline(start - (_PANEL_GAP + 1) / 2, color="#bbbbbb", linewidth=0.8)
        ax.set_xlim(-0.6, starts[-1] + len(panels[-1].objects) - 0.4)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("p(o)")
        return inline_svg(figure, tooltips)


def _panel_starts(sizes: Sequence[int]) -> list[int]:
    """The x of the first object of each panel: panels of ``sizes`` objects, :data:`_PANEL_GAP` apart."""
    starts = [0]
    for size in sizes[:-1]:
        starts.append(starts[-1] + size + _PANEL_GAP)
    return starts


def _bar_x(position: float, state: str) -> float:
    """The centre of the bar in ``state`` of the object at x = ``position``: one slot per state
    of :data:`DISTORTION_STATES`, in that order, so a state the plan did not probe leaves a gap."""
    slot = DISTORTION_STATES.index(state) - (len(DISTORTION_STATES) - 1) / 2
    return position + slot * BAR_WIDTH / len(DISTORTION_STATES)


def _object_name(bars: ObjectBars) -> str:
    if bars.role == "o1":
        return f"o1: {bars.label}"
    if bars.role == "o*" and bars.label != "o*":
        return f"o*: {bars.label}"
    return bars.label


def _tick_name(bars: ObjectBars) -> str:
    name = _object_name(bars)
    return name if len(name) <= _NAME_LENGTH else name[:_NAME_LENGTH - 1] + "…"


def _value(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}"


# -- ConflictEdit at a glance -------------------------------------------------------------------

def conflict_scatter(figure_id: str, panel: ConflictPanel, run_index: Mapping[str, int]) -> str:
    """Every case of the panel as a point (p_θ'(k_o), p_θ'(k_n)) on log-log axes, one colour
    and marker per run (``run_index``: run label -> its position in the report); the diagonal
    p(k_n) = p(k_o) splits the cases the Conflict Score counts (above: the new fact wins) from
    the failures, and a point's distance below it is by how much k_o still wins. A probability
    of 0 is drawn at the axes' lower end."""
    values = [p for series in panel.series for point in series.points for p in (point.p_old, point.p_new)]
    floor = min((p for p in values if p > 0), default=1e-6) / 3
    label = METRICS[panel.metric].label
    legend = [f"{series.run}: {label} {series.mean:.2f} ({sum(point.score for point in series.points):g}/"
              f"{len(series.points)})" for series in panel.series]
    with drawing(figure_id):
        figure, (ax,) = panel_row(1, 2.6, 2.6, gap=0,
                                margins=Margins(0.65, 0.45, 0.1, 0.5 + max(text_width(line) for line in legend)))
        ends = (floor, 1.0)
        ax.fill_between(ends, ends, (1.0, 1.0), color=BETTER_COLOUR, alpha=0.07, linewidth=0)
        ax.fill_between(ends, (floor, floor), ends, color=WORSE_COLOUR, alpha=0.07, linewidth=0)
        ax.plot(ends, ends, color="black", linewidth=0.8, linestyle="--")
        for series, line in zip(panel.series, legend):
            index = run_index[series.run]
            ax.scatter([max(point.p_old, floor) for point in series.points],
                       [max(point.p_new, floor) for point in series.points],
                       s=14, marker=RUN_MARKERS[index % len(RUN_MARKERS)], color=run_colour(index), alpha=0.8,
                       linewidths=0, label=line)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            # plain labels ("1e-05"): the default ones are mathtext, typeset and measured at length
            axis.set_major_formatter(LogFormatter(labelOnlyBase=True))
            axis.set_minor_locator(NullLocator())
        ax.set_xlim(*ends)
        ax.set_ylim(*ends)
        ax.set_xlabel("p_θ'(k_o), the old fact")
        ax.set_ylabel(f"p_θ'({_new_fact(panel.metric)}), the new fact")
        ax.text(0.03, 0.97, f"{label} = 1: the new fact wins", transform=ax.transAxes, va="top", color=BETTER_COLOUR)
        ax.text(0.97, 0.03, "the old fact still wins", transform=ax.transAxes, ha="right", color=WORSE_COLOUR)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
        return inline_svg(figure)


def _new_fact(metric: str) -> str:
    return {"cs": "k_n", "cs_exp": "k_n explicit", "cs_imp": "k_n implied"}[metric]


# -- Sequential editing: the curves -------------------------------------------------------------

#: A curve with at most this many points marks each of them.
_MARKED_POINTS = 30
#: A ratio whose positive values span more than this factor is drawn on a log scale (a perplexity
#: that exploded would flatten every other line).
_LOG_SPAN = 100


def stream_curve(figure_id: str, panel: CurvePanel) -> str:
    """One stream metric against the number of edits made: a line per run in its colour (each
    point marked when there are few), a dashed vertical line in the same colour at each collapse
    point of the run's streams, a dotted horizontal line at the metric's collapse level (PPL
    ratio, locality), the legend (:attr:`CurveLine.legend`) on the right. A share is drawn ×100
    on its whole scale, a ratio as it is, on a log scale when its positive values span more than
    :data:`_LOG_SPAN` times."""
    metric = METRICS[panel.metric]
    legend = [line.legend for line in panel.lines]
    with drawing(figure_id):
        figure, (ax,) = panel_row(1, 3.0, 1.7, gap=0,
                                margins=Margins(0.8, 0.45, 0.3, 0.55 + max(text_width(text) for text in legend)))
        for line, text in zip(panel.lines, legend):
            colour = run_colour(line.position)
            marker = RUN_MARKERS[line.position % len(RUN_MARKERS)] if len(line.edits) <= _MARKED_POINTS else None
            ax.plot(line.edits, line.values, color=colour, linewidth=1.3, marker=marker, markersize=3, label=text)
            for edits in line.collapses:
                ax.axvline(edits, color=colour, linestyle="--", linewidth=0.9)
        if panel.collapse_level is not None:
            ax.axhline(panel.collapse_level, color="black", linestyle=":", linewidth=0.8)
        ax.set_xlim(0, max(line.length for line in panel.lines))
        positive = [value for line in panel.lines for value in line.values if value > 0]
        if metric.percent:
            ax.set_ylim(-3, 103)
        elif positive and max(positive) > _LOG_SPAN * min(positive):
            ax.set_yscale("log")
            # plain labels ("1e+05"): the default ones are mathtext, typeset and measured at length
            ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=True))
            ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("edits made")
        ax.set_ylabel("share ×100" if metric.percent else "ratio")
        ax.set_title(f"{metric.label} {metric.arrow}", y=TITLE_Y)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
        return inline_svg(figure)


# -- Per relation -------------------------------------------------------------------------------

def relation_heatmap(figure_id: str, heatmap: RelationHeatmap) -> str:
    """A grid per run, side by side: a row per relation, a column per metric, each cell the mean
    ×100 of the relation's cases (printed, one decimal) coloured from worst (red) to best
    (green) among the cells of its metric in every run, in the metric's better direction; grey
    where the run has no case of the relation. The grids share one axes, as in
    :func:`distortion_figure`."""
    metrics, relations = heatmap.metrics, heatmap.relations
    scores = _column_scores(heatmap)
    columns = [f"{METRICS[m].label} {METRICS[m].arrow}" for m in metrics]
    rows = [f"{name} (n={n})" if len(heatmap.runs) == 1 else name for name, n in zip(relations, heatmap.counts[0])]
    starts = [run * (len(metrics) + _HEATMAP_GAP) for run in range(len(heatmap.runs))]
    colour_map = colormaps["RdYlGn"]
    cells, colours = [], []
    with drawing(figure_id):
        figure, (ax,) = panel_row(1, 0.45 * (starts[-1] + len(metrics)), 0.2 * len(relations), gap=0,
                                margins=Margins(0.1 + max(text_width(row) for row in rows), below_rotated(columns, 45),
                                                0.25, 0.1))
        for start, grid, score_grid in zip(starts, heatmap.means, scores):
            for row, (values, row_scores) in enumerate(zip(grid, score_grid)):
                for column, (value, score) in enumerate(zip(values, row_scores)):
                    x = start + column
                    cells.append(((x, row), (x + 1, row), (x + 1, row + 1), (x, row + 1)))
                    colours.append(MISSING_COLOUR if score is None else to_hex(colour_map(0.15 + 0.7 * score)))
                    if value is not None:
                        ax.text(x + 0.5, row + 0.5, f"{value:.1f}", ha="center", va="center", fontsize=FONT_SIZE - 1.5)
        ax.add_collection(PolyCollection(cells, facecolors=colours, edgecolors="white", linewidths=0.8))
        top = ax.get_xaxis_transform()
        for start, run in zip(starts, heatmap.runs):
            ax.text(start + len(metrics) / 2, 1.02, run, transform=top, ha="center", va="bottom",
                    fontsize=STYLE["axes.titlesize"])
        ax.set_xlim(0, starts[-1] + len(metrics))
        ax.set_ylim(len(relations), 0)
        ax.set_xticks([start + c + 0.5 for start in starts for c in range(len(metrics))], columns * len(starts),
                      rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks([row + 0.5 for row in range(len(relations))], rows)
        ax.tick_params(length=0)
        ax.set_frame_on(False)
        return inline_svg(figure)


def _column_scores(heatmap: RelationHeatmap) -> list[list[list[float | None]]]:
    """[run][relation][metric] -> 0 (worst) .. 1 (best) within the metric's column over every
    run; 0.5 when the column holds one value."""
    columns: list[list[float]] = [[] for _ in heatmap.metrics]
    for grid in heatmap.means:
        for row in grid:
            for column, value in enumerate(row):
                if value is not None:
                    columns[column].append(value)
    ranges = [(min(values), max(values)) if values else (0.0, 0.0) for values in columns]
    scores: list[list[list[float | None]]] = []
    for grid in heatmap.means:
        scores.append([])
        for row in grid:
            line: list[float | None] = []
            for column, value in enumerate(row):
                low, high = ranges[column]
                if value is None:
                    line.append(None)
                elif math.isclose(low, high):
                    line.append(0.5)
                else:
                    share = (value - low) / (high - low)
                    line.append(share if METRICS[heatmap.metrics[column]].better == "higher" else 1 - share)
            scores[-1].append(line)
    return scores


# -- Paired differences -------------------------------------------------------------------------

def difference_chart(figure_id: str, split: str, paired: Sequence[PairedComparison]) -> str:
    """One panel per metric of ``split`` that some comparison has: per run compared with the
    baseline, the difference B − A of the means (on the tables' scale) over the shared cases as a point and its
    paired bootstrap interval as a whisker, red when the interval lies on the metric's worse
    side (regressed), green when on its better side, grey when it holds 0. A panel per metric
    keeps each on its own scale, as in :func:`cell_chart`."""
    found = {(p.run, m.metric): m for p in paired for s in p.comparison.splits if s.split == split for m in s.metrics}
    metrics = [m for m in SPLITS[split].metrics if any(metric == m for _, metric in found)]
    labels = [p.run for p in paired]
    rotation = 30 if len(labels) > 2 else 0
    with drawing(figure_id):
        figure, axes = panel_row(len(metrics), 0.45 + 0.38 * len(labels), 1.5, gap=0.85,
                               margins=Margins(0.6, below_rotated(labels, rotation), 0.3, 0.1))
        for ax, metric in zip(axes, metrics):
            shown = [(x, label, found[label, metric]) for x, label in enumerate(labels) if (label, metric) in found]
            colours = [WORSE_COLOUR if m.regressed else BETTER_COLOUR if _improved(m)
                       else UNDECIDED_COLOUR for _, _, m in shown]
            ax.vlines([x for x, _, _ in shown], [m.interval[0] for _, _, m in shown], [m.interval[1] for _, _, m in shown],
                      colors=colours, linewidth=1.6)
            ax.scatter([x for x, _, _ in shown], [m.difference for _, _, m in shown], s=16, zorder=3, color=colours)
            ax.axhline(0, color="black", linewidth=0.6)
            ax.set_xticks(range(len(labels)), labels, rotation=rotation, ha="right" if rotation else "center",
                          rotation_mode="anchor")
            ax.set_xlim(-0.6, len(labels) - 0.4)
            ax.set_title(f"{METRICS[metric].label} {METRICS[metric].arrow}", y=TITLE_Y)
            ax.set_ylabel(f"B − {paired[0].baseline}, ×100")
        return inline_svg(figure)


def _improved(comparison: MetricComparison) -> bool:
    """The metric's interval lies entirely on its better side of 0."""
    return all(METRICS[comparison.metric].worse_by(0.0, end) < 0 for end in comparison.interval)
