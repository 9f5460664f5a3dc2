"""The probe folder format (version 1): items with exact phone alignments, and how to read and write it.

A probe folder holds synthetic speech made to measure what a tokenizer's units carry (issue #11)::

    PROBES/probes.json     header: {"schema": "slmtok.probes", "version": 1, "seed", "label": "synthetic",
                           "sample_rate": 16000, "phone_set", "voices", "sets", "fingerprint", ...}
    PROBES/items.jsonl     one JSON object per audio file (``ProbeItem``), sorted by id
    PROBES/audio/<id>.flac 16 kHz mono FLAC

``fingerprint`` is the sha256 of ``items.jsonl``'s bytes. Results made from these sets are labelled
"synthetic": they are not ZeroSpeech scores.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmtok.errors import SlmtokError

if TYPE_CHECKING:
    import torch

SCHEMA = "slmtok.probes"
VERSION = 1
LABEL = "synthetic"
SAMPLE_RATE = 16000
HEADER_FILE = "probes.json"
ITEMS_FILE = "items.jsonl"
AUDIO_DIR = "audio"
SILENCE = "SIL"

SETS = ("train", "valid", "content", "lexical", "syntactic", "acoustic", "invariance")
PAIR_SETS = ("lexical", "syntactic", "acoustic")
MEMBERS = ("good", "bad")
INVARIANCE_VARIANTS = ("clean", "noise", "pitch+2", "pitch-2", "speed0.9", "speed1.1", "voice")
_ACOUSTIC_VARIANT = re.compile(r"^(consistent|changed:[a-z0-9_.+-]+)$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}$")


class ProbeError(SlmtokError, ValueError):
    """A probe folder that is missing, malformed, of another schema or of a newer version."""


@dataclass(frozen=True)
class ProbeItem:
    """One audio file of a probe folder, with its transcription and alignments (times in seconds)."""

    id: str
    set: str
    audio: str  # path relative to the probe folder: "audio/<id>.flac"
    seconds: float
    voice: str
    speaker: str  # speaker label for speaker-ID: the voice id
    text: str
    phones: tuple[tuple[str, float, float], ...]  # (symbol, start_s, end_s), contiguous, silence "SIL"
    words: tuple[tuple[str, float, float], ...] | None
    phone_string: str  # phone symbols without SIL, space-separated (the text-ceiling input)
    pair: str | None = None
    member: str | None = None  # "good" | "bad"
    group: str | None = None  # invariance group id
    variant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The item as the JSON object stored in ``items.jsonl`` (tuples become lists)."""
        return {
            "id": self.id,
            "set": self.set,
            "audio": self.audio,
            "seconds": self.seconds,
            "voice": self.voice,
            "speaker": self.speaker,
            "text": self.text,
            "phones": [[s, a, b] for s, a, b in self.phones],
            "words": None if self.words is None else [[w, a, b] for w, a, b in self.words],
            "phone_string": self.phone_string,
            "pair": self.pair,
            "member": self.member,
            "group": self.group,
            "variant": self.variant,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "item") -> ProbeItem:
        """Read and validate one ``items.jsonl`` object; ``where`` names it in the one-line error."""
        if not isinstance(data, dict):
            raise ProbeError(f"{where}: not a JSON object")
        names = [f for f in cls.__dataclass_fields__]
        missing = [n for n in names if n not in data]
        if missing:
            raise ProbeError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
            phones = tuple((str(s), float(a), float(b)) for s, a, b in data["phones"])
            words = data["words"]
            words = None if words is None else tuple((str(w), float(a), float(b)) for w, a, b in words)
            item = cls(
                id=str(data["id"]),
                set=str(data["set"]),
                audio=str(data["audio"]),
                seconds=float(data["seconds"]),
                voice=str(data["voice"]),
                speaker=str(data["speaker"]),
                text=str(data["text"]),
                phones=phones,
                words=words,
                phone_string=str(data["phone_string"]),
                pair=_opt_str(data["pair"]),
                member=_opt_str(data["member"]),
                group=_opt_str(data["group"]),
                variant=_opt_str(data["variant"]),
            )
        except (TypeError, ValueError) as error:
            raise ProbeError(f"{where}: malformed field ({error})") from None
        item.validate(where)
        return item

    def validate(self, where: str = "item") -> None:
        """Raise ``ProbeError`` unless the item is well formed (safe id, known set, contiguous phones)."""
        if not _SAFE_ID.match(self.id):
            raise ProbeError(f"{where}: id {self.id!r} is not a safe file name")
        if self.set not in SETS:
            raise ProbeError(f"{where}: unknown set {self.set!r} (expected one of {', '.join(SETS)})")
        if Path(self.audio).is_absolute() or ".." in Path(self.audio).parts:
            raise ProbeError(f"{where}: audio path {self.audio!r} must be relative, inside the folder")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ProbeError(f"{where}: seconds must be a positive number, got {self.seconds}")
        if not self.phones:
            raise ProbeError(f"{where}: no phones")
        end = 0.0
        for symbol, start, stop in self.phones:
            if not symbol or abs(start - end) > 1e-6 or not stop > start:
                raise ProbeError(f"{where}: phones not contiguous at {symbol!r} [{start}, {stop}]")
            end = stop
        if self.member is not None and self.member not in MEMBERS:
            raise ProbeError(f"{where}: member must be 'good' or 'bad', got {self.member!r}")
        if (self.pair is None) != (self.member is None):
            raise ProbeError(f"{where}: pair and member must be both set or both null")
        if self.set == "invariance" and self.variant not in INVARIANCE_VARIANTS:
            raise ProbeError(f"{where}: invariance variant {self.variant!r} is not one of the known ones")
        if self.set == "acoustic" and not _ACOUSTIC_VARIANT.match(self.variant or ""):
            raise ProbeError(f"{where}: acoustic variant must be 'consistent' or 'changed:<factor>'")


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass
class ProbeSet:
    """A loaded probe folder: its header (``probes.json``) and items, sorted by id."""

    root: Path
    header: dict[str, Any]
    items: list[ProbeItem] = field(default_factory=list)

    def by_set(self, name: str) -> list[ProbeItem]:
        """The items of one set (``train``, ``valid``, ``content``, ...), sorted by id."""
        if name not in SETS:
            raise ProbeError(f"unknown probe set {name!r} (expected one of {', '.join(SETS)})")
        return [item for item in self.items if item.set == name]

    def pairs(self, name: str) -> list[tuple[ProbeItem, ProbeItem]]:
        """The (good, bad) pairs of a pair set (``lexical``, ``syntactic``, ``acoustic``), sorted by pair
        id. A pair without exactly one good and one bad member raises ``ProbeError``."""
        members: dict[str, dict[str, ProbeItem]] = {}
        for item in self.by_set(name):
            if item.pair is None or item.member is None:
                raise ProbeError(f"{item.id}: item of pair set {name!r} has no pair/member")
            slot = members.setdefault(item.pair, {})
            if item.member in slot:
                raise ProbeError(f"pair {item.pair!r} has two {item.member!r} members")
            slot[item.member] = item
        out = []
        for pair_id in sorted(members):
            slot = members[pair_id]
            if set(slot) != set(MEMBERS):
                raise ProbeError(f"pair {pair_id!r} lacks a good or a bad member")
            out.append((slot["good"], slot["bad"]))
        return out

    def groups(self) -> dict[str, list[ProbeItem]]:
        """Invariance groups: group id → its items (the ``clean`` one first, then by variant order)."""
        groups: dict[str, list[ProbeItem]] = {}
        for item in self.by_set("invariance"):
            if item.group is None:
                raise ProbeError(f"{item.id}: invariance item without a group")
            groups.setdefault(item.group, []).append(item)
        order = {v: i for i, v in enumerate(INVARIANCE_VARIANTS)}
        return {
            g: sorted(v, key=lambda it: (order.get(it.variant or "", 99), it.id))
            for g, v in sorted(groups.items())
        }

    def audio_path(self, item: ProbeItem) -> Path:
        """The absolute path of an item's audio file."""
        return self.root / item.audio

    def read_audio(self, item: ProbeItem) -> torch.Tensor:
        """An item's audio as float32 ``[T]`` samples at 16 kHz (mono)."""
        import soundfile as sf
        import torch

        path = self.audio_path(item)
        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as error:  # noqa: BLE001 - one line naming the file
            raise ProbeError(f"cannot read probe audio {path}: {str(error).splitlines()[0]}") from None
        if rate != SAMPLE_RATE:
            raise ProbeError(f"probe audio {path} is {rate} Hz, expected {SAMPLE_RATE}")
        return torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0].copy())


