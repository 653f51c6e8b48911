"""Lines for the user that arise inside the machinery of a run, such as a damaged cache entry
being rebuilt (:mod:`pytest_kedit.storage.verified` logs them at WARNING).

A :class:`Notices` handler keeps them in the process that logged them; the plugin carries them to
the controller in the tests' user properties, which prints each line once.
"""

from __future__ import annotations

import logging

#: The logger whose warnings are lines for the user.
LOGGER = "pytest_kedit.storage"


class Notices(logging.Handler):
    """Keeps the messages of :data:`LOGGER` at WARNING and above, until taken."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def take(self) -> list[str]:
        """The lines kept since the last call."""
        lines, self.lines = self.lines, []
        return lines

    def install(self) -> None:
        logging.getLogger(LOGGER).addHandler(self)

    def remove(self) -> None:
        logging.getLogger(LOGGER).removeHandler(self)
