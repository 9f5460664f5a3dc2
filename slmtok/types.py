"""The data that crosses the tokenizer interface: cards, tokens and audio.

Layouts are fixed everywhere in slmtok:

- audio ``wav``: float32 ``[B, C, T]`` (batch, channels, samples), zero-padded, with ``lengths`` ``[B]``
  in samples;
- token ``codes``: int64 ``[B, K, T]`` (batch, codebooks, frames), padded with ``-1``, with ``lengths``
  ``[B]`` in frames.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

PAD_CODE = -1
KINDS = ("semantic", "acoustic", "hybrid", "baseline")


@dataclass(frozen=True)
class TokenizerCard:
    """What a tokenizer is, as loaded: rates, codebooks, provenance and a content hash.

    ``bitrate`` and ``tokens_per_second`` are computed from ``frame_rate`` and ``codebook_sizes``,
    never typed by hand. ``hash`` is a sha256 over the tokenizer's configuration and weights (not over
    the default number of codebooks, which is a per-call choice).

    ``sample_rate`` is the rate ``encode`` converts its input to; ``output_sample_rate`` the rate of the
    audio ``decode`` returns: the same for most tokenizers (``None`` means ``sample_rate``), 24 kHz for
    NeuCodec's 16 kHz input.
    """

    name: str
    kind: str
    sample_rate: int
    channels: int
    frame_rate: float
    codebook_sizes: tuple[int, ...]
    max_codebooks: int
    semantic_codebooks: tuple[int, ...] = ()
    license: str = "unknown"
    source: str = ""
    description: str = ""
    hash: str = ""
    output_sample_rate: int | None = None

    def __post_init__(self) -> None:
        if self.output_sample_rate is None:
            object.__setattr__(self, "output_sample_rate", self.sample_rate)
        if isinstance(self.output_sample_rate, bool) or not (
            isinstance(self.output_sample_rate, int) and self.output_sample_rate > 0
        ):
            raise ValueError(
                f"card output_sample_rate must be a positive integer, got {self.output_sample_rate!r}"
            )
        if self.kind not in KINDS:
            raise ValueError(f"card kind must be one of {KINDS}, got {self.kind!r}")
        if not self.codebook_sizes or any(s < 2 for s in self.codebook_sizes):
            raise ValueError(f"card codebook_sizes must be non-empty sizes >= 2, got {self.codebook_sizes}")
        if len(self.codebook_sizes) > self.max_codebooks:
            raise ValueError("card has more codebooks than max_codebooks")

    @property
    def n_codebooks(self) -> int:
        """Number of codebooks ``K`` that ``encode`` produces by default."""
        return len(self.codebook_sizes)

    @property
    def bitrate(self) -> float:
        """Nominal bitrate in bits/s: sum over codebooks of frame rate x log2(codebook size)."""
        return sum(self.frame_rate * math.log2(size) for size in self.codebook_sizes)

    @property
    def tokens_per_second(self) -> float:
        """Tokens per second of audio: frame rate x number of codebooks."""
        return self.frame_rate * self.n_codebooks

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, including the computed ``n_codebooks``, ``bitrate`` and ``tokens_per_second``."""
        data = asdict(self)
        data["codebook_sizes"] = list(self.codebook_sizes)
        data["semantic_codebooks"] = list(self.semantic_codebooks)
        data.update(
            n_codebooks=self.n_codebooks, bitrate=self.bitrate, tokens_per_second=self.tokens_per_second
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerCard:
        names = {f for f in cls.__dataclass_fields__}
        kept = {k: v for k, v in data.items() if k in names}
        kept["codebook_sizes"] = tuple(kept["codebook_sizes"])
        kept["semantic_codebooks"] = tuple(kept.get("semantic_codebooks", ()))
        return cls(**kept)


@dataclass(frozen=True)
class WeightsFile:
    """One weights file (or folder) a tokenizer was loaded from, as recorded in its tokens.

    Attributes:
        option: the load option that named it (``"checkpoint"``, ``"kmeans"``, ``"vocoder"``, ``"bundle"``,
            ``"card"``).
        index: its position when the option is a list of paths (e.g. a ``(config, weights)`` pair), else
            ``None``.
        path: the resolved absolute path it was read from.
        sha256: hex sha256 of the file; for a folder, of its manifest (``relative path, size, sha256`` of
            every file, sorted).
        kind: ``"file"`` or ``"folder"``.
        size: bytes of the file (of every file in the folder): a path of another size is refused
            without reading it.
    """

    option: str
    index: int | None
    path: str
    sha256: str
    kind: str = "file"
    size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TokenizerRef:
    """Which tokenizer made some tokens: registry name, card hash, load options and weights files.

    ``options`` are the options it was loaded with (``trust`` is never kept: it is a choice of whoever
    loads, not a property of the tokens). ``weights`` records each weights file by resolved path and
    sha256; ``slmtok.load_for(tokens)`` finds the weights again by that hash, and takes only harmless,
    format-defining options from a ref read out of a file.
    """

    name: str
    hash: str
    options: dict[str, Any] = field(default_factory=dict)
    weights: tuple[WeightsFile, ...] = ()


@dataclass(frozen=True)
class InputInfo:
    """What the input audio was, and what ``encode`` did to it before tokenizing.

    ``lengths`` are the original per-item lengths in samples at ``sample_rate``; ``steps`` are
    human-readable records such as ``"resampled 44100 Hz -> 16000 Hz"``.
    """

    sample_rate: int
    channels: int
    lengths: tuple[int, ...]
    steps: tuple[str, ...] = ()

    @property
    def durations(self) -> tuple[float, ...]:
        """Per-item durations in seconds."""
        return tuple(n / self.sample_rate for n in self.lengths)


@dataclass
class Tokens:
    """Discrete tokens of a batch of audio.

    Attributes:
        codes: int64 ``[B, K, T]``, padded with ``-1`` past each item's length.
        lengths: int64 ``[B]``, valid frames per item.
        frame_rate: frames per second of audio (Hz), before any deduplication.
        tokenizer: the tokenizer that made them (name, card hash, load options).
        extras: named tensors with a leading batch axis, e.g. ``durations`` ``[B, 1, T]`` (frames per
            deduplicated unit).
        input: what the input audio was and how it was converted, when known.
    """

    codes: torch.Tensor
    lengths: torch.Tensor
    frame_rate: float
    tokenizer: TokenizerRef
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    input: InputInfo | None = None

    def __post_init__(self) -> None:
        if self.codes.ndim != 3:
            raise ValueError(f"codes must be [B, K, T], got shape {tuple(self.codes.shape)}")
        if self.lengths.shape != (self.codes.shape[0],):
            raise ValueError(
                f"lengths must be [B]={self.codes.shape[0]}, got shape {tuple(self.lengths.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return self.codes.shape[0]

    @property
    def n_codebooks(self) -> int:
        return self.codes.shape[1]

    def __len__(self) -> int:
        return self.batch_size

    def item(self, index: int) -> torch.Tensor:
        """Codes of one item without padding: ``[K, lengths[index]]``."""
        return self.codes[index, :, : int(self.lengths[index])]

    def select(self, indices: list[int]) -> Tokens:
        """A new batch of the given items, trimmed to their longest length."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        lengths = self.lengths[idx]
        width = int(lengths.max()) if len(indices) else 0
        extras = {k: v[idx][..., :width] for k, v in self.extras.items()}
        info = self.input
        if info is not None:
            info = replace(info, lengths=tuple(info.lengths[i] for i in indices))
        return replace(self, codes=self.codes[idx, :, :width], lengths=lengths, extras=extras, input=info)

    def to_text(self, *, layout: str = "auto") -> list[str]:
        """One unit string per item, e.g. ``<|s_12|><|s_7|>`` or ``<|c0_12|><|c1_7|>...`` (layout in
        ``slmtok.text_units``; read back with ``slmtok.text_units.from_text``)."""
        from slmtok.text_units import to_text

        return to_text(self, layout=layout)

    def to(self, device: torch.device | str) -> Tokens:
        return replace(
            self,
            codes=self.codes.to(device),
            lengths=self.lengths.to(device),
            extras={k: v.to(device) for k, v in self.extras.items()},
        )

    @staticmethod
    def cat(items: list[Tokens]) -> Tokens:
        """Concatenate batches from the same tokenizer along the batch axis (re-padding with -1)."""
        if not items:
            raise ValueError("Tokens.cat needs at least one batch")
        first = items[0]
        for other in items[1:]:
            if (other.tokenizer.name, other.tokenizer.hash) != (first.tokenizer.name, first.tokenizer.hash):
                raise ValueError("Tokens.cat: batches come from different tokenizers")
            if other.n_codebooks != first.n_codebooks:
                raise ValueError("Tokens.cat: batches have different numbers of codebooks")
        width = max(int(t.codes.shape[-1]) for t in items)
        codes = torch.cat([_pad_last(t.codes, width, PAD_CODE) for t in items])
        lengths = torch.cat([t.lengths for t in items])
        extras = {
            k: torch.cat([_pad_last(t.extras[k], width, 0) for t in items])
            for k in first.extras
            if all(k in t.extras for t in items)
        }
        infos = [t.input for t in items]
        info = None
        if all(i is not None for i in infos) and len({(i.sample_rate, i.channels) for i in infos}) == 1:
            info = InputInfo(
                sample_rate=infos[0].sample_rate,
                channels=infos[0].channels,
                lengths=tuple(n for i in infos for n in i.lengths),
                steps=infos[0].steps,
            )
        return Tokens(codes, lengths, first.frame_rate, first.tokenizer, extras, info)


@dataclass
class Audio:
    """A batch of audio: ``wav`` float32 ``[B, C, T]`` zero-padded, ``lengths`` ``[B]`` in samples."""

    wav: torch.Tensor
    lengths: torch.Tensor
    sample_rate: int

    def __post_init__(self) -> None:
        if self.wav.ndim != 3:
            raise ValueError(f"wav must be [B, C, T], got shape {tuple(self.wav.shape)}")

    @property
    def batch_size(self) -> int:
        return self.wav.shape[0]

    def __len__(self) -> int:
        return self.batch_size

    def item(self, index: int) -> torch.Tensor:
        """One item without padding: ``[C, lengths[index]]``."""
        return self.wav[index, :, : int(self.lengths[index])]

    @property
    def durations(self) -> list[float]:
        """Per-item durations in seconds."""
        return [int(n) / self.sample_rate for n in self.lengths]


def _pad_last(x: torch.Tensor, width: int, value: int) -> torch.Tensor:
    pad = width - x.shape[-1]
    return torch.nn.functional.pad(x, (0, pad), value=value) if pad > 0 else x
