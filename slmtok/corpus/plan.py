"""The plan of a corpus run: which inputs, in which shard, with which tokenizer. Fixed on the first run
and checked on every restart, so that a resumed run writes exactly the shards the first one would."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slmtok.atomic import atomic_path
from slmtok.cli.inputs import InputItem, collect
from slmtok.errors import SlmtokError

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


def save_plan(out: Path, plan: Plan) -> None:
    with atomic_path(out / "plan.json") as tmp:
        tmp.write_text(json.dumps({**plan.to_dict(), "fingerprint": plan.fingerprint()}, indent=1))


def load_plan(out: Path) -> Plan | None:
    path = out / "plan.json"
    if not path.exists():
        return None
    try:
        return Plan.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise SlmtokError(f"corrupt corpus plan {path}: {error}") from None
