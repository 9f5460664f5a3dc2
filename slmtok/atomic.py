"""Durable atomic file writes, and the clean-up of what a killed writer left behind.

``atomic_path(target)`` yields a temporary path beside ``target``; on success the temporary file is
flushed to disk (``fsync``), renamed onto ``target`` (``os.replace``: a reader sees the old file or the
new one, never a part) and the folder is ``fsync``-ed so that the rename itself survives a power cut.

Temporary files are named ``.<target name>.<host>-<pid>.<random>.slmtok-tmp``: a process killed with
SIGKILL cannot remove its own, so the next run calls ``remove_orphans`` on its output folder, which
removes those whose writer (same host, that PID) is no longer alive and leaves a live writer's alone.

No global state is touched: the temporary file is created with mode ``0o666`` and the kernel applies
the process umask (or the folder's default ACL), exactly as for any new file; ``os.umask`` is never
called (it is process-wide and racy under threads).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from slmtok.errors import OutputError

TMP_SUFFIX = ".slmtok-tmp"
_TMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[0-9a-f]{8}\.slmtok-tmp$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@lru_cache(maxsize=1)
def _host_id() -> str:
    """8 hex digits naming this machine (hostname), so PIDs of another machine are never judged here."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_name(target: str) -> str:
    """The name of a new temporary file for the file named ``target`` (no folder)."""
    return f".{target}.{_host_id()}-{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this machine (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    except OSError:
        return  # e.g. Windows: directory handles cannot be fsync-ed
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class atomic_path:  # noqa: N801 - used as a context manager, reads like a function
    """Context manager yielding a temporary path beside ``path``; on success it is fsync-ed, renamed onto
    ``path`` and the folder fsync-ed; on failure it is removed. The folder must exist and be writable.

    The temporary file already exists (empty, mode ``0o666`` less the umask) when the path is yielded;
    write it by path (``tmp.write_bytes``, ``open(tmp, "wb")``, a library's ``save(str(tmp))``).
    A symlink at ``path`` is replaced, never written through.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise OutputError(f"output folder does not exist: {folder}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
        try:
            self.tmp = folder / temp_name(self.path.name)
            os.close(os.open(self.tmp, flags, 0o666))
        except OSError as error:
            raise OutputError(f"cannot write to {folder}: {error.strerror}") from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.tmp.unlink(missing_ok=True)
            return
        try:
            _fsync_file(self.tmp)
            os.replace(self.tmp, self.path)
        except OSError as error:
            self.tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self.path}: {error.strerror}") from None
        fsync_folder(self.tmp.parent)


def orphan_temps(folder: str | os.PathLike, targets: Iterable[str] | None = None) -> list[Path]:
    """Temporary files in ``folder`` (not its sub-folders) left by dead writers on this machine,
    optionally only those of the files named in ``targets``."""
    folder = Path(folder)
    wanted = None if targets is None else set(targets)
    found = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        match = _TMP_NAME.match(entry.name)
        if match is None or (wanted is not None and match["target"] not in wanted):
            continue
        if match["host"] == _host_id() and not pid_alive(int(match["pid"])):
            found.append(folder / entry.name)
    return sorted(found)


def remove_orphans(
    folder: str | os.PathLike, targets: Iterable[str] | None = None, *, recursive: bool = False
) -> list[Path]:
    """Remove the temporary files a killed writer left in ``folder`` (and, with ``recursive``, in its
    sub-folders, symlinks not followed); returns the removed paths. A live writer's file is kept."""
    folder = Path(folder)
    folders = [folder]
    if recursive and folder.is_dir():
        for root, dirs, _ in os.walk(folder):  # does not descend into linked folders
            folders += [Path(root) / d for d in dirs if not (Path(root) / d).is_symlink()]
    removed = []
    for path in (p for f in folders for p in orphan_temps(f, targets)):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:  # another run removed it first
            pass
    return removed


def open_append(path: str | os.PathLike):
    """Open a log file (e.g. ``metrics.jsonl``) for appending text, creating it if needed, without
    following a symlink: a link planted at ``path`` is refused with ``OutputError``."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP or Path(path).is_symlink():
            raise OutputError(f"refusing to write through a symlink: {path}") from None
        raise OutputError(f"cannot write {path}: {error.strerror}") from None
    return os.fdopen(fd, "a", encoding="utf-8")


def remove_orphans_of(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the temporary files dead writers left for these target files (e.g. the planned outputs of
    a command about to run again); returns the removed paths."""
    by_folder: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        by_folder.setdefault(path.parent, set()).add(path.name)
    return [p for folder, names in by_folder.items() for p in remove_orphans(folder, names)]
