"""Encode one shard of a corpus plan and write it atomically; read shards back.

A shard file is safetensors: ``codes`` ``[K, total_frames]`` (the items' valid frames one after the
other), ``offsets`` ``[n + 1]`` (item ``r`` spans ``offsets[r]:offsets[r + 1]``), ``extras.<name>``
likewise concatenated on the last axis, and a JSON header with the items (id, path, frames, duration,
input rate), the failures (id, path, error) and the tokenizer (name, card hash, options).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slmtok.atomic import atomic_path
from slmtok.audio import convert_channels, resample
from slmtok.corpus.plan import CorpusItem
from slmtok.errors import SlmtokError
from slmtok.provenance import ref_to_dict
from slmtok.tokenizer import encode_list
from slmtok.types import Tokens

SHARD_FORMAT = "slmtok-corpus-shard"


def shard_path(out: Path, index: int) -> Path:
    return out / "shards" / f"shard-{index:05d}.safetensors"


@dataclass
class ShardResult:
    index: int
    items: int
    failures: int
    audio_seconds: float
    seconds: float
    skipped: bool = False


@dataclass
class _Loaded:
    item: CorpusItem
    wav: torch.Tensor | None = None  # [C, T] at the tokenizer's rate and channel count
    rate: int = 0
    samples: int = 0
    channels: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _load(item: CorpusItem, rate: int, channels: int) -> _Loaded:
    """Read and convert one input in a worker thread (resampling happens in the reader)."""
    try:
        from slmtok.encoding import read_input

        wav, orig_rate = read_input(item.path, item.input_source, start=item.start, duration=item.segment)
        samples, orig_channels = wav.shape[-1], wav.shape[0]
        if not bool(torch.isfinite(wav).all()):
            raise SlmtokError("audio contains NaN or Inf samples")
        wav = resample(convert_channels(wav, channels), orig_rate, rate)
        return _Loaded(item, wav, orig_rate, samples, orig_channels)
    except Exception as error:  # noqa: BLE001 - any unreadable input becomes a recorded failure
        return _Loaded(item, error=(str(error).splitlines() or [type(error).__name__])[0])


def readable(item: CorpusItem) -> bool:
    """Whether ``item`` reads now as audio without NaN/Inf samples (read whole): an input whose read
    failed is then worth encoding again."""
    from slmtok.encoding import read_input

    try:
        wav, _ = read_input(item.path, item.input_source, start=item.start, duration=item.segment)
    except Exception:  # noqa: BLE001 - still unreadable
        return False
    return bool(torch.isfinite(wav).all())


def _batches(
    loaded: Iterator[_Loaded], rate: int, batch_seconds: float, failures: list[dict]
) -> Iterator[list[_Loaded]]:
    """Group consecutive items so that (longest x count) stays within ``batch_seconds`` of audio; items
    that could not be read go to ``failures``."""
    batch: list[_Loaded] = []
    longest = 0
    for entry in loaded:
        if entry.error is not None:
            failures.append(
                {"id": entry.item.id, "path": entry.item.path, "error": entry.error, "stage": "read"}
            )
            continue
        n = entry.wav.shape[-1]
        if batch and max(longest, n) * (len(batch) + 1) > batch_seconds * rate:
            yield batch
            batch, longest = [], 0
        batch.append(entry)
        longest = max(longest, n)
    if batch:
        yield batch


def encode_shard(
    tok,
    items: list[CorpusItem],
    index: int,
    out: Path,
    *,
    n_codebooks: int | None = None,
    batch_seconds: float = 120.0,
    workers: int = 2,
    force: bool = False,
) -> ShardResult:
    """Encode ``items`` and atomically write shard ``index`` under ``out``; skip it if it exists and holds
    exactly ``items`` (a truncated, corrupt or foreign shard file is encoded again and replaced), unless
    ``force`` (failed inputs retried: the old shard stays until the new one replaces it).

    Failures record ``stage``: ``read`` (the input could not be read) or ``encode`` (the tokenizer
    refused it)."""
    path = shard_path(out, index)
    if not force and path.exists() and check_shard(path, items) is None:
        header = read_shard_header(path)
        seconds = sum(i["duration"] for i in header["items"])
        return ShardResult(index, len(header["items"]), len(header["failures"]), seconds, 0.0, skipped=True)
    start = time.perf_counter()
    rate, channels = tok.card.sample_rate, tok.card.channels
    failures: list[dict] = []
    encoded: list[tuple[_Loaded, Tokens]] = []
    # reader threads decode and resample ahead (in plan order) while the model encodes earlier batches
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        loaded = pool.map(lambda it: _load(it, rate, channels), items)
        for batch in _batches(loaded, rate, batch_seconds, failures):
            try:
                results = encode_list(tok, [e.wav for e in batch], rate, n_codebooks=n_codebooks)
            except SlmtokError as error:
                results = [error]
            for entry, result in zip(batch, results, strict=True):
                if isinstance(result, SlmtokError):
                    failures.append(
                        {
                            "id": entry.item.id,
                            "path": entry.item.path,
                            "error": str(result),
                            "stage": "encode",
                        }
                    )
                else:
                    encoded.append((entry, result))
    encoded.sort(key=lambda pair: pair[0].item.id)
    _write_shard(path, tok, encoded, failures)
    seconds = sum(e.samples / e.rate for e, _ in encoded)
    return ShardResult(index, len(encoded), len(failures), seconds, time.perf_counter() - start)


def _write_shard(path: Path, tok, encoded: list[tuple[Any, Tokens]], failures: list[dict]) -> None:
    from safetensors.torch import save

    k = encoded[0][1].n_codebooks if encoded else tok.card.n_codebooks
    parts = [t.item(0) for _, t in encoded]
    codes = torch.cat(parts, dim=1) if parts else torch.zeros(k, 0, dtype=torch.long)
    lengths = torch.tensor([p.shape[1] for p in parts], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    top = int(codes.max()) if codes.numel() else 0
    tensors = {
        "codes": codes.to(torch.int16 if top < 2**15 else torch.int32).contiguous(),
        "offsets": offsets,
    }
    for name in encoded[0][1].extras if encoded else ():
        tensors[f"extras.{name}"] = torch.cat(
            [t.extras[name][0, ..., : int(t.lengths[0])] for _, t in encoded], -1
        )
    header = {
        # the ref the tokens carry: options without trust, weights files by resolved path and sha256
        "tokenizer": ref_to_dict(tok.ref),
        "frame_rate": tok.card.frame_rate,
        "items": [
            {
                "id": e.item.id,
                "path": e.item.path,
                "row": row,
                "frames": int(t.lengths[0]),
                "duration": e.samples / e.rate,
                "sample_rate": e.rate,
                "channels": e.channels,
            }
            for row, (e, t) in enumerate(encoded)
        ],
        "failures": failures,
    }
    header["sha256"] = _digest(tensors)
    blob = save(tensors, metadata={"format": SHARD_FORMAT, "header": json.dumps(header)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_shard(path: Path, items: list[CorpusItem]) -> str | None:
    """``None`` if the shard file at ``path`` is complete and holds exactly ``items`` (each once, encoded or
    failed); otherwise why not, in a few words (a killed writer, a truncated copy, another plan's shard)."""
    try:
        header, tensors = read_shard(path)
    except SlmtokError as error:
        return str(error)
    try:
        rows, failures = header["items"], header["failures"]
        ids = [r["id"] for r in rows] + [f["id"] for f in failures]
        if sorted(ids) != sorted(item.id for item in items):
            return "it holds other inputs than the plan gives it"
        offsets, codes = tensors["offsets"], tensors["codes"]
        frames = [int(r["frames"]) for r in rows]
        if [int(r["row"]) for r in rows] != list(range(len(rows))) or offsets.tolist() != [0] + list(
            itertools.accumulate(frames)
        ):
            return "its offsets do not match its items"
        if codes.ndim != 2 or codes.shape[1] != sum(frames):
            return "its codes do not match its offsets"
        if "sha256" in header and header["sha256"] != _digest(tensors):
            return "its checksum does not match (the file is damaged)"
    except (KeyError, TypeError, ValueError) as error:
        return f"its header is malformed ({type(error).__name__}: {error})"
    return None


def read_shard_header(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001
        raise SlmtokError(f"corrupt corpus shard {path}") from None
    if meta.get("format") != SHARD_FORMAT:
        raise SlmtokError(f"not a corpus shard: {path}")
    try:
        return json.loads(meta["header"])
    except (KeyError, json.JSONDecodeError):
        raise SlmtokError(f"corrupt corpus shard {path}: unreadable header") from None


def read_shard(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Header and tensors (``codes``, ``offsets``, ``extras.*``) of a shard file."""
    from safetensors import safe_open

    header = read_shard_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except Exception:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise SlmtokError(f"corrupt corpus shard {path}") from None
    return header, tensors
