"""A report folder is written by one run at a time.

The run takes a file lock beside the folder (``DIR.lock``) before any model loads, and says who
holds it in ``DIR.lock.holder`` (process id and host); a second run on the same folder is refused
in one line naming the folder and the holder. The lock is released, and the holder file removed,
when the session ends; a killed run's lock is released by the system with its process.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from pytest_kedit.errors import ConfigError
from pytest_kedit.storage.cache import lock_path


class FolderLock:
    """The lock of the report folder ``folder``, taken by :meth:`acquire`."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.lock = FileLock(str(lock_path(self.folder)), timeout=0)

    @property
    def holder_path(self) -> Path:
        return lock_path(self.folder).with_name(lock_path(self.folder).name + ".holder")

    def acquire(self) -> None:
        """Take the lock; ConfigError naming the folder and the run holding it, or saying why
        the lock cannot be written."""
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
        except Timeout:
            raise ConfigError(f"--kedit-report: {self.folder} is being written by another run ({self.holder()}); "
                              "wait for it to finish, or report into another folder") from None
        except OSError as exc:
            raise ConfigError(f"--kedit-report: cannot lock {self.folder}: {exc.strerror or exc}") from None
        with contextlib.suppress(OSError):  # a full disk: the lock holds without saying who holds it
            self.holder_path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                    "since": time.strftime("%Y-%m-%d %H:%M:%S")}))

    def holder(self) -> str:
        """Who holds the lock, as its holder file says: ``pid 123 on host ci-7 since ...``."""
        try:
            facts = json.loads(self.holder_path.read_text())
            return f"pid {facts['pid']} on host {facts['host']} since {facts['since']}"
        except (OSError, ValueError, TypeError, KeyError):
            return "a run that did not say which"

    def release(self) -> None:
        if self.lock.is_locked:
            self.holder_path.unlink(missing_ok=True)
            self.lock.release()
