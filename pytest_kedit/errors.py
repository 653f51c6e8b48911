"""Errors a user can cause. The plugin turns them into one clear message, never a traceback."""

from __future__ import annotations


class KeditError(Exception):
    """Base class: something the user can fix (a file, an option, a name)."""


class DataError(KeditError):
    """A dataset file or record does not follow the upstream schema.

    The message names the file, the record index and the field.
    """

    def __init__(self, path: str, message: str, record: int | None = None, field: str | None = None):
        self.path = path
        self.record = record
        self.field = field
        #: what is wrong, without the location
        self.message = message
        where = path
        if record is not None:
            where += f", record {record}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class ConfigError(KeditError):
    """A bad option value, model name, method name or hyper-parameter file."""
