"""Codebook patterns: ``[K, T]`` codes of several codebooks <-> one LM sequence ``[S, H]`` and back.

An LM sequence has ``S`` steps and ``H`` streams; the model embeds the ``H`` tokens of a step, sums
them, and predicts the ``H`` tokens of the next step with ``H`` output heads. Three patterns:

- ``flatten``: one stream, frame after frame, codebook after codebook (``S = K * T``, ``H = 1``); code
  ``c`` of codebook ``k`` is token ``offset[k] + c`` (``offset[k] = sum(codebook_sizes[:k])``), so each
  token says which codebook it belongs to.
- ``delay`` (MusicGen): ``H = K`` streams, codebook ``k`` delayed by ``k`` steps (``S = T + K - 1``);
  stream ``k`` holds ``EMPTY`` before its first and after its last code. Each step predicts codebook
  ``k`` of frame ``t`` knowing codebooks ``< k`` of frame ``t``.
- ``parallel``: ``H = K`` streams, one frame per step (``S = T``); all codebooks of a frame are
  predicted at once, independently given the past.

Each stream ``h`` has its own vocabulary: the codes it carries (``code_vocab[h]``), then three special
tokens ``EMPTY = code_vocab[h]``, ``BOS = code_vocab[h] + 1``, ``EOS = code_vocab[h] + 2``. A whole
utterance is ``[BOS row, pattern steps, EOS row]``. With one codebook the three patterns coincide.

Patterns are registered by name in ``PATTERNS`` (plug-ins: entry-point group ``slmtok.lm_patterns``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from slmtok.errors import CodesError
from slmtok.registry import Registry

PATTERNS = Registry("LM pattern", "slmtok.lm_patterns")

#: offsets of the special tokens after a stream's codes
EMPTY, BOS, EOS = 0, 1, 2
N_SPECIAL = 3


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of one stream's special tokens (right after its ``code_vocab`` code ids)."""

    empty: int
    bos: int
    eos: int


