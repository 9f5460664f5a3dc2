"""Model cards: one TOML file per published checkpoint, readable by a person, loaded with ``tomllib``.

A card lives at ``hub/cards/<family>/<name>.toml`` (installed as package data). Users add cards in
folders listed in ``$SLMTOK_CARDS`` (``os.pathsep``-separated; ``*.toml`` and ``*/*.toml`` are read) or
pass a card file's path wherever a card name is accepted. Top-level keys::

    name, title, family, license, paper, source, sample_rate, frame_rate, codebooks, codebook_size, notes

``family`` is one of ``FAMILIES``; ``frame_rate`` (frames/s), ``codebooks`` and ``codebook_size`` are
optional. Each ``[[files]]`` table has ``filename``, ``role`` (``"weights"``, ``"config"``, ...), either
``url`` (``https://``, ``http://`` or ``file://``) or ``hf_repo`` + ``hf_filename`` (+ ``revision``),
``sha256`` (``""`` when the publisher gives none: recorded at first download), an optional
``sha256_prefix`` (hex digits the publisher puts in the file name, as EnCodec's ``name-<prefix>.th``)
and an optional ``size`` in bytes. Any other top-level key is kept in ``ModelCard.extra``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmtok.hub.errors import CardError

FAMILIES = ("codec", "semantic", "features", "kmeans", "vocoder", "hybrid")
BUILTIN_DIR = Path(__file__).resolve().parent / "cards"
_HEX = re.compile(r"^[0-9a-f]*$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _plain_name(name: object) -> bool:
    """A single path component: no separators, no ``.``/``..``, no NUL or other control characters."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\")
        and all(ord(c) >= 32 and c != "\x7f" for c in name)
    )


_CARD_KEYS = (
    "name",
    "title",
    "family",
    "license",
    "paper",
    "source",
    "sample_rate",
    "frame_rate",
    "codebooks",
    "codebook_size",
    "notes",
    "files",
    "causal",
    "lookahead",
)
_FILE_KEYS = (
    "filename",
    "role",
    "url",
    "hf_repo",
    "hf_filename",
    "revision",
    "sha256",
    "sha256_prefix",
    "size",
)


@dataclass(frozen=True)
class CardFile:
    """One downloadable file of a card: where it comes from and how it is verified."""

    filename: str
    role: str = "weights"
    url: str = ""
    hf_repo: str = ""
    hf_filename: str = ""
    revision: str = ""
    sha256: str = ""
    sha256_prefix: str = ""
    size: int | None = None

    @property
    def provenance(self) -> str:
        """How the file is pinned: by the card, or by what its first download resolved (the cache index)."""
        if self.sha256:
            return "sha256 on the card, checked on every download"
        if self.sha256_prefix:
            return (
                f"the publisher gives the sha256 prefix {self.sha256_prefix} (in the file name); "
                "full sha256 recorded at first download and checked after"
            )
        if self.hf_repo and self.revision:
            return "revision pinned on the card; no published sha256: recorded at first download and checked after"
        if self.hf_repo:
            return "unpinned: revision and sha256 recorded at first download and checked after"
        return "no published sha256: recorded at first download and checked after"

    @property
    def location(self) -> str:
        """A URL a person can open: ``url``, or the Hugging Face ``resolve`` URL of ``hf_repo``."""
        if self.url:
            return self.url
        return f"https://huggingface.co/{self.hf_repo}/resolve/{self.revision or 'main'}/{self.hf_filename}"


