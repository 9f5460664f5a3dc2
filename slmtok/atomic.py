"""Atomic file writes: write beside the target, then rename, so a reader never sees a partial file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from slmtok.errors import OutputError


class atomic_path:  # noqa: N801 - used as a context manager, reads like a function
    """Context manager yielding a temporary path beside ``path``; renamed onto ``path`` on success,
    removed on failure. The folder must exist and be writable."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise OutputError(f"output folder does not exist: {folder}")
        try:
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        except OSError as error:
            raise OutputError(f"cannot write to {folder}: {error.strerror}") from None
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
