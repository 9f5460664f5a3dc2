"""The evaluation corpus of ``slmtok bench``: audio files in named subsets, with optional transcripts.

``--data`` takes ``[SUBSET=]PATH`` entries, where ``PATH`` is

- an audio file or a folder (searched recursively); a transcript is read from a ``.txt`` file beside
  each audio file with the same stem, if there is one;
- a ``.jsonl`` manifest, one object per line: ``path`` (relative to the manifest's folder), and optional
  ``id``, ``text`` (transcript), ``subset``, ``offset``/``start`` and ``duration`` (seconds).

Subsets (e.g. ``real`` and ``synthetic``) are reported separately. The subset is ``SUBSET=`` if given,
else the manifest's ``subset`` field, else the folder's (or file's) name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from slmtok.errors import SlmtokError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".g722")


@dataclass(frozen=True)
class CorpusItem:
    """One evaluation file: a unique ``id`` (``subset/relative/path``), the audio, and its transcript."""

    id: str
    path: Path
    subset: str
    text: str | None = None
    start: float = 0.0
    duration: float | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def _split(entry: str) -> tuple[str | None, Path]:
    name, sep, rest = entry.partition("=")
    if sep and name and "/" not in name and not Path(entry).exists():
        return name, Path(rest)
    return None, Path(entry)


def _sidecar_text(path: Path) -> str | None:
    txt = path.with_suffix(".txt")
    return txt.read_text(encoding="utf-8").strip() or None if txt.is_file() else None


def _from_manifest(path: Path, subset: str | None) -> list[CorpusItem]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            raw = row.get("path") or row.get("audio_filepath") or row["audio"]
        except (json.JSONDecodeError, KeyError, AttributeError):
            raise SlmtokError(f"{path}:{number}: expected a JSON object with a 'path'") from None
        audio = Path(raw) if Path(raw).is_absolute() else path.parent / raw
        if not audio.is_file():
            raise SlmtokError(f"{path}:{number}: no such audio file {audio}")
        name = subset or row.get("subset") or path.stem
        ident = row.get("id") or str(Path(raw).with_suffix(""))
        items.append(
            CorpusItem(
                id=f"{name}/{ident}",
                path=audio,
                subset=name,
                text=row.get("text"),
                start=float(row.get("offset", row.get("start", 0.0)) or 0.0),
                duration=None if row.get("duration") is None else float(row["duration"]),
            )
        )
    return items


def load_corpus(entries: list[str]) -> list[CorpusItem]:
    """Expand ``[SUBSET=]PATH`` entries into corpus items, in order; ids must be unique.

    Raises ``SlmtokError`` for a missing path, a folder without audio, or a bad manifest line.
    """
    items: list[CorpusItem] = []
    for entry in entries:
        subset, path = _split(entry)
        if not path.exists():
            raise SlmtokError(f"no such corpus path: {path}")
        if path.is_file() and path.suffix.lower() == ".jsonl":
            items.extend(_from_manifest(path, subset))
        elif path.is_file():
            name = subset or path.parent.name or "data"
            items.append(CorpusItem(f"{name}/{path.stem}", path, name, _sidecar_text(path)))
        else:
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
            if not files:
                raise SlmtokError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {path}")
            name = subset or path.resolve().name
            for f in files:
                rel = f.relative_to(path).with_suffix("")
                items.append(CorpusItem(f"{name}/{rel.as_posix()}", f, name, _sidecar_text(f)))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise SlmtokError(f"corpus file id {item.id!r} appears twice; give the subsets different names")
        seen.add(item.id)
    if not items:
        raise SlmtokError("the corpus is empty")
    return items


def corpus_fingerprint(items: list[CorpusItem]) -> str:
    """sha256 over ids, transcripts, segments and file sizes: changes when the corpus does."""
    digest = hashlib.sha256()
    for item in items:
        size = item.path.stat().st_size if item.path.exists() else -1
        digest.update(json.dumps([item.id, item.text, item.start, item.duration, size]).encode())
    return digest.hexdigest()