@dataclass(frozen=True)
class ModelCard:
    """A published checkpoint: provenance, rates and files. Build with ``get_card`` or ``load_card``."""

    name: str
    title: str
    family: str
    license: str
    paper: str
    source: str
    sample_rate: int
    files: tuple[CardFile, ...]
    frame_rate: float | None = None
    codebooks: int | None = None
    codebook_size: int | None = None
    notes: str = ""
    path: str = ""
    #: streaming: frame ``t`` depends on no input past ``(t + 1) * hop + lookahead`` samples
    causal: bool = False
    #: input samples past a frame's end that the frame depends on (causal cards)
    lookahead: int = 0
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def file(self, role: str = "weights") -> CardFile:
        """The card's file with ``role``; raises ``CardError`` naming the roles it has."""
        for f in self.files:
            if f.role == role:
                return f
        roles = ", ".join(sorted({f.role for f in self.files}))
        raise CardError(f"card {self.name!r} has no {role!r} file (roles: {roles})")

    @property
    def bitrate(self) -> float | None:
        """Bits/s with every codebook: ``frame_rate x codebooks x log2(codebook_size)``, if the card has them."""
        if not (self.frame_rate and self.codebooks and self.codebook_size):
            return None
        import math

        return self.frame_rate * self.codebooks * math.log2(self.codebook_size)

    @property
    def latency(self) -> float | None:
        """Algorithmic latency of streaming in seconds, one frame plus the lookahead
        (``(sample_rate / frame_rate + lookahead) / sample_rate``), for causal cards with a frame rate."""
        if not (self.causal and self.frame_rate):
            return None
        return (self.sample_rate / self.frame_rate + self.lookahead) / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (files as dicts, ``bitrate`` and ``latency`` added)."""
        from dataclasses import asdict

        data = asdict(self)
        data["files"] = [asdict(f) for f in self.files]
        data["bitrate"] = self.bitrate
        data["latency"] = self.latency
        return data


def parse_card(data: dict[str, Any], *, path: str = "") -> ModelCard:
    """Validate a card's parsed TOML and build a ``ModelCard``; ``CardError`` names the bad field."""
    where = path or data.get("name", "<card>")

    def need(key: str, kind: type | tuple[type, ...], source: dict[str, Any] = data, optional: bool = False):
        value = source.get(key)
        if value is None:
            if optional:
                return None
            raise CardError(f"{where}: missing {key!r}")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise CardError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
        return value

    name = need("name", str)
    if not _NAME.match(name):
        raise CardError(f"{where}: name {name!r} must be lowercase letters, digits and . _ + -")
    family = need("family", str)
    if family not in FAMILIES:
        raise CardError(f"{where}: family must be one of {', '.join(FAMILIES)}, got {family!r}")
    files_data = data.get("files")
    if not isinstance(files_data, list) or not files_data:
        raise CardError(f"{where}: a card needs at least one [[files]] table")
    files = []
    for item in files_data:
        if not isinstance(item, dict):
            raise CardError(f"{where}: each [[files]] entry must be a table")
        unknown = set(item) - set(_FILE_KEYS)
        if unknown:
            raise CardError(f"{where}: unknown [[files]] key(s) {', '.join(sorted(unknown))}")
        f = CardFile(
            filename=need("filename", str, item),
            role=need("role", str, item, optional=True) or "weights",
            url=need("url", str, item, optional=True) or "",
            hf_repo=need("hf_repo", str, item, optional=True) or "",
            hf_filename=need("hf_filename", str, item, optional=True) or "",
            revision=need("revision", str, item, optional=True) or "",
            sha256=(need("sha256", str, item, optional=True) or "").lower(),
            sha256_prefix=(need("sha256_prefix", str, item, optional=True) or "").lower(),
            size=need("size", int, item, optional=True),
        )
        if not _plain_name(f.filename):
            raise CardError(f"{where}: filename {f.filename!r} must be a plain file name")
        if f.hf_filename and not all(_plain_name(part) for part in f.hf_filename.split("/")):
            raise CardError(
                f"{where}: hf_filename {f.hf_filename!r} must be a relative path in the repository"
            )
        if not isinstance(f.revision, str) or (f.revision and not _COMMIT.match(f.revision)):
            raise CardError(
                f'{where}: revision of {f.filename!r} must be a 40-hex-digit commit or "" (unpinned)'
            )
        if bool(f.url) == bool(f.hf_repo):
            raise CardError(f"{where}: file {f.filename!r} needs either url or hf_repo + hf_filename")
        if f.url and not f.url.startswith(("https://", "http://", "file://")):
            raise CardError(f"{where}: url {f.url!r} must start with https://, http:// or file://")
        if f.hf_repo and not f.hf_filename:
            raise CardError(f"{where}: file {f.filename!r} has hf_repo but no hf_filename")
        if f.sha256 and (len(f.sha256) != 64 or not _HEX.match(f.sha256)):
            raise CardError(f'{where}: sha256 of {f.filename!r} must be 64 hex digits or ""')
        if not _HEX.match(f.sha256_prefix):
            raise CardError(f"{where}: sha256_prefix of {f.filename!r} must be hex digits")
        files.append(f)
    if len({f.role for f in files}) != len(files):
        raise CardError(f"{where}: two files share a role")
    frame_rate = need("frame_rate", (int, float), optional=True)
    causal = data.get("causal", False)
    if not isinstance(causal, bool):
        raise CardError(f"{where}: 'causal' must be true or false, got {causal!r}")
    lookahead = need("lookahead", int, optional=True) or 0
    if lookahead < 0:
        raise CardError(f"{where}: 'lookahead' must be samples >= 0, got {lookahead}")
    return ModelCard(
        name=name,
        title=need("title", str),
        family=family,
        license=need("license", str),
        paper=data.get("paper", ""),
        source=need("source", str),
        sample_rate=need("sample_rate", int),
        files=tuple(files),
        frame_rate=float(frame_rate) if frame_rate is not None else None,
        codebooks=need("codebooks", int, optional=True),
        codebook_size=need("codebook_size", int, optional=True),
        notes=data.get("notes", "").strip(),
        path=path,
        causal=causal,
        lookahead=lookahead,
        extra={k: v for k, v in data.items() if k not in _CARD_KEYS},
    )


