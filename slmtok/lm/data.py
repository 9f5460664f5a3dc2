"""LM data sets: any tokenizer's tokens as memory-mapped token shards plus a JSON manifest.

A data folder holds, per split (``train``, ``valid``), shards ``<split>-NNNNN.bin`` of little-endian
``uint16`` (or ``uint32`` when a stream's vocabulary needs it) steps ``[S, H]`` (see
``slmtok.lm.patterns``): every utterance is ``[BOS, pattern steps, EOS]``, utterances back to back. An
index ``<split>.tsv`` lists each utterance (name, shard, first step, steps, frames, seconds), and
``manifest.json`` says everything a trainer or a generator needs: the tokenizer (name, card hash, load
options, card), codebook sizes, frame rate, pattern and special tokens, the split (by utterance), audio
seconds and code tokens per split, mean frames per unit for deduplicated units, and the unigram
baseline. Nothing in it is executable; every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slmtok.atomic import atomic_path, remove_orphans
from slmtok.errors import CodesError, OutputError, SlmtokError
from slmtok.lm.patterns import Pattern, make_pattern, pattern_from_dict

FORMAT = "slmtok-lm-data"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "valid")
IGNORE = -100  # targets that are not scored (special tokens)


@dataclass
class Utterance:
    """One utterance's tokens: ``codes`` ``[K, T]``, audio ``seconds``, and ``durations`` ``[T]``
    (frames per unit) when the units are deduplicated."""

    name: str
    codes: torch.Tensor
    seconds: float
    durations: torch.Tensor | None = None


def split_names(names: list[str], valid_fraction: float, seed: int = 0) -> set[str]:
    """The names held out for validation: the ``round(n * valid_fraction)`` (at least 1 when
    ``valid_fraction > 0`` and n >= 2) whose sha256 with the seed sorts first; stable per name."""
    if not 0 <= valid_fraction < 1:
        raise SlmtokError(f"valid fraction must be in [0, 1), got {valid_fraction}")
    if valid_fraction == 0 or len(names) < 2:
        return set()
    count = min(len(names) - 1, max(1, round(len(names) * valid_fraction)))
    ranked = sorted(names, key=lambda n: hashlib.sha256(f"{seed}\0{n}".encode()).hexdigest())
    return set(ranked[:count])


class _ShardWriter:
    """Appends ``[S, H]`` step arrays to ``<prefix>-NNNNN.bin`` files, starting a new one past
    ``shard_bytes`` (between utterances), each written through ``atomic_path``."""

    def __init__(self, folder: Path, prefix: str, dtype: np.dtype, shard_bytes: int) -> None:
        self.folder, self.prefix, self.dtype, self.shard_bytes = folder, prefix, dtype, shard_bytes
        self.shards: list[dict[str, Any]] = []
        self._atomic = self._file = None

    def add(self, steps: np.ndarray) -> tuple[int, int]:
        """Append; return (shard index, first step in it)."""
        if self._file is None or self._file.tell() + steps.nbytes > self.shard_bytes and self._file.tell():
            self._close_current()
            name = f"{self.prefix}-{len(self.shards):05d}.bin"
            self._atomic = atomic_path(self.folder / name)
            self._file = open(self._atomic.__enter__(), "wb")  # noqa: SIM115 - closed in _close_current
            self.shards.append({"file": name, "steps": 0})
        shard = self.shards[-1]
        start = shard["steps"]
        self._file.write(np.ascontiguousarray(steps, dtype=self.dtype).tobytes())
        shard["steps"] += len(steps)
        return len(self.shards) - 1, start

    def _close_current(self, error: BaseException | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._atomic.__exit__(type(error) if error else None, error, None)
            self._file = self._atomic = None

    def close(self, error: BaseException | None = None) -> list[dict[str, Any]]:
        self._close_current(error)
        return self.shards


def write_dataset(
    out: str | os.PathLike,
    names: list[str],
    utterances: Iterable[Utterance],
    *,
    tokenizer: dict[str, Any],
    codebook_sizes: tuple[int, ...],
    frame_rate: float,
    pattern: str = "delay",
    valid_fraction: float = 0.05,
    seed: int = 0,
    shard_bytes: int = 1 << 30,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write utterances (in the order of ``names``, which fixes the split) as an LM data folder.

    Args:
        tokenizer: ``{"name", "hash", "options", "card"}`` of the tokenizer that made the codes.
        codebook_sizes: sizes of the ``K`` codebooks in the codes.
        frame_rate: frames per second of audio (before any deduplication).

    Returns:
        The manifest (also written to ``out/manifest.json``, last).
    """
    folder = Path(out)
    if (folder / MANIFEST).exists() and not overwrite:
        raise OutputError(
            f"{folder} already holds an LM data set; choose another folder, or replace it with --overwrite "
            "(overwrite=True)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {folder}: {error.strerror}") from None
    (folder / MANIFEST).unlink(missing_ok=True)
    remove_orphans(folder)  # temporary shards of a killed ``prepare``
    layout = make_pattern(pattern, codebook_sizes)
    dtype = np.dtype("<u2") if max(layout.stream_vocab_sizes) <= 1 << 16 else np.dtype("<u4")
    held_out = split_names(names, valid_fraction, seed)
    k, width = len(codebook_sizes), max(codebook_sizes)
    counts = {s: np.zeros((k, width), dtype=np.int64) for s in SPLITS}
    duration_sums, totals = (
        np.zeros(codebook_sizes[0]),
        {s: dict.fromkeys(("frames", "seconds"), 0.0) for s in SPLITS},
    )
    dedup = None
    writers = {s: _ShardWriter(folder, s, dtype, shard_bytes) for s in SPLITS}
    rows: dict[str, list[str]] = {s: [] for s in SPLITS}
    seen = 0
    try:
        for utt in utterances:
            seen += 1
            split = "valid" if utt.name in held_out else "train"
            codes = torch.as_tensor(utt.codes).long()
            if dedup is None:
                dedup = utt.durations is not None
            elif dedup != (utt.durations is not None):
                raise SlmtokError(f"{utt.name}: some utterances have unit durations and others not")
            if codes.shape[-1] == 0:
                continue
            steps = layout.encode(codes).numpy()
            shard, start = writers[split].add(steps)
            for q in range(k):
                counts[split][q] += np.bincount(codes[q].numpy(), minlength=width)
            if utt.durations is not None and split == "train":
                np.add.at(duration_sums, codes[0].numpy(), torch.as_tensor(utt.durations).numpy())
            totals[split]["frames"] += codes.shape[-1]
            totals[split]["seconds"] += float(utt.seconds)
            rows[split].append(
                f"{utt.name}\t{shard}\t{start}\t{len(steps)}\t{codes.shape[-1]}\t{utt.seconds:.6f}"
            )
    except BaseException as error:
        for writer in writers.values():
            writer.close(error)
        raise
    shards = {s: w.close() for s, w in writers.items()}
    if seen != len(names):
        raise SlmtokError(f"expected {len(names)} utterances, got {seen}")
    if not rows["train"]:
        raise SlmtokError("no training utterance has any tokens")
    for split in SPLITS:
        with atomic_path(folder / f"{split}.tsv") as tmp:
            header = "name\tshard\tstart\tsteps\tframes\tseconds\n"
            tmp.write_text(header + "".join(r + "\n" for r in rows[split]), encoding="utf-8")
    unit_counts = counts["train"][0]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tokenizer": {key: tokenizer.get(key) for key in ("name", "hash", "options", "weights")},
        "card": tokenizer.get("card"),
        "codebook_sizes": list(codebook_sizes),
        "n_codebooks": k,
        "frame_rate": float(frame_rate),
        "dedup": bool(dedup),
        "unit_durations": _mean_durations(duration_sums, unit_counts[: codebook_sizes[0]]) if dedup else None,
        "pattern": layout.to_dict(),
        "dtype": dtype.name,
        "split": {"by": "utterance", "valid_fraction": valid_fraction, "seed": seed},
        "splits": {
            split: {
                "shards": shards[split],
                "index": f"{split}.tsv",
                "utterances": len(rows[split]),
                "steps": sum(s["steps"] for s in shards[split]),
                "frames": int(totals[split]["frames"]),
                "code_tokens": int(totals[split]["frames"]) * k,
                "audio_seconds": round(totals[split]["seconds"], 6),
                "tokens_per_second": int(totals[split]["frames"]) * k / totals[split]["seconds"]
                if totals[split]["seconds"]
                else None,
            }
            for split in SPLITS
        },
        "unigram": unigram_baseline(
            counts["train"], counts["valid"], codebook_sizes, totals["valid"]["seconds"]
        ),
    }
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def _mean_durations(sums: np.ndarray, counts: np.ndarray) -> list[float]:
    """Mean frames per unit over the training split; units never seen get the overall mean."""
    overall = sums.sum() / max(counts.sum(), 1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), overall).round(4).tolist()


