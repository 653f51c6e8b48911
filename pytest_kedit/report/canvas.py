"""The canvas the visual report's figures are drawn on: matplotlib's settings for the page,
the colours shared by every figure, panels laid out at fixed sizes, and a figure turned into an
``<svg>`` element to inline.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through pyplot: no global
state, no interactive backend, only the SVG writer. The SVG keeps text as text
(``svg.fonttype: none``) and rasterizes nothing. ``figure_id`` salts matplotlib's own ids, so
that the figures of one page do not clash.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from html import escape
from typing import Any, NamedTuple

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

#: One colour per run, in the report's order (matplotlib's tab10, which stays apart for the colour-blind).
RUN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
#: One scatter marker per run, so that the runs stay apart without colour too.
RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
#: Figure 5's bar colour per model state.
STATE_COLOURS = {"theta": "#9e9e9e", "theta_m": "#f28e2b", "theta_prime": "#4e79a7"}
#: Figure 5's tick colour of a true object that lost probability from θ to θ' (counted by IR), and of one that did not.
LOST_COLOUR, KEPT_COLOUR = "#b2182b", "#1a7837"
#: The colours of a paired difference whose interval lies on the worse side, on the better side, or across 0.
WORSE_COLOUR, BETTER_COLOUR, UNDECIDED_COLOUR = "#b2182b", "#1a7837", "#636363"
MISSING_COLOUR = "#eeeeee"
#: The size in points of the figures' text.
FONT_SIZE = 8
STYLE: dict[Any, Any] = {  # keyed by matplotlib rcParams names
    "svg.fonttype": "none",
    # the browser's fonts draw the text: a short list keeps every <text> element short
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": FONT_SIZE,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
}
#: Where a panel title sits, in axes coordinates. A title given its place is not placed again at
#: every draw by measuring the axes' tick labels.
TITLE_Y = 1.03
#: The width of a bar, or of a group of bars, in units of the x axis (one per bar or group).
BAR_WIDTH = 0.8
#: Matplotlib's own element ids (``figure_1``, ``patch_3``): the same in every figure, so they
#: are dropped; the ids a figure references (clip paths, markers) are hashes salted per figure.
_MATPLOTLIB_GROUP_ID = re.compile(r'<g id="(?:figure|axes|patch|line2d|text|xtick|ytick|matplotlib\.axis|legend|'
                                  r'[A-Za-z]*Collection|[A-Za-z]*Container)_\d+"')
#: A coordinate attribute; its numbers are cut to two decimals (a hundredth of a point).
_GEOMETRY = re.compile(r'\b(d|x|y|width|height|viewBox|transform|points)="([^"]*)"')
_LONG_DECIMAL = re.compile(r"(\d\.\d\d)\d+")


def run_colour(index: int) -> str:
    """The colour of the report's ``index``-th run in every chart."""
    return RUN_COLOURS[index % len(RUN_COLOURS)]


@contextmanager
def drawing(figure_id: str) -> Iterator[None]:
    """The report's matplotlib settings, with ids salted by ``figure_id``."""
    with rc_context({**STYLE, "svg.hashsalt": figure_id}):
        yield


class Margins(NamedTuple):
    """The room around a figure's panels, in inches, for what lies outside them."""

    left: float
    bottom: float
    top: float
    right: float


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """An upper estimate of the width in inches of ``text`` set at ``size`` points. The browser
    sets the text in its own font, so matplotlib's measure would be no more exact."""
    return 0.62 * size / 72 * len(text)


def below_rotated(labels: Sequence[str], degrees: float, size: float = FONT_SIZE) -> float:
    """The room in inches the tick labels take below an axis when rotated by ``degrees``."""
    widest = max((text_width(label, size) for label in labels), default=0.0)
    angle = math.radians(degrees)
    return 0.08 + widest * math.sin(angle) + size / 72 * 1.3 * math.cos(angle)


def panel_row(count: int, width: float, height: float, gap: float, margins: Margins,
            sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` axes in a row, each ``width`` × ``height`` inches, ``gap`` inches
    apart, inside ``margins``. The layout is fixed, not measured: a layout engine or a tight
    crop would draw the figure once more to measure its text. With ``sharey`` the panels share
    the first one's y axis and only it is drawn."""
    total_width = margins.left + count * width + (count - 1) * gap + margins.right
    total_height = margins.bottom + height + margins.top
    figure = Figure(figsize=(total_width, total_height))
    axes: list[Axes] = []
    for index in range(count):
        left = margins.left + index * (width + gap)
        ax = figure.add_axes((left / total_width, margins.bottom / total_height, width / total_width,
                              height / total_height), sharey=axes[0] if sharey and axes else None)
        if sharey and axes:
            # a hidden axis is neither drawn nor measured: the first panel's ticks serve every panel
            ax.yaxis.set_visible(False)
            ax.spines["left"].set_visible(False)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        axes.append(ax)
    return figure, axes


def inline_svg(figure: Figure, tooltips: Mapping[str, str] | None = None) -> str:
    """``figure`` as an inline ``<svg>`` element: without the XML header, metadata, style sheet
    (the page's style has its rule) and matplotlib's own group ids, coordinates to two
    decimals; ``tooltips`` maps an artist's gid to the ``<title>`` a browser shows on hover."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.DOTALL)
    text = re.sub(r'\s*<style type="text/css">.*?</style>', "", text, count=1, flags=re.DOTALL)
    text = _MATPLOTLIB_GROUP_ID.sub("<g", text)
    text = _GEOMETRY.sub(_cut_decimals, text)
    for gid, tip in (tooltips or {}).items():
        text = text.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{escape(tip, quote=False)}</title>', 1)
    return text


def _cut_decimals(attribute: re.Match[str]) -> str:
    name, value = attribute.groups()
    cut = _LONG_DECIMAL.sub(r"\1", value)
    return f'{name}="{cut}"'
