"""Collect the inputs of a run: audio files, folders (searched recursively) and manifests.

Each input becomes an ``InputItem``: the file, an optional segment of it, and the ``name`` its output
gets (relative, without the output suffix). A name keeps the whole input name and drops only a known
audio (or token-file) extension: ``utt.1.wav`` is named ``utt.1``, so its outputs are ``utt.1.slmtok``
and ``utt.1.wav``. Segments of one file are named with their exact start and end (``long_0.25-0.75``).

Manifests:
- TSV: fairseq style (first line a root folder, then ``relative/path<TAB>n_samples``), or one path per
  line (extra tab-separated columns ignored), relative paths resolved against the manifest's folder;
- TSV with a header row naming a ``path`` column (optional ``id``, ``offset``/``start``, ``duration``);
- JSONL: one object per line with ``path`` (or ``audio_filepath``/``audio``), optional ``id``,
  ``offset``/``start`` and ``duration`` (seconds);
- Kaldi ``wav.scp`` (with a ``segments`` file beside it), Lhotse cut manifests, folders written by
  Hugging Face ``datasets.save_to_disk``, Parquet files and WebDataset ``.tar`` shards: see
  ``slmtok.input_formats``.

Items of a tar shard or a dataset are not files of their own: their ``source`` says where their bytes
lie, and ``slmtok.encoding.read_item`` reads them.

Names are checked again where outputs are placed (``slmtok.outputs``); an explicit ``id`` that could
never be a safe output name (absolute, with ``..``, empty, control characters) is refused here already.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from decimal import Context, Decimal
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

from slmtok.errors import SlmtokError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".g722")
MANIFEST_EXTENSIONS = (".tsv", ".jsonl")
# extensions dropped from a file named on the command line or in a manifest (FFmpeg reads these too);
# any other extension stays part of the name: ``take.v2`` -> ``take.v2.slmtok``
NAME_EXTENSIONS = (*AUDIO_EXTENSIONS, ".aac", ".aif", ".aiff", ".au", ".caf", ".wma", ".webm", ".mka", ".amr")


@dataclass(frozen=True)
class Source:
    """Where the bytes of an item that is not a file of its own lie, inside the item's ``path``.

    - ``kind="tar"``: a member of an uncompressed tar file: ``member`` its name, ``offset`` the byte
      offset of its data in the tar file, ``size`` its length in bytes;
    - ``kind="hf"``: a row of a folder written by ``datasets.save_to_disk``: ``member`` the audio
      column, ``offset`` the row index, ``split`` the split of a ``DatasetDict`` (``None``: a Dataset);
    - ``kind="parquet"``: a row of a Parquet file (``member`` the audio column, ``offset`` the row).
    """

    kind: Literal["tar", "hf", "parquet"]
    member: str
    offset: int = 0
    size: int = 0
    split: str | None = None

    @property
    def label(self) -> str:
        """``member`` (tar) or ``split[row].column`` (dataset), as a person reads it."""
        if self.kind == "tar":
            return self.member
        return f"{self.split + '/' if self.split else ''}row {self.offset}, column {self.member}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "member": self.member, "offset": self.offset, "size": self.size,
                "split": self.split}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> Source:
        """Inverse of ``to_dict``; ``ValueError`` for anything else."""
        if not isinstance(data, dict) or set(data) != {"kind", "member", "offset", "size", "split"}:
            raise ValueError("a source needs exactly kind, member, offset, size, split")
        if data["kind"] not in ("tar", "hf", "parquet") or not isinstance(data["member"], str):
            raise ValueError(f"bad source kind or member: {data['kind']!r}, {data['member']!r}")
        for key in ("offset", "size"):
            if isinstance(data[key], bool) or not isinstance(data[key], int) or data[key] < 0:
                raise ValueError(f"source {key} must be a whole number >= 0")
        if data["split"] is not None and not isinstance(data["split"], str):
            raise ValueError("source split must be a string or null")
        return cls(**data)


@dataclass(frozen=True)
class InputItem:
    """One unit of work: a file (or a segment of it, in seconds) and the relative name its output gets.

    ``source`` is set for items inside another file (a tar member, a dataset row): ``path`` is then the
    tar file or dataset folder. ``origin`` says where the item was listed (``train.jsonl, line 3``) for
    error messages; it takes no part in comparisons.
    """

    path: Path
    name: Path  # output name without the output suffix, relative to the output folder
    start: float = 0.0
    duration: float | None = None
    origin: str | None = field(default=None, compare=False)
    source: Source | None = None

    @property
    def label(self) -> str:
        """The input as a person reads it: ``path``, ``path::member`` (inside a tar file or dataset), or
        either with ``[start:end]`` (seconds, exact)."""
        text = str(self.path) if self.source is None else f"{self.path}::{self.source.label}"
        if self.start or self.duration is not None:
            end = "" if self.duration is None else segment_end(self.start, self.duration)
            return f"{text}[{exact_seconds(self.start)}:{end}]"
        return text

    @property
    def where(self) -> str:
        """``origin`` if known, else the label: what an error about this item names."""
        return self.origin or self.label


def exact_seconds(value: float) -> str:
    """``value`` written exactly: the shortest decimal that reads back as the same float, without
    exponent or trailing zeros (``1.0`` -> ``1``, ``0.1`` -> ``0.1``, ``1e-07`` -> ``0.0000001``).
    Two different floats never give the same text."""
    return _plain(Decimal(repr(float(value))))


def segment_end(start: float, duration: float) -> str:
    """The end of a segment, ``start + duration`` added exactly in decimal (no float rounding), so that
    two segments with one start but different durations never get the same end."""
    total = Context(prec=2000).add(Decimal(repr(float(start))), Decimal(repr(float(duration))))
    return _plain(total)


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def strip_extension(name: Path, extensions: tuple[str, ...]) -> Path:
    """``name`` without its last suffix if that is one of ``extensions`` (any case); else unchanged."""
    if name.suffix and name.suffix.lower() in extensions:
        return name.with_name(name.name[: -len(name.suffix)])
    return name


def id_problem(text: str) -> str | None:
    """Why ``text`` cannot name an output inside a folder, or ``None`` if it can.

    Refused: empty names, NUL and other control characters, names the filesystem encoding cannot
    represent, absolute names (POSIX or Windows, drive letters included) and any ``..`` component
    (``/`` and ``\\`` both count as separators, so a manifest is safe on every system).
    """
    if not text or text.strip("/") in ("", "."):
        return "empty name"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "name contains a control character"
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return "name cannot be encoded for the filesystem"
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).drive or PureWindowsPath(text).root:
        return "absolute name: outputs must stay inside the output folder"
    if ".." in text.replace("\\", "/").split("/"):
        return "name with '..': outputs must stay inside the output folder"
    return None


def collect(paths: list[str], extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[InputItem]:
    """Expand ``paths`` into input items, in order.

    Raises ``SlmtokError`` for a missing path, an empty folder, a bad manifest line, or two items with
    one name (which would write one output).
    """
    from slmtok import input_formats as formats

    strip = tuple(dict.fromkeys((*extensions, *NAME_EXTENSIONS)))
    audio = extensions == AUDIO_EXTENSIONS
    items: list[InputItem] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SlmtokError(f"no such file or folder: {path}")
        kind = formats.detect(path) if audio else None
        if kind is not None:
            items += formats.read(kind, path, strip)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not found:
                raise SlmtokError(f"no {'/'.join(e.lstrip('.') for e in extensions)} files under {path}")
            items += [InputItem(p, strip_extension(p.relative_to(path), strip)) for p in found]
        elif path.suffix.lower() == ".tsv" and ".tsv" not in extensions:
            items += _read_tsv(path, strip)
        elif path.suffix.lower() == ".jsonl" and ".jsonl" not in extensions:
            items += _read_jsonl(path, strip)
        else:
            items.append(InputItem(path, strip_extension(Path(path.name), strip)))
    check_unique(items)
    return items


def check_unique(items: list[InputItem]) -> None:
    """Refuse two items with one name: they would write one output (even the same input twice)."""
    seen: dict[Path, InputItem] = {}
    for item in items:
        other = seen.setdefault(item.name, item)
        if other is not item:
            same = other == item or (other.path.resolve(), other.start, other.duration, other.source) == (
                item.path.resolve(),
                item.start,
                item.duration,
                item.source,
            )
            what = "the same input is listed twice" if same else "two inputs would write the same output"
            raise SlmtokError(f"{what} ({item.name}): {other.where} and {item.where}")


def _path_name(raw: str, path: Path, strip: tuple[str, ...]) -> Path:
    """The name of a manifest entry without an id: its relative path (absolute: its file name), without
    the audio extension."""
    return strip_extension(Path(path.name) if Path(raw).is_absolute() else Path(raw), strip)


def _read_tsv(manifest: Path, strip: tuple[str, ...]) -> list[InputItem]:
    lines = [
        (number, text)
        for number, text in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1)
        if text.strip()
    ]
    if not lines:
        raise SlmtokError(f"empty manifest: {manifest}")
    root = manifest.parent
    first = lines[0][1].split("\t")
    if len(first) == 1 and Path(first[0]).is_dir():  # fairseq: first line is the root folder
        root, lines = Path(first[0]), lines[1:]
    elif "path" in [column.strip().lower() for column in first] and not (root / first[0]).is_file():
        return _read_tsv_table(manifest, [c.strip().lower() for c in first], lines[1:], strip)
    items = []
    for number, line in lines:
        rel = line.split("\t")[0]
        where = f"{manifest}, line {number}"
        path = Path(rel) if Path(rel).is_absolute() else root / rel
        if not path.exists():
            raise SlmtokError(f"{where}: no such file {path}")
        items.append(InputItem(path, _path_name(rel, path, strip), origin=where))
    return items


def _read_tsv_table(
    manifest: Path, columns: list[str], lines: list[tuple[int, str]], strip: tuple[str, ...]
) -> list[InputItem]:
    """A TSV with a header row: ``path`` (relative to the manifest's folder), optional ``id``,
    ``offset``/``start`` and ``duration`` (seconds); other columns are ignored."""
    if len(set(columns)) != len(columns):
        raise SlmtokError(f"{manifest}, line 1: a column name appears twice in the header")
    rows = []
    for number, line in lines:
        values = line.split("\t")
        if len(values) != len(columns):
            raise SlmtokError(
                f"{manifest}, line {number}: {len(values)} columns, but the header names {len(columns)}"
            )
        row = {key: value for key, value in zip(columns, values, strict=True) if value != ""}
        rows.append((number, row))
    if not rows:
        raise SlmtokError(f"empty manifest: {manifest} (a header row and no entries)")
    return [_row_item(manifest, number, row, strip) for number, row in rows]


def _seconds(row: dict, *keys: str) -> float | None:
    for key in keys:
        if row.get(key) is not None:
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError(f"{key} must be a number of seconds, got {value!r}")
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"{key} must be finite, got {value!r}")
            return number
    return None


def _read_jsonl(manifest: Path, strip: tuple[str, ...]) -> list[InputItem]:
    items = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise SlmtokError(f"{manifest}, line {number}: bad manifest entry ({error})") from None
        items.append(_row_item(manifest, number, row, strip))
    if not items:
        raise SlmtokError(f"empty manifest: {manifest}")
    return items


def _row_item(manifest: Path, number: int, row: object, strip: tuple[str, ...]) -> InputItem:
    """The item of one manifest row (a JSON object, or a TSV row under its header)."""
    where = f"{manifest}, line {number}"
    try:
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        raw = row.get("path") or row.get("audio_filepath") or row.get("audio")
        if not isinstance(raw, str):
            raise ValueError("no 'path'")
        if "\x00" in raw:
            raise ValueError("path contains a NUL character")
        start = _seconds(row, "offset", "start") or 0.0
        duration = _seconds(row, "duration")
        if start < 0 or (duration is not None and duration <= 0):
            raise ValueError(f"offset must be >= 0 and duration > 0, got {start} and {duration}")
        ident = row.get("id")
        if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
            raise ValueError(f"id must be a string, got {ident!r}")
    except (ValueError, AttributeError) as error:
        raise SlmtokError(f"{where}: bad manifest entry ({error})") from None
    path = Path(raw) if Path(raw).is_absolute() else manifest.parent / raw
    if not path.exists():
        raise SlmtokError(f"{where}: no such file {path}")
    if ident is not None:
        name = checked_name(str(ident), where)
    else:
        name = _path_name(raw, path, strip)
        if start or duration is not None:  # segments of one file need names of their own
            end = "end" if duration is None else segment_end(start, duration)
            name = name.with_name(f"{name.name}_{exact_seconds(start)}-{end}")
    return InputItem(path, name, start, duration, origin=where)


def checked_name(ident: str, where: str) -> Path:
    """``ident`` (an id from a manifest) as an output name; ``SlmtokError`` naming ``where`` if it could
    never be a safe one (see ``id_problem``)."""
    problem = id_problem(ident)
    if problem:
        raise SlmtokError(f"{where}: id {ident!r} refused ({problem})")
    return Path(ident)
