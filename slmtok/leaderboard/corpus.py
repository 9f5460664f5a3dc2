"""The evaluation corpus of ``slmtok bench``: audio inputs in named subsets, with optional transcripts.

``--data`` takes ``[SUBSET=]PATH`` entries, where ``PATH`` is anything ``slmtok encode`` takes (one
collector, ``slmtok.inputs.collect``): an audio file, a folder (searched recursively), a TSV or JSONL
manifest, a Kaldi ``wav.scp``, a Lhotse manifest, a ``datasets`` folder or a WebDataset ``.tar``. Besides:

- a transcript is read from a ``.txt`` file beside each audio file with the same stem, if there is one;
- a ``.jsonl`` manifest row may carry ``text`` (the transcript) and ``subset``.

Subsets (e.g. ``real`` and ``synthetic``) are reported separately. The subset is ``SUBSET=`` if given,
else the manifest's ``subset`` field, else the manifest's stem or the folder's (or file's folder's) name.
Ids are ``subset/name``, ``name`` being the output name ``slmtok encode`` gives the input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from slmtok.errors import SlmtokError
from slmtok.inputs import AUDIO_EXTENSIONS, InputItem, Source, collect

__all__ = ["AUDIO_EXTENSIONS", "CorpusItem", "corpus_fingerprint", "load_corpus"]


@dataclass(frozen=True)
class CorpusItem:
    """One evaluation input: a unique ``id`` (``subset/name``), the audio (a file, or ``source`` inside
    the file ``path``: a tar member, a dataset row), a segment of it (seconds) and its transcript."""

    id: str
    path: Path
    subset: str
    text: str | None = None
    start: float = 0.0
    duration: float | None = None
    source: Source | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        data["source"] = None if self.source is None else self.source.to_dict()
        return data


def _split(entry: str) -> tuple[str | None, Path]:
    name, sep, rest = entry.partition("=")
    if sep and name and "/" not in name and not Path(entry).exists():
        return name, Path(rest)
    return None, Path(entry)


def _sidecar_text(item: InputItem) -> str | None:
    if item.source is not None:
        return None
    txt = item.path.with_suffix(".txt")
    return txt.read_text(encoding="utf-8").strip() or None if txt.is_file() else None


def _manifest_rows(path: Path) -> list[dict]:
    """The rows of a JSONL manifest (for ``text`` and ``subset``), one per item ``collect`` gives."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not (
                row.get("path") or row.get("audio_filepath") or row["audio"]
            ):
                raise KeyError("path")
        except (json.JSONDecodeError, KeyError, AttributeError):
            raise SlmtokError(f"{path}:{number}: expected a JSON object with a 'path'") from None
        text = row.get("text")
        rows.append({"text": text if isinstance(text, str) else None, "subset": row.get("subset")})
    return rows


def load_corpus(entries: list[str]) -> list[CorpusItem]:
    """Expand ``[SUBSET=]PATH`` entries into corpus items, in order; ids must be unique.

    Raises ``SlmtokError`` for a missing path, a folder without audio, or a bad manifest line.
    """
    items: list[CorpusItem] = []
    for entry in entries:
        subset, path = _split(entry)
        if not path.exists():
            raise SlmtokError(f"no such corpus path: {path}")
        rows = None
        if path.is_file() and path.suffix.lower() == ".jsonl":
            from slmtok.input_formats import detect

            rows = _manifest_rows(path) if detect(path) is None else None
        found = collect([str(path)])
        if path.is_dir():
            default = path.resolve().name
        elif path.suffix.lower() == ".scp":  # Kaldi: data/<set>/wav.scp
            default = path.resolve().parent.name or "data"
        elif path.suffix.lower() in AUDIO_EXTENSIONS:
            default = path.parent.name or "data"
        else:
            default = path.stem.split(".")[0] or "data"
        for k, item in enumerate(found):
            row = rows[k] if rows is not None else {"text": None, "subset": None}
            name = subset or (row["subset"] if isinstance(row["subset"], str) and row["subset"] else default)
            text = row["text"] if rows is not None else _sidecar_text(item)
            items.append(
                CorpusItem(
                    f"{name}/{item.name.as_posix()}",
                    item.path,
                    name,
                    text,
                    item.start,
                    item.duration,
                    item.source,
                )
            )
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
        record = [item.id, item.text, item.start, item.duration, size]
        digest.update(
            json.dumps(record if item.source is None else [*record, item.source.to_dict()]).encode()
        )
    return digest.hexdigest()