def load_card(path: str | os.PathLike) -> ModelCard:
    """Read one card file."""
    if "\0" in os.fspath(path):
        raise CardError(f"card path {os.fspath(path)!r} contains a NUL byte")
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"no such card file: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:  # TOMLDecodeError is a ValueError
        raise CardError(
            f"cannot read card {path}: {str(error).splitlines()[0] if str(error) else error!r}"
        ) from None
    return parse_card(data, path=str(path))


def card_dirs() -> list[Path]:
    """Folders searched for cards: the built-in ``hub/cards`` and each folder in ``$SLMTOK_CARDS``."""
    extra = [Path(p).expanduser() for p in os.environ.get("SLMTOK_CARDS", "").split(os.pathsep) if p]
    return [BUILTIN_DIR, *extra]


def _card_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in card_dirs():
        for path in sorted([*folder.glob("*.toml"), *folder.glob("*/*.toml")]):
            name = path.stem
            if name in found and found[name] != path:
                raise CardError(f"two cards are named {name!r}: {found[name]} and {path}")
            found[name] = path
    return found


def list_cards(pattern: str = "*") -> list[str]:
    """Sorted names of the cards matching a shell-style ``pattern`` (``"dac-*"``)."""
    return sorted(n for n in _card_files() if fnmatch.fnmatchcase(n, pattern))


def get_card(name: str | os.PathLike | ModelCard) -> ModelCard:
    """The card named ``name`` (or read from a ``.toml`` path, or ``name`` itself if it is a card)."""
    if isinstance(name, ModelCard):
        return name
    text = str(name)
    if text.endswith(".toml") or os.sep in text:
        return load_card(text)
    path = _card_files().get(text)
    if path is None:
        import difflib

        close = difflib.get_close_matches(text, list(_card_files()), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see slmtok download --list"
        raise CardError(f"unknown model card {text!r}{hint}")
    card = load_card(path)
    if card.name != text:
        raise CardError(f"card file {path} is named {card.name!r}, not {text!r}")
    return card


def has_card(name: str) -> bool:
    """Whether a card named ``name`` exists (no error for unknown names)."""
    try:
        return name in _card_files()
    except CardError:
        return False
