"""Exclusive, non-blocking file locks: one scheduler per data_dir, one retrain at a time.

``flock`` locks belong to the open file, so the operating system releases them when the
holder exits, however it exits: a crashed scheduler never leaves a stale lock behind. They
guard processes on one machine (one data_dir); run one scheduler per deployment.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO


class LockHeld(RuntimeError):
    """Another process holds the lock; the message names the file and the holder's PID."""


class FileLock:
    """``with FileLock(path):`` holds the lock or raises LockHeld at once (never waits)."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            message = f"{self.what} already running (PID {holder}, lock {self.path})"
            raise LockHeld(message) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
