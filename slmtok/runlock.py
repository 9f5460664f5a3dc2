"""One writer per output folder: an advisory lock (``fcntl.flock``) held for the whole run.

The lock file (``.slmtok.lock`` in the output folder) holds the owner's PID for the message a second
run prints. The kernel drops the lock when its holder exits, even by SIGKILL, so a stale lock file
never blocks a later run. Where ``fcntl`` does not exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path

from slmtok.errors import SlmtokError

LOCK_NAME = ".slmtok.lock"


class RunLockedError(SlmtokError):
    """Another live process holds the output folder's lock."""


class RunLock:
    """``with RunLock(folder, "encode-corpus"):`` -- refuse (``RunLockedError``) if another process holds
    it. The folder must exist. Not re-entrant within one process across different ``RunLock`` objects."""

    def __init__(self, folder: str | os.PathLike, what: str) -> None:
        self.folder, self.what = Path(folder), what
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        path = self.folder / LOCK_NAME
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o666)
        except OSError as error:
            raise SlmtokError(f"cannot lock {self.folder}: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunLockedError(
                f"another {self.what} run (pid {holder}) is using {self.folder}; wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock; the file stays (removing it would race a new locker)
            self.fd = None
