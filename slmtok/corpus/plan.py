"""The plan of a corpus run: which inputs, in which shard, with which tokenizer. Fixed on the first run
and checked on every restart, so that a resumed run writes exactly the shards the first one would."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError
from slmtok.inputs import InputItem, collect

PLAN_VERSION = 1


@dataclass(frozen=True)
class CorpusItem:
    """One input: ``id`` (unique, the output name), file ``path``, optional segment (seconds), and its
    duration in seconds (``None`` when its header could not be read: it will fail when read)."""

    id: str
    path: str
    start: float = 0.0
    segment: float | None = None
    duration: float | None = None


@dataclass(frozen=True)
class Plan:
    tokenizer: str
    options: dict[str, Any]
    card_hash: str
    n_codebooks: int | None
    shards: list[list[CorpusItem]]

    @property
    def n_items(self) -> int:
        return sum(len(s) for s in self.shards)

    def fingerprint(self) -> str:
        """sha256 of everything that decides the output; a restart must match it."""
        data = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "tokenizer": self.tokenizer,
            "options": self.options,
            "card_hash": self.card_hash,
            "n_codebooks": self.n_codebooks,
            "shards": [[asdict(item) for item in shard] for shard in self.shards],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("version") != PLAN_VERSION:
            raise SlmtokError(f"corpus plan version {data.get('version')} is not {PLAN_VERSION}")
        shards = [[CorpusItem(**item) for item in shard] for shard in data["shards"]]
        return cls(data["tokenizer"], data["options"], data["card_hash"], data["n_codebooks"], shards)


def probe_duration(item: InputItem) -> float | None:
    """Duration in seconds from the file header (soundfile, else FFmpeg), or ``None`` if unreadable."""
    try:
        import soundfile as sf

        total = sf.info(str(item.path)).duration
    except Exception:  # noqa: BLE001 - not libsndfile's: ask FFmpeg
        try:
            from slmtok.audio import read_audio

            wav, rate = read_audio(item.path)
            total = wav.shape[-1] / rate
        except Exception:  # noqa: BLE001 - recorded as a failure when the shard is encoded
            return None
    left = max(total - item.start, 0.0)
    return left if item.duration is None else min(item.duration, left)


def make_plan(
    inputs: list[str],
    *,
    tokenizer: str,
    options: dict[str, Any],
    card_hash: str,
    n_codebooks: int | None,
    shard_size: int,
) -> Plan:
    """Collect inputs, read their durations, sort by duration (then id) and cut into shards of
    ``shard_size`` items: each shard holds items of similar length, which batch with little padding."""
    if shard_size < 1:
        raise SlmtokError(f"--shard-size must be at least 1, got {shard_size}")
    items = [
        CorpusItem(str(i.name.as_posix()), str(i.path), i.start, i.duration, probe_duration(i))
        for i in collect(inputs)
    ]
    items.sort(key=lambda it: (it.duration if it.duration is not None else -1.0, it.id))
    shards = [items[k : k + shard_size] for k in range(0, len(items), shard_size)]
    return Plan(tokenizer, dict(options), card_hash, n_codebooks, shards)


def describe_request(
    inputs: list[str],
    *,
    tokenizer: str,
    options: dict[str, Any],
    card_hash: str,
    n_codebooks: int | None,
    shard_size: int,
) -> dict[str, Any]:
    """What a command asks for, in a form recorded with the plan and compared on every restart: the
    tokenizer, its options and card hash, K, the shard size, and a sha256 over the inputs (id, path,
    segment and file size of each)."""
    listing = []
    for i in collect(inputs):
        try:
            size = Path(i.path).stat().st_size
        except OSError:
            size = -1
        listing.append([i.name.as_posix(), str(i.path), i.start, i.duration, size])
    listing.sort()
    return {
        "tokenizer": tokenizer,
        "options": dict(options),
        "card_hash": card_hash,
        "n_codebooks": n_codebooks,
        "shard_size": shard_size,
        "inputs": hashlib.sha256(json.dumps(listing).encode()).hexdigest(),
        "items": [{"id": r[0], "path": r[1], "start": r[2], "segment": r[3]} for r in listing],
    }


def request_changes(recorded: dict[str, Any], request: dict[str, Any]) -> list[str]:
    """What differs between the request a run was started with and this one, in words (empty: none)."""
    changes = []
    labels = {
        "tokenizer": "tokenizer",
        "options": "tokenizer options",
        "card_hash": "tokenizer weights (card hash)",
        "n_codebooks": "--n-codebooks",
        "shard_size": "--shard-size",
    }
    for key, label in labels.items():
        if recorded.get(key) != request.get(key):
            changes.append(f"{label} {recorded.get(key)!r} -> {request.get(key)!r}")
    if recorded.get("inputs") != request.get("inputs"):
        old = {r["id"]: r for r in recorded.get("items", [])}
        new = {r["id"]: r for r in request.get("items", [])}
        added, removed = len(new.keys() - old.keys()), len(old.keys() - new.keys())
        moved = sum(old[k] != new[k] for k in old.keys() & new.keys())
        parts = [f"{n} {what}" for n, what in ((added, "added"), (removed, "removed"), (moved, "changed"))]
        detail = ", ".join(p for p in parts if not p.startswith("0 ")) or "files changed on disk (size)"
        changes.append(f"inputs ({detail})")
    return changes


def save_plan(out: Path, plan: Plan, request: dict[str, Any] | None = None) -> None:
    """Write ``plan.json``: the plan, its fingerprint and the request it was made for."""
    data = {**plan.to_dict(), "fingerprint": plan.fingerprint()}
    if request is not None:
        data["request"] = request
    with atomic_path(out / "plan.json") as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def load_plan(out: Path) -> Plan | None:
    """The plan of the run in ``out`` (``None`` if there is none); a plan whose recorded fingerprint does
    not match its content (edited or damaged) is refused."""
    plan, _ = load_plan_and_request(out)
    return plan


def load_plan_and_request(out: Path) -> tuple[Plan | None, dict[str, Any] | None]:
    """The plan and the request recorded with it (``None`` for runs of older slmtok versions)."""
    path = out / "plan.json"
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text())
        plan = Plan.from_dict(data)
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise SlmtokError(f"corrupt corpus plan {path}: {error}") from None
    if "fingerprint" in data and data["fingerprint"] != plan.fingerprint():
        raise SlmtokError(f"corrupt corpus plan {path}: its content does not match its fingerprint")
    return plan, data.get("request")