def unigram_baseline(
    train_counts: np.ndarray, valid_counts: np.ndarray, codebook_sizes: tuple[int, ...], valid_seconds: float
) -> dict[str, Any]:
    """Per-codebook unigram model from training counts (add-one smoothing): its entropy on train and its
    cross-entropy on validation, in bits/token, and in bits per second of validation audio."""
    train_bits = valid_bits = 0.0
    for q, size in enumerate(codebook_sizes):
        p = (train_counts[q, :size] + 1.0) / (train_counts[q, :size].sum() + size)
        train_bits += float(-(train_counts[q, :size] * np.log2(p)).sum())
        valid_bits += float(-(valid_counts[q, :size] * np.log2(p)).sum())
    n_train, n_valid = int(train_counts.sum()), int(valid_counts.sum())
    return {
        "model": "per-codebook unigram, add-one smoothed training counts",
        "train_bits_per_token": train_bits / n_train if n_train else None,
        "valid_bits_per_token": valid_bits / n_valid if n_valid else None,
        "valid_bits_per_second": valid_bits / valid_seconds if valid_seconds else None,
    }


# ------------------------------------------------------------------------------------------ reading
def load_manifest(data: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an LM data folder (``SlmtokError`` if it is not one)."""
    path = Path(data) / MANIFEST
    if not path.exists():
        raise SlmtokError(f"{data} is not an LM data folder (no {MANIFEST}); make one with slmtok lm prepare")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT or int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise SlmtokError(f"{path} is not an LM data manifest this slmtok reads")
    return manifest


class SplitStream:
    """One split's shards, memory-mapped: random training windows and validation windows.

    ``x`` are steps ``[B, L, H]``; ``y`` the next steps, with special tokens replaced by ``-100``
    (scored tokens are codes only, so losses on different patterns count the same tokens).
    """

    def __init__(self, folder: Path, info: dict[str, Any], pattern: Pattern, dtype: str) -> None:
        self.info = info
        h = pattern.n_streams
        self.code_vocab = np.array(pattern.code_vocab)
        self.shards = [
            np.memmap(
                folder / s["file"], dtype=np.dtype(dtype).newbyteorder("<"), mode="r", shape=(s["steps"], h)
            )
            for s in info["shards"]
            if s["steps"]
        ]

    def _pair(self, shard: np.ndarray, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        chunk = np.asarray(shard[start : start + length + 1], dtype=np.int64)
        x, y = chunk[:-1], chunk[1:].copy()
        y[y >= self.code_vocab] = IGNORE
        return x, y

    def sample(
        self, batch_size: int, block_size: int, seed: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows of ``block_size`` steps, drawn from ``np.random.default_rng(seed)``
        alone: the same seed gives the same batch, so a resumed run reads exactly what it would have."""
        starts = np.array([max(len(s) - block_size, 0) for s in self.shards])
        if not starts.sum():
            longest = max((len(s) for s in self.shards), default=0)
            raise SlmtokError(f"the longest shard has {longest} steps; block size {block_size} needs more")
        draws = np.random.default_rng(list(seed)).integers(0, starts.sum(), size=batch_size)
        bounds = np.cumsum(starts)
        pairs = []
        for draw in draws:
            i = int(np.searchsorted(bounds, draw, side="right"))
            pairs.append(self._pair(self.shards[i], int(draw - (bounds[i] - starts[i])), block_size))
        x, y = (torch.from_numpy(np.stack(p)) for p in zip(*pairs, strict=True))
        return x, y

    def windows(
        self, block_size: int, batch_size: int, max_steps: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Consecutive windows in which every step but each shard's first is a target exactly once,
        batched by ``batch_size``; up to ``max_steps`` targets in all (``None``: the whole split)."""
        budget = math.inf if max_steps is None else max_steps
        pending: list[tuple[np.ndarray, np.ndarray]] = []
        for shard in self.shards:
            for start in range(0, len(shard) - 1, block_size):
                length = int(min(block_size, len(shard) - 1 - start, budget))
                if length <= 0:
                    break
                budget -= length
                pair = self._pair(shard, start, length)
                if pending and len(pending[0][0]) != length:
                    yield from self._flush(pending)
                    pending = []
                pending.append(pair)
                if len(pending) == batch_size:
                    yield from self._flush(pending)
                    pending = []
        yield from self._flush(pending)

    @staticmethod
    def _flush(pending):
        if pending:
            yield tuple(torch.from_numpy(np.stack(p)) for p in zip(*pending, strict=True))


class TokenData:
    """An LM data folder opened for reading: ``manifest``, ``pattern`` and ``split(name)`` streams."""

    def __init__(self, data: str | os.PathLike) -> None:
        self.folder = Path(data)
        self.manifest = load_manifest(self.folder)
        self.pattern = pattern_from_dict(self.manifest["pattern"])

    def split(self, name: str) -> SplitStream:
        return SplitStream(self.folder, self.manifest["splits"][name], self.pattern, self.manifest["dtype"])

    def tokens_per_second(self, name: str) -> float | None:
        """Scored (code) tokens per second of audio in a split: nats/token x this / ln 2 = bits/s."""
        return self.manifest["splits"][name]["tokens_per_second"]


# ------------------------------------------------------------------------------------------ prepare
def _first_codebooks(
    utterances: Iterable[Utterance], info: dict[str, Any], n: int
) -> tuple[Iterator[Utterance], dict[str, Any]]:
    """Keep the first ``n`` codebooks (rows of ``codes [K, T]``) of token-file utterances: the coarse ones,
    as encoding with ``n_codebooks=n`` gives them (an RVQ's first codebooks do not depend on how many
    follow). ``CodesError`` when ``n`` is not in ``1..K``."""
    k = len(info["codebook_sizes"])
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= k:
        noun = "codebook" if k == 1 else "codebooks"
        raise CodesError(f"-k/n_codebooks {n}: the token files hold {k} {noun}; choose 1 to {k}")

    def cut() -> Iterator[Utterance]:
        for utt in utterances:
            yield Utterance(utt.name, torch.as_tensor(utt.codes)[:n], utt.seconds, utt.durations)

    return cut(), {**info, "codebook_sizes": tuple(info["codebook_sizes"][:n])}


def prepare(
    inputs: list[str] | None,
    out: str | os.PathLike,
    *,
    tokenizer: str | None = None,
    options: dict[str, Any] | None = None,
    tokens: list[str] | None = None,
    pattern: str = "delay",
    n_codebooks: int | None = None,
    valid_fraction: float = 0.05,
    seed: int = 0,
    batch_size: int = 8,
    device: str = "cpu",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Tokenize a corpus (audio files, folders, manifests) with ``tokenizer``, or read existing
    ``.slmtok`` files (``tokens``), and write an LM data folder at ``out``; return its manifest.

    ``progress(done, total)`` is called after each utterance.
    """
    from slmtok.lm.sources import audio_source, token_source

    if bool(inputs) == bool(tokens):
        raise SlmtokError("give audio inputs with a tokenizer, or --tokens with .slmtok files (not both)")
    if inputs:
        names, utterances, info = audio_source(
            inputs, tokenizer or "mel-rvq", options or {}, n_codebooks, batch_size, device
        )
    else:
        names, utterances, info = token_source(tokens)
        if n_codebooks is not None:
            utterances, info = _first_codebooks(utterances, info, n_codebooks)
    total = len(names)

    def tracked() -> Iterator[Utterance]:
        for i, utt in enumerate(utterances, start=1):
            yield utt
            if progress:
                progress(i, total)

    return write_dataset(
        out,
        names,
        tracked(),
        tokenizer=info["tokenizer"],
        codebook_sizes=info["codebook_sizes"],
        frame_rate=info["frame_rate"],
        pattern=pattern,
        valid_fraction=valid_fraction,
        seed=seed,
        overwrite=overwrite,
    )
