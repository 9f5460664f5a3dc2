"""Stream a corpus through a feature extractor into a ``FrameSampler``, resumably.

Files are processed in blocks; each block's uniform sample (bottom-k keys and rows) is cached as
``cache/block-XXXXX.safetensors`` with the block's file list, so an interrupted ``slmtok kmeans fit``
skips the blocks it already did. Merging the blocks' samples is exact (bottom-k sampling), so the final
sample is the same whether or not the run was interrupted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slmtok.atomic import atomic_path
from slmtok.kmeans.stream import FrameSampler

BLOCK_FILES = 64


def _block_key(files: list[Path], fingerprint: dict[str, Any], budget: int, seed: int, index: int) -> str:
    digest = hashlib.sha256(json.dumps([fingerprint, budget, seed, index], sort_keys=True).encode())
    for f in files:
        path = getattr(f, "path", f)  # a Path, or an InputItem (a segment, tar member or dataset row)
        stat = path.stat()
        part = "" if isinstance(f, Path) or f.label == str(f.path) else f"|{f.label}"
        digest.update(f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}{part}".encode())
    return digest.hexdigest()


def _read(f):
    """``[C, T]`` audio and rate of a file path, or of an ``slmtok.inputs.InputItem``."""
    from slmtok.audio import read_audio
    from slmtok.encoding import read_item

    return read_audio(f) if isinstance(f, Path) else read_item(f)


def file_features(path: Path, features) -> torch.Tensor | None:
    """``[T', D]`` features of one audio file (mono, at the extractor's rate); ``None`` if unreadable."""
    from slmtok.audio import prepare
    from slmtok.errors import AudioError

    try:
        wav, rate = _read(path)
    except AudioError:
        return None
    wav = prepare(wav, rate, None, target_rate=int(features.sample_rate), target_channels=1).wav[0, 0]
    return features(wav).float().cpu()


def _batch_features(files: list[Path], features) -> list[torch.Tensor]:
    """Features of several files: one padded ``extract`` call where the extractor batches (HuBERT)."""
    if not hasattr(features, "extract"):
        return [x for x in (file_features(f, features) for f in files) if x is not None]
    from slmtok.audio import prepare
    from slmtok.batching import pad_stack
    from slmtok.errors import AudioError

    wavs = []
    for f in files:
        try:
            wav, rate = _read(f)
        except AudioError:
            continue
        wavs.append(
            prepare(wav, rate, None, target_rate=int(features.sample_rate), target_channels=1).wav[0, 0]
        )
    if not wavs:
        return []
    feats, frames = features.extract(pad_stack(wavs), torch.tensor([w.numel() for w in wavs]))
    return [feats[i, : int(n)].float().cpu() for i, n in enumerate(frames)]


def extract_samples(
    files: list[Path],
    features,
    cache: Path,
    *,
    budget: int,
    seed: int = 0,
    batch_size: int = 8,
    fingerprint: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> FrameSampler:
    """Uniform sample of at most ``budget`` feature frames over ``files`` (cached per block of files)."""
    from safetensors import safe_open
    from safetensors.torch import save

    say = log or (lambda line: None)
    cache.mkdir(parents=True, exist_ok=True)
    total = FrameSampler(budget, seed)
    blocks = [files[i : i + BLOCK_FILES] for i in range(0, len(files), BLOCK_FILES)]
    for index, block in enumerate(blocks):
        key = _block_key(block, fingerprint or {}, budget, seed, index)
        path = cache / f"block-{index:05d}.safetensors"
        if path.is_file():
            with safe_open(str(path), framework="np") as f:
                meta = f.metadata() or {}
                if meta.get("key") == key:
                    total.merge(f.get_tensor("keys"), f.get_tensor("rows"))
                    total.seen += int(meta["seen"])
                    say(f"block {index + 1}/{len(blocks)}: cached ({meta['seen']} frames)")
                    continue
        sampler = FrameSampler(budget, seed * 100_003 + index)
        for start in range(0, len(block), batch_size):
            for feats in _batch_features(block[start : start + batch_size], features):
                if feats.shape[0]:
                    sampler.add(feats)
        if sampler.rows is None:
            continue
        blob = save(
            {"keys": torch.from_numpy(sampler.keys.copy()), "rows": torch.from_numpy(sampler.rows.copy())},
            metadata={
                "key": key,
                "seen": str(sampler.seen),
                "files": json.dumps([getattr(p, "label", str(p)) for p in block]),
            },
        )
        with atomic_path(path) as tmp:
            tmp.write_bytes(blob)
        total.merge(sampler.keys, sampler.rows)
        total.seen += sampler.seen
        say(f"block {index + 1}/{len(blocks)}: {len(block)} files, {sampler.seen:,} frames")
    if total.rows is None:
        from slmtok.errors import SlmtokError

        raise SlmtokError("no features: every corpus file was empty or unreadable")
    total.keys = np.asarray(total.keys)
    return total
