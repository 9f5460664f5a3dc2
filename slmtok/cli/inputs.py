"""Collect the inputs of a command: audio files, folders (searched recursively) and manifests.

Manifests:
- TSV: fairseq style (first line a root folder, then ``relative/path<TAB>n_samples``), or one path per
  line (extra tab-separated columns ignored), relative paths resolved against the manifest's folder;
- JSONL: one object per line with ``path`` (or ``audio_filepath``/``audio``), optional ``id``,
  ``offset``/``start`` and ``duration`` (seconds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from slmtok.errors import SlmtokError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".g722")
MANIFEST_EXTENSIONS = (".tsv", ".jsonl")


@dataclass(frozen=True)
class InputItem:
    """One unit of work: a file (or a segment of it) and the relative name its output gets."""

    path: Path
    name: Path  # output name without extension, relative to the output folder
    start: float = 0.0
    duration: float | None = None

    @property
    def label(self) -> str:
        if self.start or self.duration is not None:
            end = "" if self.duration is None else f"{self.start + self.duration:g}"
            return f"{self.path}[{self.start:g}:{end}]"
        return str(self.path)


def collect(paths: list[str], extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[InputItem]:
    """Expand ``paths`` into input items, in order. Raises ``SlmtokError`` for a missing path, an empty
    folder, or a bad manifest line."""
    items: list[InputItem] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SlmtokError(f"no such file or folder: {path}")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not found:
                raise SlmtokError(f"no {'/'.join(e.lstrip('.') for e in extensions)} files under {path}")
            items += [InputItem(p, p.relative_to(path).with_suffix("")) for p in found]
        elif path.suffix.lower() == ".tsv" and ".tsv" not in extensions:
            items += _read_tsv(path)
        elif path.suffix.lower() == ".jsonl" and ".jsonl" not in extensions:
            items += _read_jsonl(path)
        else:
            items.append(InputItem(path, Path(path.stem)))
    names = {}
    for item in items:
        if item.name in names and names[item.name] != item:
            raise SlmtokError(
                f"two inputs would write the same output {item.name}: {names[item.name].label} and {item.label}"
            )
        names[item.name] = item
    return items


def _read_tsv(manifest: Path) -> list[InputItem]:
    lines = [ln.rstrip("\n") for ln in manifest.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise SlmtokError(f"empty manifest: {manifest}")
    root = manifest.parent
    first = lines[0].split("\t")
    if len(first) == 1 and Path(first[0]).is_dir():  # fairseq: first line is the root folder
        root, lines = Path(first[0]), lines[1:]
    items = []
    for number, line in enumerate(lines, start=1):
        rel = line.split("\t")[0]
        path = Path(rel) if Path(rel).is_absolute() else root / rel
        items.append(
            InputItem(path, Path(rel).with_suffix("") if not Path(rel).is_absolute() else Path(path.stem))
        )
        if not path.exists():
            raise SlmtokError(f"{manifest}, entry {number}: no such file {path}")
    return items


def _read_jsonl(manifest: Path) -> list[InputItem]:
    items = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            raw = row.get("path") or row.get("audio_filepath") or row.get("audio")
            if not isinstance(raw, str):
                raise ValueError("no 'path'")
            start = float(row.get("offset", row.get("start", 0.0)) or 0.0)
            duration = row.get("duration")
            duration = None if duration is None else float(duration)
            if start < 0 or (duration is not None and duration <= 0):
                raise ValueError(f"offset must be >= 0 and duration > 0, got {start} and {duration}")
        except (ValueError, AttributeError) as error:
            raise SlmtokError(f"{manifest}, line {number}: bad manifest entry ({error})") from None
        path = Path(raw) if Path(raw).is_absolute() else manifest.parent / raw
        if not path.exists():
            raise SlmtokError(f"{manifest}, line {number}: no such file {path}")
        if "id" in row:
            name = Path(str(row["id"]))
        elif start or duration is not None:  # segments of one file need names of their own
            end = "end" if duration is None else f"{start + duration:g}"
            name = Path(raw).with_suffix("").with_name(f"{Path(raw).stem}_{start:g}-{end}")
        else:
            name = Path(raw).with_suffix("")
        if name.is_absolute():
            name = Path(name.name)
        items.append(InputItem(path, name, start, duration))
    if not items:
        raise SlmtokError(f"empty manifest: {manifest}")
    return items
