"""Chunk-by-chunk encoding and decoding for causal tokenizers: ``tok.streaming()``.

A causal tokenizer's frame ``t`` depends only on the input samples ``[0, (t + 1) * hop + lookahead)``
(``hop = sample_rate / frame_rate``; ``lookahead`` samples, 0 for Mimi and EnCodec 24 kHz). So a frame is
*final* once that much input has arrived, and its codes are then the codes the whole input will give it.

Two engines, chosen with ``tok.streaming(engine=...)``:

- ``"carried"`` (Mimi, ``slmtok.codecs.mimi_streaming``): the model's own carried state (transformers'
  convolution padding cache and sliding-window key/value caches) advances frame by frame, so every chunk
  costs the same however long the stream has run, and the state stops growing once the attention
  window is full. No bound on the stream's length.
- ``"recompute"`` (every causal tokenizer): ``StreamingEncoder`` keeps every sample pushed so far; when a
  push makes new frames final it encodes the prefix of whole final frames with the tokenizer's own
  ``encode`` and emits the frames it had not emitted yet; ``flush`` encodes the whole input (its last,
  partial frame included). ``StreamingDecoder`` decodes all codes received so far and emits the samples
  it had not emitted (a causal decoder's samples of frame ``t`` depend on frames ``<= t`` only).
  Exact, but each push re-encodes (and re-decodes) everything so far: ``S`` seconds in chunks of ``c``
  seconds cost ``S^2 / (2 c)`` seconds of audio through the model, O(S^2) (80 ms chunks: a 60 s stream
  costs as much as encoding 6.3 hours at once). Streams are bounded by ``max_seconds`` (default 60 s);
  a push past it is refused with one line (``StreamingError``), and nothing pushed before is lost.

``"auto"`` (the default) takes the carried engine where the tokenizer has one, else recompute.

Chunks are pushed at the tokenizer's own sample rate (resampling chunk by chunk would not equal
resampling the whole file); channels are down-mixed and integer PCM converted as ``encode`` does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch

from slmtok.audio import prepare
from slmtok.errors import SlmtokError
from slmtok.types import PAD_CODE, Audio, Tokens

#: default bound on one stream of the recompute engine (seconds of audio), see the module docstring
MAX_STREAM_SECONDS = 60.0
#: the engines ``tok.streaming(engine=...)`` takes
ENGINES = ("auto", "carried", "recompute")


class StreamingError(SlmtokError, ValueError):
    """A tokenizer that cannot stream, a chunk of the wrong shape, or a stream past its bound."""


def frame_hop(card) -> int:
    """Samples per frame, ``sample_rate / frame_rate``; ``StreamingError`` unless it is an integer."""
    hop = card.sample_rate / card.frame_rate
    if abs(hop - round(hop)) > 1e-9 or round(hop) < 1:
        raise StreamingError(f"{card.name!r} has {hop:g} samples per frame; streaming needs a whole number")
    return int(round(hop))


def slice_frames(tokens: Tokens, start: int, stop: int) -> Tokens:
    """Frames ``[start, stop)`` of tokens whose items all have the same length: codes ``[B, K, stop - start]``
    and per-frame extras (``[B, ..., T]``) cut alike; ``input`` is dropped (it described the prefix)."""
    width = tokens.codes.shape[-1]
    extras = {
        k: v[..., start:stop] if v.ndim >= 2 and v.shape[-1] == width else v for k, v in tokens.extras.items()
    }
    n = max(0, stop - start)
    lengths = torch.full((tokens.batch_size,), n, dtype=torch.long)
    return replace(tokens, codes=tokens.codes[..., start:stop], lengths=lengths, extras=extras, input=None)


class EncoderBase:
    """What every streaming encoder shares: the chunk checks and conversion, ``flush``-closes, empty
    outputs. ``push(chunk)``: ``chunk`` ``[T]``, ``[C, T]`` or ``[B, C, T]`` (``B = batch_size``; any
    ``T >= 0``, shorter than a frame too) at ``tok.card.sample_rate`` Hz -> ``Tokens`` ``[B, K, F]`` of the
    ``F >= 0`` frames that became final. ``flush()`` -> the remaining frames (the last, partial one
    included); the stream is then closed. Concatenated in time, the outputs equal ``tok.encode(whole
    input)``."""

    #: ``"carried"`` or ``"recompute"``: what ``tok.streaming(engine="auto")`` chose
    engine: str = ""

    def __init__(self, tok, batch_size: int = 1, *, n_codebooks: int | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise StreamingError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.tok = tok
        self.batch_size = batch_size
        self.n_codebooks = tok._check_n_codebooks(n_codebooks)
        self.hop = frame_hop(tok.card)
        self._closed = False
        self._ref = None

    def _check_open(self) -> None:
        if self._closed:
            raise StreamingError("this stream was flushed; start a new one with tok.streaming()")

    def _convert(self, chunk) -> torch.Tensor:
        """``chunk`` -> float ``[B, C, T]`` on the CPU at the card's rate, or ``StreamingError``."""
        card = self.tok.card
        x = torch.as_tensor(chunk) if isinstance(chunk, np.ndarray) else chunk
        if not isinstance(x, torch.Tensor):
            raise StreamingError(f"a chunk must be a tensor or numpy array, got {type(chunk).__name__}")
        if x.ndim not in (1, 2, 3):
            raise StreamingError(f"a chunk must be [T], [C, T] or [B, C, T], got shape {list(x.shape)}")
        batch = x.shape[0] if x.ndim == 3 else 1
        if batch != self.batch_size:
            raise StreamingError(f"this stream holds {self.batch_size} item(s); the chunk has {batch}")
        if x.shape[-1] == 0:
            return torch.zeros(self.batch_size, card.channels, 0)
        audio = prepare(
            x, card.sample_rate, None, target_rate=card.sample_rate, target_channels=card.channels
        )
        return audio.wav.float().cpu()

    def _empty(self) -> Tokens:
        codes = torch.full((self.batch_size, self.n_codebooks, 0), PAD_CODE, dtype=torch.long)
        return Tokens(
            codes=codes,
            lengths=torch.zeros(self.batch_size, dtype=torch.long),
            frame_rate=self.tok.card.frame_rate,
            tokenizer=self._ref or self.tok.ref,
        )


