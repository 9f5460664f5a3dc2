"""Bundles and vocoders a user trained, remembered under ``$SLMTOK_HOME`` so they load by name.

- ``$SLMTOK_HOME/tokenizers/<name>.json`` -> ``{"bundle": "/abs/dir"}``: a local semantic bundle that
  ``slmtok.load(name)`` finds (registered at import from the file names alone; read when loaded).
- ``$SLMTOK_HOME/vocoders/<tokenizer>.json`` -> ``{"path", "kmeans_hash", "num_units"}``: a unit vocoder
  trained for a tokenizer that has no bundle folder of its own (a published one); used for decoding
  when its k-means hash still matches.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError

_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")


def _home() -> Path:
    from slmtok.hub import slmtok_home

    return slmtok_home()


def registered_bundles() -> dict[str, Path]:
    """Name -> registration file of every user bundle (a directory listing; no file is read)."""
    folder = _home() / "tokenizers"
    try:
        return {p.stem: p for p in folder.iterdir() if p.suffix == ".json" and _NAME.match(p.stem)}
    except OSError:
        return {}


def register_bundle(name: str, bundle: str | os.PathLike) -> Path:
    """Remember bundle folder ``bundle`` as tokenizer ``name`` (and register it in this process)."""
    from slmtok.registry import TOKENIZERS

    if not _NAME.match(name):
        raise SlmtokError(f"tokenizer name {name!r} must be lowercase letters, digits and . _ + -")
    if name in TOKENIZERS and TOKENIZERS.get(name).origin == "builtin":
        raise SlmtokError(f"{name!r} is a built-in tokenizer; choose another name")
    folder = _home() / "tokenizers"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"bundle": str(Path(bundle).resolve())}) + "\n", encoding="utf-8")
    TOKENIZERS.register(
        name,
        "slmtok.tokenizers.semantic.bundle:SemanticTokenizer",
        description=f"semantic bundle {Path(bundle).resolve()}",
        defaults={"name": name},
        exist_ok=True,
        origin="user",
    )
    return path


def bundle_folder(name: str) -> Path:
    """The bundle folder registered as ``name``."""
    path = _home() / "tokenizers" / f"{name}.json"
    try:
        return Path(json.loads(path.read_text(encoding="utf-8"))["bundle"])
    except (OSError, ValueError, KeyError):
        raise SlmtokError(f"no semantic bundle registered as {name!r} ({path})") from None


def register_vocoder(tokenizer: str, folder: str | os.PathLike, *, kmeans_hash: str, num_units: int) -> Path:
    """Remember ``folder`` as the unit vocoder of tokenizer ``tokenizer``."""
    if not _NAME.match(tokenizer):
        raise SlmtokError(f"tokenizer name {tokenizer!r} must be lowercase letters, digits and . _ + -")
    target = _home() / "vocoders"
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{tokenizer}.json"
    data = {"path": str(Path(folder).resolve()), "kmeans_hash": kmeans_hash, "num_units": num_units}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    return path


def registered_vocoder(tokenizer: str) -> dict[str, Any] | None:
    """The vocoder registered for ``tokenizer`` (``path``, ``kmeans_hash``, ``num_units``), if any."""
    if not _NAME.match(tokenizer):
        return None
    path = _home() / "vocoders" / f"{tokenizer}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("path"), str) else None