def load_probes(path: str | Path) -> ProbeSet:
    """Read and validate a probe folder (``probes.json`` + ``items.jsonl``); errors are one line."""
    root = Path(path)
    if not root.is_dir():
        raise ProbeError(f"no probe folder at {root} (make one with: slmtok probes build -o {root})")
    header_path = root / HEADER_FILE
    items_path = root / ITEMS_FILE
    for needed in (header_path, items_path):
        if not needed.is_file():
            raise ProbeError(f"{root} is not a probe folder: {needed.name} is missing")
    try:
        header = json.loads(header_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProbeError(f"{header_path}: not readable JSON ({error})") from None
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise ProbeError(f"{header_path}: not a {SCHEMA} header")
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise ProbeError(f"{header_path}: bad version {version!r}")
    if version > VERSION:
        raise ProbeError(f"{header_path}: version {version} is newer than this slmtok reads ({VERSION})")
    if header.get("sample_rate") != SAMPLE_RATE:
        raise ProbeError(f"{header_path}: sample_rate must be {SAMPLE_RATE}")
    raw = items_path.read_bytes()
    if header.get("fingerprint") not in (None, fingerprint(raw)):
        raise ProbeError(f"{items_path}: fingerprint does not match probes.json (folder changed or corrupt)")
    items: list[ProbeItem] = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{items_path.name} line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise ProbeError(f"{where}: not JSON ({error.msg})") from None
        items.append(ProbeItem.from_dict(data, where))
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ProbeError(f"{items_path}: duplicate item ids")
    items.sort(key=lambda item: item.id)
    return ProbeSet(root=root, header=header, items=items)


def frame_labels(phones: Sequence[Sequence[Any]], n_frames: int, frame_rate: float) -> list[str]:
    """The phone at each frame's centre: frame ``i`` covers ``[i, i+1) / frame_rate`` seconds and gets the
    phone whose ``[start_s, end_s)`` holds ``(i + 0.5) / frame_rate``; frames past the last phone get
    ``"SIL"``. ``phones`` is ``[(symbol, start_s, end_s), ...]``, contiguous and sorted."""
    import bisect

    if n_frames < 0 or frame_rate <= 0:
        raise ProbeError(
            f"frame_labels needs n_frames >= 0 and frame_rate > 0 (got {n_frames}, {frame_rate})"
        )
    starts = [float(p[1]) for p in phones]
    labels = []
    for i in range(n_frames):
        centre = (i + 0.5) / frame_rate
        k = bisect.bisect_right(starts, centre) - 1
        if k < 0 or centre >= float(phones[k][2]):
            labels.append(SILENCE)
        else:
            labels.append(str(phones[k][0]))
    return labels


# ------------------------------------------------------------------------------------------- writing


def items_jsonl_bytes(items: Iterable[ProbeItem]) -> bytes:
    """The canonical ``items.jsonl`` bytes: items sorted by id, one compact JSON object a line, UTF-8.
    Same items → same bytes (the fingerprint depends on nothing else)."""
    lines = [
        json.dumps(item.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        for item in sorted(items, key=lambda item: item.id)
    ]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def fingerprint(items_bytes: bytes) -> str:
    """sha256 (hex) of ``items.jsonl``'s bytes."""
    return hashlib.sha256(items_bytes).hexdigest()


def make_header(
    items: Sequence[ProbeItem],
    items_bytes: bytes,
    *,
    seed: int,
    voices: Sequence[dict[str, str]],
    phone_set: str = "espeak-ng",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``probes.json`` header for ``items`` (``sets`` counts items per set, in ``SETS`` order)."""
    import slmtok

    counts = {name: sum(1 for item in items if item.set == name) for name in SETS}
    header: dict[str, Any] = {
        "schema": SCHEMA,
        "version": VERSION,
        "seed": int(seed),
        "label": LABEL,
        "sample_rate": SAMPLE_RATE,
        "phone_set": phone_set,
        "voices": [dict(v) for v in voices],
        "sets": {name: n for name, n in counts.items() if n},
        "fingerprint": fingerprint(items_bytes),
        "slmtok": getattr(slmtok, "__version__", "unknown"),
    }
    header.update(extra or {})
    return header


def write_index(folder: str | Path, header: dict[str, Any], items_bytes: bytes) -> None:
    """Atomically write ``items.jsonl`` then ``probes.json`` into ``folder`` (which must exist)."""
    from slmtok.atomic import atomic_path

    folder = Path(folder)
    with atomic_path(folder / ITEMS_FILE) as tmp:
        tmp.write_bytes(items_bytes)
    text = json.dumps(header, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    with atomic_path(folder / HEADER_FILE) as tmp:
        tmp.write_text(text, encoding="utf-8")