class Pattern(ABC):
    """How ``[K, T]`` codes become ``[S, H]`` LM steps. Subclasses set ``name`` and the layout."""

    name: str = ""

    def __init__(self, codebook_sizes: tuple[int, ...] | list[int]) -> None:
        sizes = tuple(int(s) for s in codebook_sizes)
        if not sizes or any(s < 1 for s in sizes):
            raise CodesError(f"codebook sizes must be positive, got {list(codebook_sizes)}")
        self.codebook_sizes = sizes

    # ------------------------------------------------------------------------------ layout
    @property
    def n_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    @abstractmethod
    def code_vocab(self) -> tuple[int, ...]:
        """Per stream: number of code ids (``[H]``); special tokens follow them."""

    @property
    def n_streams(self) -> int:
        return len(self.code_vocab)

    @property
    def stream_vocab_sizes(self) -> tuple[int, ...]:
        """Per stream: vocabulary size including the special tokens (``[H]``)."""
        return tuple(v + N_SPECIAL for v in self.code_vocab)

    def specials(self, stream: int) -> SpecialTokens:
        v = self.code_vocab[stream]
        return SpecialTokens(v + EMPTY, v + BOS, v + EOS)

    def special_row(self, which: int) -> torch.Tensor:
        """``[H]`` row of one special token (``EMPTY``, ``BOS`` or ``EOS``) on every stream."""
        return torch.tensor([v + which for v in self.code_vocab], dtype=torch.long)

    def is_code(self, seq: torch.Tensor) -> torch.Tensor:
        """Bool mask of ``seq`` ``[..., H]`` that is True where a token is a code (not special)."""
        return seq < torch.tensor(self.code_vocab, device=seq.device)

    @abstractmethod
    def n_steps(self, n_frames: int) -> int:
        """Pattern steps (without BOS/EOS) that hold ``n_frames`` frames."""

    @abstractmethod
    def complete_frames(self, n_steps: int) -> int:
        """Frames fully determined by the first ``n_steps`` pattern steps (after BOS)."""

    @abstractmethod
    def step_ranges(self, step: int) -> list[tuple[int, int]]:
        """Per stream, the ``[low, high)`` ids a well-formed sequence may hold at pattern step ``step``
        (0 = the step after BOS, sequences longer than any frame count); one id means a forced token."""

    # ------------------------------------------------------------------------------ conversion
    @abstractmethod
    def _steps(self, codes: torch.Tensor) -> torch.Tensor:
        """``[K, T]`` codes -> ``[n_steps(T), H]`` steps."""

    @abstractmethod
    def _frames(self, steps: torch.Tensor, n_frames: int) -> torch.Tensor:
        """The first ``n_frames`` frames ``[K, n_frames]`` of ``[S, H]`` steps."""

    def encode(self, codes: torch.Tensor, *, bos: bool = True, eos: bool = True) -> torch.Tensor:
        """``[K, T]`` codes (each in ``[0, codebook_sizes[k])``) -> int64 ``[S, H]`` steps, with a BOS
        row first and an EOS row last unless turned off."""
        codes = torch.as_tensor(codes).long()
        if codes.ndim != 2 or codes.shape[0] != self.n_codebooks:
            raise CodesError(f"expected codes [K={self.n_codebooks}, T], got shape {tuple(codes.shape)}")
        limits = torch.tensor(self.codebook_sizes)[:, None]
        if codes.numel() and bool(((codes < 0) | (codes >= limits)).any()):
            raise CodesError(f"codes out of range for codebook sizes {list(self.codebook_sizes)}")
        rows = [self.special_row(BOS)[None]] if bos else []
        rows.append(
            self._steps(codes) if codes.shape[1] else torch.zeros(0, self.n_streams, dtype=torch.long)
        )
        if eos:
            rows.append(self.special_row(EOS)[None])
        return torch.cat(rows)

    def decode(self, seq: torch.Tensor, *, strict: bool = True) -> torch.Tensor:
        """Inverse of ``encode``: ``[S, H]`` steps (leading BOS and trailing EOS rows optional) ->
        ``[K, T]`` codes. ``strict`` checks that every token is where the pattern puts it (raises
        ``CodesError``); otherwise the frames that the steps complete are read as they are."""
        seq = torch.as_tensor(seq).long()
        if seq.ndim != 2 or seq.shape[1] != self.n_streams:
            raise CodesError(f"expected steps [S, H={self.n_streams}], got shape {tuple(seq.shape)}")
        if len(seq) and bool((seq[0] == self.special_row(BOS)).all()):
            seq = seq[1:]
        ended = len(seq) and bool((seq[-1] == self.special_row(EOS)).all())
        if ended:
            seq = seq[:-1]
        n_frames = self.complete_frames(len(seq))
        codes = self._frames(seq, n_frames)
        if strict:
            if not ended and len(seq):
                raise CodesError("sequence has no EOS row; decode(strict=False) reads a partial sequence")
            if len(seq) != self.n_steps(n_frames) or not torch.equal(self._steps(codes), seq):
                raise CodesError(f"sequence of {len(seq)} steps is not a well-formed {self.name} pattern")
        return codes

    def to_dict(self) -> dict[str, Any]:
        """JSON description: name, codebook sizes, streams, vocabularies and special-token ids."""
        return {
            "name": self.name,
            "codebook_sizes": list(self.codebook_sizes),
            "n_streams": self.n_streams,
            "code_vocab": list(self.code_vocab),
            "stream_vocab_sizes": list(self.stream_vocab_sizes),
            "special_tokens": {"empty": "code_vocab + 0", "bos": "code_vocab + 1", "eos": "code_vocab + 2"},
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(codebook_sizes={list(self.codebook_sizes)})"


class FlattenPattern(Pattern):
    """One stream: ``[c(0,0), c(1,0), ..., c(K-1,0), c(0,1), ...]`` with per-codebook offsets."""

    name = "flatten"

    @property
    def offsets(self) -> tuple[int, ...]:
        out, total = [], 0
        for size in self.codebook_sizes:
            out.append(total)
            total += size
        return tuple(out)

    @property
    def code_vocab(self) -> tuple[int, ...]:
        return (sum(self.codebook_sizes),)

    def n_steps(self, n_frames: int) -> int:
        return n_frames * self.n_codebooks

    def complete_frames(self, n_steps: int) -> int:
        return n_steps // self.n_codebooks

    def step_ranges(self, step: int) -> list[tuple[int, int]]:
        k = step % self.n_codebooks
        return [(self.offsets[k], self.offsets[k] + self.codebook_sizes[k])]

    def _steps(self, codes: torch.Tensor) -> torch.Tensor:
        shifted = codes + torch.tensor(self.offsets)[:, None]  # [K, T]
        return shifted.T.reshape(-1, 1)

    def _frames(self, steps: torch.Tensor, n_frames: int) -> torch.Tensor:
        k = self.n_codebooks
        flat = steps[: n_frames * k, 0].reshape(n_frames, k).T
        return flat - torch.tensor(self.offsets)[:, None]


class DelayPattern(Pattern):
    """``K`` streams, codebook ``k`` delayed by ``k`` steps (MusicGen); ``EMPTY`` fills the corners."""

    name = "delay"

    @property
    def code_vocab(self) -> tuple[int, ...]:
        return self.codebook_sizes

    def n_steps(self, n_frames: int) -> int:
        return n_frames + self.n_codebooks - 1 if n_frames else 0

    def complete_frames(self, n_steps: int) -> int:
        return max(0, n_steps - (self.n_codebooks - 1))

    def step_ranges(self, step: int) -> list[tuple[int, int]]:
        empty = self.special_row(EMPTY).tolist()
        return [
            (empty[k], empty[k] + 1) if step < k else (0, size) for k, size in enumerate(self.codebook_sizes)
        ]

    def _steps(self, codes: torch.Tensor) -> torch.Tensor:
        k, t = codes.shape
        seq = self.special_row(EMPTY).repeat(self.n_steps(t), 1)  # [S, K]
        for q in range(k):
            seq[q : q + t, q] = codes[q]
        return seq

    def _frames(self, steps: torch.Tensor, n_frames: int) -> torch.Tensor:
        return torch.stack([steps[q : q + n_frames, q] for q in range(self.n_codebooks)])


class ParallelPattern(Pattern):
    """``K`` streams, one frame per step: every codebook of a frame predicted at once."""

    name = "parallel"

    @property
    def code_vocab(self) -> tuple[int, ...]:
        return self.codebook_sizes

    def n_steps(self, n_frames: int) -> int:
        return n_frames

    def complete_frames(self, n_steps: int) -> int:
        return n_steps

    def step_ranges(self, step: int) -> list[tuple[int, int]]:
        return [(0, size) for size in self.codebook_sizes]

    def _steps(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.T.clone()

    def _frames(self, steps: torch.Tensor, n_frames: int) -> torch.Tensor:
        return steps[:n_frames].T.clone()


PATTERNS.register("flatten", FlattenPattern, description=FlattenPattern.__doc__, origin="builtin")
PATTERNS.register("delay", DelayPattern, description=DelayPattern.__doc__, origin="builtin")
PATTERNS.register("parallel", ParallelPattern, description=ParallelPattern.__doc__, origin="builtin")


def make_pattern(name: str, codebook_sizes: tuple[int, ...] | list[int]) -> Pattern:
    """The pattern registered as ``name`` for these codebook sizes (``RegistryError`` if unknown)."""
    return PATTERNS.create(name, codebook_sizes=tuple(codebook_sizes))


def pattern_from_dict(data: dict[str, Any]) -> Pattern:
    """Rebuild a pattern from ``Pattern.to_dict()`` output (as stored in a data manifest)."""
    return make_pattern(data["name"], data["codebook_sizes"])
