"""The plan of a corpus run: which inputs, in which shard, with which tokenizer. Fixed on the first run
and checked on every restart, so that a resumed run writes exactly the shards the first one would."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError
from slmtok.inputs import InputItem, Source, collect
from slmtok.provenance import recorded_options, weights_records

PLAN_VERSION = 1


@dataclass(frozen=True)
class CorpusItem:
    """One input: ``id`` (unique, the output name), file ``path`` (absolute), optional segment (seconds),
    its duration in seconds (``None`` when its header could not be read: it will fail when read), and
    ``source`` (``slmtok.inputs.Source.to_dict``) for an item inside a tar file or dataset folder."""

    id: str
    path: str
    start: float = 0.0
    segment: float | None = None
    duration: float | None = None
    source: dict[str, Any] | None = None

    @property
    def input_source(self) -> Source | None:
        return None if self.source is None else Source.from_dict(self.source)

    def to_dict(self) -> dict[str, Any]:
        """As stored in ``plan.json``; ``source`` only where set, so plans of earlier versions keep their
        fingerprint."""
        data = asdict(self)
        if self.source is None:
            del data["source"]
        return data


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
            "shards": [[item.to_dict() for item in shard] for shard in self.shards],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("version") != PLAN_VERSION:
            raise SlmtokError(f"corpus plan version {data.get('version')} is not {PLAN_VERSION}")
        shards = [[CorpusItem(**item) for item in shard] for shard in data["shards"]]
        for item in (item for shard in shards for item in shard):
            if item.source is not None:
                try:
                    Source.from_dict(item.source)
                except ValueError as error:
                    raise TypeError(f"item {item.id}: {error}") from None
        return cls(data["tokenizer"], data["options"], data["card_hash"], data["n_codebooks"], shards)


def probe_duration(item: InputItem) -> float | None:
    """Duration in seconds from the header (soundfile, else FFmpeg decodes it), of a file or of a tar
    member or dataset row, or ``None`` if unreadable."""
    from slmtok.encoding import header_seconds

    try:
        total = header_seconds(item.path, item.source)
    except Exception:  # noqa: BLE001 - recorded as a failure when the shard is encoded
        return None
    left = max(total - item.start, 0.0)
    return left if item.duration is None else min(item.duration, left)


def _absolute(path: Path) -> str:
    """``path`` made absolute against the working directory (symlinks kept as named)."""
    return os.path.abspath(path)


def as_items(inputs: list[str] | list[InputItem]) -> list[InputItem]:
    """``inputs`` as collected items: command-line inputs go through ``slmtok.inputs.collect``; items
    already collected (one walk of the corpus per run) are returned as they are."""
    if inputs and all(isinstance(i, InputItem) for i in inputs):
        return list(inputs)
    return collect(inputs)


def make_plan(
    inputs: list[str] | list[InputItem],
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
        CorpusItem(
            str(i.name.as_posix()),
            _absolute(i.path),
            i.start,
            i.duration,
            probe_duration(i),
            None if i.source is None else i.source.to_dict(),
        )
        for i in as_items(inputs)
    ]
    items.sort(key=lambda it: (it.duration if it.duration is not None else -1.0, it.id))
    shards = [items[k : k + shard_size] for k in range(0, len(items), shard_size)]
    return Plan(tokenizer, dict(options), card_hash, n_codebooks, shards)


def describe_request(
    inputs: list[str] | list[InputItem],
    *,
    tokenizer: str,
    options: dict[str, Any],
    card_hash: str,
    n_codebooks: int | None,
    shard_size: int,
    absolute: bool = True,
) -> dict[str, Any]:
    """What a command asks for, in a form recorded with the plan and compared on every restart: the
    tokenizer, its options (weights files by sha256, not by path) and card hash, K, the shard size, and a
    sha256 over the inputs (id, absolute path, segment, source and file size of each).

    ``absolute=False`` lists paths as given (how slmtok 0.x recorded them), to compare with such runs."""
    listing = []
    for i in as_items(inputs):
        try:
            size = Path(i.path).stat().st_size
        except OSError:
            size = -1
        path = _absolute(i.path) if absolute else str(i.path)
        row = [i.name.as_posix(), path, i.start, i.duration, size]
        listing.append(row if i.source is None else [*row, i.source.to_dict()])
    listing.sort(key=lambda r: r[0])  # ids are unique: the order of slmtok 0.x
    weights = weights_records(recorded_options(options))
    hashed = {w.option for w in weights}  # a weights file is its sha256, wherever it lies
    kept = {k: v for k, v in options.items() if k not in hashed}
    request = {
        "tokenizer": tokenizer,
        "options": kept,
        "card_hash": card_hash,
        "n_codebooks": n_codebooks,
        "shard_size": shard_size,
        "inputs": hashlib.sha256(json.dumps(listing).encode()).hexdigest(),
        "items": [{"id": r[0], "path": r[1], "start": r[2], "segment": r[3], "size": r[4]} for r in listing],
    }
    if weights:  # recorded only where there are local weights files, as runs before it recorded none
        request["weights"] = sorted([w.option, w.index, w.sha256] for w in weights)
    return request


def request_changes(recorded: dict[str, Any], request: dict[str, Any]) -> list[str]:
    """What differs between the request a run was started with and this one, in words (empty: none)."""
    changes = []
    labels = {
        "tokenizer": "tokenizer",
        "options": "tokenizer options",
        "card_hash": "tokenizer weights (card hash)",
        "n_codebooks": "--n-codebooks",
        "shard_size": "--shard-size",
        "weights": "weights files (sha256)",
    }
    for key, label in labels.items():
        if recorded.get(key) != request.get(key):
            changes.append(f"{label} {recorded.get(key)!r} -> {request.get(key)!r}")
    if recorded.get("inputs") != request.get("inputs"):
        old = {r["id"]: r for r in recorded.get("items", [])}
        new = {r["id"]: r for r in request.get("items", [])}
        added, removed = len(new.keys() - old.keys()), len(old.keys() - new.keys())
        moved = sum(
            any(old[k].get(f) != new[k].get(f) for f in ("path", "start", "segment"))
            for k in old.keys() & new.keys()
        )
        parts = [f"{n} {what}" for n, what in ((added, "added"), (removed, "removed"), (moved, "changed"))]
        detail = ", ".join(p for p in parts if not p.startswith("0 ")) or "files changed on disk (size)"
        changes.append(f"inputs ({detail})")
    return changes


def resized(recorded: dict[str, Any], request: dict[str, Any]) -> set[str] | None:
    """Ids of the inputs whose file size is all that differs between two requests, or ``None`` if
    anything else differs (or the recorded request has no sizes: runs of slmtok 0.x)."""
    plain = ("tokenizer", "options", "card_hash", "n_codebooks", "shard_size", "weights")
    if any(recorded.get(k) != request.get(k) for k in plain):
        return None
    old = {r["id"]: r for r in recorded.get("items", [])}
    new = {r["id"]: r for r in request.get("items", [])}
    if old.keys() != new.keys() or any("size" not in r for r in old.values()):
        return None
    if any(old[k][f] != new[k][f] for k in old for f in ("path", "start", "segment")):
        return None
    return {k for k in old if old[k]["size"] != new[k]["size"]}


def save_plan(out: Path, plan: Plan, request: dict[str, Any] | None = None) -> None:
    """Write ``plan.json``: the plan, its fingerprint, the request it was made for and the working
    directory it was made in (paths are absolute; ``cwd`` is a record)."""
    data = {**plan.to_dict(), "fingerprint": plan.fingerprint(), "cwd": os.getcwd()}
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


def is_relative(plan: Plan) -> bool:
    """Whether ``plan`` lists paths relative to the folder it was started from (plans of slmtok 0.x)."""
    return any(not os.path.isabs(item.path) for shard in plan.shards for item in shard)


def made_absolute(plan: Plan, base: str) -> Plan:
    """``plan`` with its relative paths taken from ``base``."""
    shards = [
        [CorpusItem(**{**item.to_dict(), "path": os.path.join(base, item.path)}) for item in shard]
        for shard in plan.shards
    ]
    return Plan(plan.tokenizer, plan.options, plan.card_hash, plan.n_codebooks, shards)


def recorded_cwd(out: Path) -> str | None:
    """The working directory ``plan.json`` records (``None`` for plans that record none)."""
    try:
        value = json.loads((out / "plan.json").read_text()).get("cwd")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and os.path.isabs(value) else None
