"""Where the outputs of a run go: one file per input item, all checked before anything is written.

- Folder outputs are confined to the folder: a name that is absolute, has a ``..`` component, or whose
  folder resolves (symbolic links followed) outside the output folder is refused.
- Two items never write one file: outputs are compared exactly, and also case- and Unicode-normalisation-
  insensitively where the output folder's filesystem ignores case (macOS, Windows, some mounts).
- No output is one of the run's input files (``resynth in/ -o in/`` would overwrite its own inputs).
- Every file name fits the filesystem's limit (``NAME_MAX`` bytes).

An existing output that is a symbolic link is *replaced* by the new file (the rename in
``slmtok.atomic`` swaps the link itself and never writes through it), so it cannot redirect a write.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from pathlib import Path

from slmtok.atomic import temp_name
from slmtok.errors import OutputError
from slmtok.inputs import InputItem, id_problem


def existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (``.`` for a relative path with none)."""
    path = path if str(path) else Path(".")
    while not path.exists() and path != path.parent:
        path = path.parent
    return path if path.exists() else Path(".")


def name_max(folder: Path) -> int:
    """The longest file name (bytes) the filesystem of ``folder`` (or its nearest existing ancestor)
    accepts; 255 where the system does not say."""
    try:
        return int(os.pathconf(existing_ancestor(folder), "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def case_insensitive(folder: Path) -> bool:
    """Whether the filesystem holding ``folder`` treats names that differ only in case as one.

    Probed on the nearest existing path with a cased letter in its last component: the same entry is
    found under the swapped-case spelling. Without such a component, the platform's default.
    """
    probe = existing_ancestor(folder).absolute()
    for candidate in (probe, *probe.parents):
        name = candidate.name
        if name.swapcase() != name:
            try:
                return os.path.samefile(candidate, candidate.with_name(name.swapcase()))
            except OSError:
                return False
    return sys.platform in ("darwin", "win32")


def folder_outputs(items: list[InputItem], folder: Path, suffix: str) -> list[Path]:
    """``folder / (item.name + suffix)`` for each item, confined to ``folder`` and unique.

    The suffix is appended, never substituted: ``utt.1`` gets ``utt.1.slmtok``. Raises ``OutputError``
    naming the item (its manifest line where it has one).
    """
    root = folder.resolve()
    resolved: dict[Path, Path] = {}  # output folder -> where it really is (symbolic links followed)
    paths = []
    for item in items:
        problem = id_problem(str(item.name)) if str(item.name) != "." else "empty name"
        if problem:
            raise OutputError(f"{item.where}: output name {str(item.name)!r} refused ({problem})")
        path = folder / item.name.parent / (item.name.name + suffix)
        try:
            parent = resolved.get(path.parent) or resolved.setdefault(path.parent, path.parent.resolve())
        except (OSError, RuntimeError) as error:  # a symbolic-link loop
            raise OutputError(
                f"{item.where}: output folder {path.parent} cannot be resolved ({error})"
            ) from None
        if parent != root and root not in parent.parents:
            raise OutputError(
                f"{item.where}: output {path} would be written outside {folder} (through a symbolic link)"
            )
        paths.append(path)
    check_distinct(items, paths)
    return paths


def check_distinct(items: list[InputItem], paths: list[Path]) -> None:
    """Refuse two items with one output file, spelled alike or (on a case-insensitive filesystem)
    alike up to case and Unicode normalisation."""
    folders = {existing_ancestor(parent).resolve() for parent in {p.parent for p in paths}}
    fold = any(case_insensitive(f) for f in folders)
    seen: dict[str, InputItem] = {}
    for item, path in zip(items, paths, strict=True):
        key = os.path.normcase(os.path.abspath(path))
        if fold:
            key = unicodedata.normalize("NFC", key).casefold()
        other = seen.setdefault(key, item)
        if other is not item:
            how = "" if not fold else " (names equal up to case on this filesystem)"
            raise OutputError(
                f"two inputs would write the same output {path}{how}: {other.where} and {item.where}"
            )


def check_writable(items: list[InputItem], paths: list[Path]) -> None:
    """Before any work: no output is a folder, is one of the inputs, or has a name too long for its
    filesystem; every output folder exists or can be made, and is writable. Raises ``OutputError``."""
    inputs = {}
    limits: dict[Path, int] = {}
    for item in items:
        try:
            stat = item.path.stat()
        except OSError:
            continue
        inputs[(stat.st_dev, stat.st_ino)] = item
    for path in paths:
        if path.is_dir():  # renaming onto a folder fails late and leaves the temporary file behind
            raise OutputError(f"output {path} is a folder, not a file")
        try:
            stat = path.stat()
        except (OSError, ValueError):
            stat = None
        if stat is not None and (stat.st_dev, stat.st_ino) in inputs:
            source = inputs[(stat.st_dev, stat.st_ino)]
            raise OutputError(
                f"output {path} is the input {source.label}: writing it would destroy the input"
            )
        limit = limits.get(path.parent) or limits.setdefault(path.parent, name_max(path.parent))
        for part in path.parts:
            try:
                size = len(os.fsencode(part))
            except UnicodeEncodeError:
                raise OutputError(
                    f"cannot write {path}: the name cannot be encoded for the filesystem"
                ) from None
            if size > limit:
                raise OutputError(f"cannot write {path}: the name {part!r} is {size} bytes, over {limit}")
        room = limit - (len(os.fsencode(temp_name(path.name))) - len(os.fsencode(path.name)))
        if len(os.fsencode(path.name)) > room:  # the temporary file beside it is written first
            raise OutputError(
                f"cannot write {path}: its name is {len(os.fsencode(path.name))} bytes; at most {room} fit "
                f"beside its temporary file (names of at most {limit} bytes on this filesystem)"
            )
    for folder in sorted({p.parent for p in paths}):
        existing = existing_ancestor(folder)
        if not existing.is_dir():
            raise OutputError(f"output folder {folder} cannot be made: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"output folder {existing} is not writable")
