"""SIGTERM, as ``timeout``, a cancelled CI job or a scheduler sends it, treated as Ctrl-C.

While installed, SIGTERM raises KeyboardInterrupt in the main thread, so the session stops as
after Ctrl-C: the finished cases are kept, the report is written as not complete, and pytest
exits with its interrupted status. The previous handler is put back by :meth:`Termination.restore`.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class Termination:
    """The SIGTERM handler of a session that runs kedit cases."""

    def __init__(self) -> None:
        #: whether SIGTERM arrived while installed
        self.received = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        """Handle SIGTERM from now on (once; only the main thread can handle signals)."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        self._installed = True

    def restore(self) -> None:
        """Put back the handler SIGTERM had before :meth:`install`."""
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        raise KeyboardInterrupt
