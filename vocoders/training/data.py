"""Training data for unit vocoders: (frame-level units, waveform) pairs and seeded random segments.

Every corpus file is read, converted to the tokenizer's rate (mono), and tokenized to frame-level units
(no deduplication); the waveform is cut or zero-padded to ``frames x hop`` samples so that unit ``j``
lines up with samples ``[j * hop, (j + 1) * hop)``. The pairs are cached in one safetensors file, so a
resumed run does not tokenize the corpus again. Segments are drawn with a generator seeded by
``(seed, step)``: a resumed run draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError

if TYPE_CHECKING:
    from slmtok.inputs import InputItem


@dataclass
class UnitCorpus:
    """Frame-level ``units`` (``[T_i]`` int64) and waveforms (``[T_i * hop]`` float32) of a corpus."""

    names: list[str]
    units: list[torch.Tensor]
    audio: list[torch.Tensor]
    hop: int
    sample_rate: int

    def __len__(self) -> int:
        return len(self.units)

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        from safetensors.torch import save

        tensors = {}
        for i, (u, a) in enumerate(zip(self.units, self.audio, strict=True)):
            tensors[f"units.{i}"] = u.contiguous()
            tensors[f"audio.{i}"] = a.contiguous()
        info = {"names": self.names, "hop": self.hop, "sample_rate": self.sample_rate, **meta}
        blob = save(tensors, metadata={"corpus": json.dumps(info)})
        with atomic_path(path) as tmp:
            tmp.write_bytes(blob)

    @classmethod
    def load(cls, path: Path, expect: dict[str, Any]) -> UnitCorpus | None:
        """The cached corpus at ``path`` if it was made from the same inputs (``expect``), else ``None``."""
        from safetensors import safe_open

        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as f:
            info = json.loads((f.metadata() or {})["corpus"])
            if any(info.get(k) != v for k, v in expect.items()):
                return None
            n = len(info["names"])
            units = [f.get_tensor(f"units.{i}") for i in range(n)]
            audio = [f.get_tensor(f"audio.{i}") for i in range(n)]
        return cls(info["names"], units, audio, info["hop"], info["sample_rate"])


def corpus_key(files: list[Path | InputItem], tokenizer_hash: str) -> str:
    """Identifies a (file list, tokenizer) pair for the cache: each file's resolved path, size and mtime,
    and for a segment, tar member or dataset row (an ``InputItem``) also which part of the file."""
    digest = hashlib.sha256(tokenizer_hash.encode())
    for f in files:
        path = f if isinstance(f, Path) else f.path
        stat = path.stat()
        part = "" if isinstance(f, Path) or f.label == str(f.path) else f"|{f.label}"
        digest.update(f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}{part}".encode())
    return digest.hexdigest()


def build_corpus(
    files: list[Path | InputItem],
    frame_units: Callable[[torch.Tensor], torch.Tensor],
    *,
    sample_rate: int,
    hop: int,
    progress: Callable[[int, int], None] | None = None,
) -> UnitCorpus:
    """Tokenize ``files`` (paths, or ``InputItem``s: segments, tar members, dataset rows) with
    ``frame_units`` (``[T]`` audio at ``sample_rate`` -> ``[T']`` units); items are named by their stem
    (a path) or output name (an item)."""
    from slmtok.audio import prepare, read_audio
    from slmtok.encoding import read_item
    from slmtok.errors import AudioError

    names, units, audio = [], [], []
    for i, path in enumerate(files):
        try:
            wav, rate = read_audio(path) if isinstance(path, Path) else read_item(path)
        except AudioError:
            continue  # empty or unreadable prompt files exist in real corpora
        wav = prepare(wav, rate, None, target_rate=sample_rate, target_channels=1).wav[0, 0]
        if wav.numel() < 2 * hop:
            continue
        u = frame_units(wav).long().cpu()
        n = u.numel() * hop
        a = wav[:n] if wav.numel() >= n else torch.nn.functional.pad(wav, (0, n - wav.numel()))
        names.append(path.stem if isinstance(path, Path) else path.name.as_posix())
        units.append(u)
        audio.append(a.float().contiguous())
        if progress:
            progress(i + 1, len(files))
    if not units:
        raise SlmtokError("no usable audio in the training corpus")
    return UnitCorpus(names, units, audio, hop, sample_rate)


def draw_batch(
    corpus: UnitCorpus,
    indices: list[int],
    segment_frames: int,
    batch_size: int,
    seed: int,
    step: int,
    rows: range | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random segments from the items ``indices``: units ``[B, F]``, audio ``[B, 1, F*hop]``.

    Items are drawn with probability proportional to their length; the generator is seeded by
    ``(seed, step)`` so the batch of a given step never depends on what ran before. ``rows`` (e.g.
    ``range(rank, batch_size, world)``) keeps only those rows of the batch: the processes of a
    distributed run draw disjoint parts of the one batch a single process would draw.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    lengths = torch.tensor([corpus.units[i].numel() for i in indices], dtype=torch.float64)
    picks = torch.multinomial(lengths, batch_size, replacement=True, generator=gen).tolist()
    starts = []  # drawn for every row, in order, whichever rows are kept
    for pick in picks:
        high = max(1, corpus.units[indices[pick]].numel() - segment_frames + 1)
        starts.append(int(torch.randint(0, high, (1,), generator=gen)))
    keep = list(range(batch_size) if rows is None else rows)
    units = torch.zeros(len(keep), segment_frames, dtype=torch.long)
    audio = torch.zeros(len(keep), 1, segment_frames * corpus.hop)
    for b, row in enumerate(keep):
        u, a, start = corpus.units[indices[picks[row]]], corpus.audio[indices[picks[row]]], starts[row]
        seg = u[start : start + segment_frames]
        units[b, : seg.numel()] = seg
        if seg.numel() < segment_frames:  # short item: repeat its last unit, silence after its end
            units[b, seg.numel() :] = seg[-1]
        wav = a[start * corpus.hop : (start + segment_frames) * corpus.hop]
        audio[b, 0, : wav.numel()] = wav
    return units, audio