class StreamingEncoder(EncoderBase):
    """The recompute engine's encoder (see the module docstring; the ``EncoderBase`` contract), bounded
    by ``max_seconds`` of input. Build with ``tok.streaming(engine="recompute")``."""

    engine = "recompute"

    def __init__(
        self,
        tok,
        batch_size: int = 1,
        *,
        n_codebooks: int | None = None,
        max_seconds: float = MAX_STREAM_SECONDS,
    ) -> None:
        super().__init__(tok, batch_size, n_codebooks=n_codebooks)
        if not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
            raise StreamingError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
        self.lookahead = int(getattr(tok, "lookahead", 0))
        #: frames held back at the start: until then, reflect padding reads ahead (EnCodec, 7 frames)
        self.warmup = int(getattr(tok, "warmup_frames", 0))
        self.max_samples = int(max_seconds * tok.card.sample_rate)
        self.max_seconds = float(max_seconds)
        self._buffer = torch.zeros(batch_size, tok.card.channels, 0)  # [B, C, n] at the card's rate
        self._emitted = 0

    @property
    def samples(self) -> int:
        """Samples pushed so far (per item, at the card's rate)."""
        return self._buffer.shape[-1]

    def push(self, chunk: torch.Tensor | np.ndarray) -> Tokens:
        """Add ``chunk`` and return the frames it made final (possibly none)."""
        self._check_open()
        x = self._convert(chunk)
        if self.samples + x.shape[-1] > self.max_samples:
            raise StreamingError(
                f"stream would hold {(self.samples + x.shape[-1]) / self.tok.card.sample_rate:.4g} s, more than "
                f"max_seconds={self.max_seconds:g} (streaming re-encodes from the start; raise max_seconds)"
            )
        self._buffer = torch.cat([self._buffer, x], dim=-1)
        final = max(0, (self.samples - self.lookahead) // self.hop)
        final = final if final >= self.warmup else 0
        if final <= self._emitted:
            return self._empty()
        tokens = self._encode(self._buffer[..., : final * self.hop])
        return self._emit(tokens, final)

    def flush(self) -> Tokens:
        """Return every frame not yet emitted (the whole input's codes) and close the stream."""
        self._check_open()
        self._closed = True
        if self.samples == 0:
            return self._empty()
        tokens = self._encode(self._buffer)
        return self._emit(tokens, tokens.codes.shape[-1])

    def _encode(self, wav: torch.Tensor) -> Tokens:
        tokens = self.tok.encode(wav, self.tok.card.sample_rate, n_codebooks=self.n_codebooks)
        self._ref = tokens.tokenizer
        return tokens

    def _emit(self, tokens: Tokens, final: int) -> Tokens:
        if tokens.codes.shape[-1] < final or bool((tokens.lengths != tokens.codes.shape[-1]).any()):
            raise StreamingError(
                f"{self.tok.card.name!r} gave {tokens.codes.shape[-1]} frames, expected {final}"
            )
        out = slice_frames(tokens, self._emitted, final)
        self._emitted = max(self._emitted, final)
        return out


class DecoderBase:
    """What every streaming decoder shares. ``push(tokens)``: ``Tokens`` ``[B, K, F]`` from this tokenizer
    (every item ``F`` frames, ``F >= 0``, as the encoders emit them) -> ``Audio`` ``[B, C, S]`` of the new
    samples at the card's rate. ``flush()`` -> what is left (nothing for a causal decoder) and closes the
    stream. Concatenated, the outputs equal ``tok.decode(all tokens)`` within floating-point rounding."""

    def __init__(self, tok, batch_size: int = 1) -> None:
        self.tok = tok
        self.batch_size = batch_size
        self._codebooks: int | None = None
        self._closed = False

    def _check_push(self, tokens: Tokens) -> int:
        """Check ``tokens`` as ``decode`` does (and against the stream); return their frame count."""
        if self._closed:
            raise StreamingError("this stream was flushed; start a new one with tok.streaming()")
        if not isinstance(tokens, Tokens):
            raise StreamingError(f"push takes Tokens, got {type(tokens).__name__}")
        if tokens.batch_size != self.batch_size:
            raise StreamingError(
                f"this stream holds {self.batch_size} item(s); the tokens have {tokens.batch_size}"
            )
        width = tokens.codes.shape[-1]
        if bool((tokens.lengths != width).any()):
            raise StreamingError(
                f"streamed tokens must give every item all {width} frames, got {tokens.lengths.tolist()}"
            )
        if width == 0:
            return 0
        self.tok.check_tokens(tokens)
        if self._codebooks is not None and tokens.n_codebooks != self._codebooks:
            raise StreamingError(
                f"this stream has {self._codebooks} codebooks; the tokens have {tokens.n_codebooks}"
            )
        return width

    def flush(self) -> Audio:
        """Close the stream; a causal decoder has emitted everything already (empty ``Audio``)."""
        self._closed = True
        return self._audio(torch.zeros(self.batch_size, self.tok.card.channels, 0))

    def _audio(self, wav: torch.Tensor) -> Audio:
        lengths = torch.full((self.batch_size,), wav.shape[-1], dtype=torch.long)
        return Audio(wav, lengths, self.tok.card.sample_rate)


class StreamingDecoder(DecoderBase):
    """The recompute engine's decoder (the ``DecoderBase`` contract): every push decodes all the codes so
    far, bounded by ``max_seconds`` of decoded audio. Build with ``tok.streaming(engine="recompute")``."""

    def __init__(self, tok, batch_size: int = 1, *, max_seconds: float = MAX_STREAM_SECONDS) -> None:
        super().__init__(tok, batch_size)
        self.max_seconds = float(max_seconds)
        self._pieces: list[Tokens] = []
        self._frames = 0
        self._emitted = 0

    def push(self, tokens: Tokens) -> Audio:
        """Add ``tokens`` (checked as ``decode`` checks them) and return the samples they completed."""
        width = self._check_push(tokens)
        if width == 0:
            return self._audio(torch.zeros(self.batch_size, self.tok.card.channels, 0))
        if (self._frames + width) / self.tok.card.frame_rate > self.max_seconds:
            raise StreamingError(
                f"stream would decode more than max_seconds={self.max_seconds:g} s "
                "(streaming re-decodes from the start; raise max_seconds)"
            )
        self._codebooks = tokens.n_codebooks
        self._pieces.append(tokens)
        self._frames += width
        audio = self.tok.decode(self._joined())
        new = audio.wav[..., self._emitted : int(audio.lengths.min())]
        self._emitted += new.shape[-1]
        return self._audio(new)

    def _joined(self) -> Tokens:
        first = self._pieces[0]
        codes = torch.cat([p.codes for p in self._pieces], dim=-1)
        extras = {}
        for key, value in first.extras.items():
            parts = [p.extras.get(key) for p in self._pieces]
            if all(v is not None and v.ndim >= 2 for v in parts) and value.shape[-1] == first.codes.shape[-1]:
                extras[key] = torch.cat(parts, dim=-1)
        lengths = torch.full((self.batch_size,), codes.shape[-1], dtype=torch.long)
        return replace(first, codes=codes, lengths=lengths, extras=extras, input=None)


class Stream(NamedTuple):
    """What ``tok.streaming()`` returns: an encoder and a decoder for the same tokenizer."""

    encoder: EncoderBase
    decoder: DecoderBase


def open_stream(
    tok,
    batch_size: int = 1,
    *,
    n_codebooks: int | None = None,
    max_seconds: float | None = None,
    engine: str = "auto",
) -> Stream:
    """An encoder/decoder pair for a causal ``tok`` (``tok.streaming`` checks it is causal).

    ``engine``: ``"carried"`` (the tokenizer's ``open_carried_stream``, unbounded unless ``max_seconds``
    is given), ``"recompute"`` (bounded by ``max_seconds``, default 60 s) or ``"auto"`` (carried where the
    tokenizer has it and its ``carried_stream_refusal`` is ``None``, else recompute)."""
    if engine not in ENGINES:
        raise StreamingError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if max_seconds is not None and not (
        isinstance(max_seconds, (int, float)) and not isinstance(max_seconds, bool) and max_seconds > 0
    ):
        raise StreamingError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    refusal = carried_refusal(tok)
    if engine == "carried" and refusal:
        raise StreamingError(f"{refusal}; use engine='recompute'")
    if engine != "recompute" and refusal is None:
        return tok.open_carried_stream(batch_size, n_codebooks=n_codebooks, max_seconds=max_seconds)
    limit = MAX_STREAM_SECONDS if max_seconds is None else max_seconds
    encoder = StreamingEncoder(tok, batch_size, n_codebooks=n_codebooks, max_seconds=limit)
    return Stream(encoder, StreamingDecoder(tok, batch_size, max_seconds=limit))


def carried_refusal(tok) -> str | None:
    """``None`` when ``tok`` streams with its carried state, else the one-line reason it cannot."""
    if not callable(getattr(tok, "open_carried_stream", None)):
        return f"{tok.card.name!r} has no carried-state streaming engine"
    return getattr(tok, "carried_stream_refusal", None)
