"""Progress bars of long work (statistics, training, building a suite), for a terminal and for a log.

On a terminal a bar redraws itself in place, as tqdm does. Anywhere else (a CI log, ``kedit
train-mend > log``) every redraw is one more line, so there a bar draws a line only when at
least :data:`LOG_INTERVAL` seconds and :data:`LOG_SHARE` of its total have passed since the last
one: besides its first and last lines, at most one a minute and ten in all.
"""

from __future__ import annotations

import math
import sys
from typing import IO, Any

from tqdm.auto import tqdm

#: On a non-terminal: the least time between two lines of a bar, in seconds.
LOG_INTERVAL = 60.0
#: On a non-terminal: the least share of a bar's total between two of its lines.
LOG_SHARE = 0.1


def progress_bar(total: int, file: IO[str] | None = None, **options: Any) -> tqdm[Any]:
    """A tqdm bar of ``total`` steps written to ``file`` (default: stderr), with tqdm's
    ``options`` (``desc``, ``unit``, ``initial``, ``disable``, ...); on a non-terminal, with
    the pace of :data:`LOG_INTERVAL` and :data:`LOG_SHARE` whatever ``options`` say."""
    stream = file if file is not None else sys.stderr
    if not stream.isatty():
        # maxinterval: tqdm's monitor thread would otherwise redraw a bar idle for 10 s and drop miniters to 1.
        options |= {"mininterval": LOG_INTERVAL, "maxinterval": math.inf, "miniters": max(1, math.ceil(total * LOG_SHARE))}
    return tqdm(total=total, file=stream, **options)
