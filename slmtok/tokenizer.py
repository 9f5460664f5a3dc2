"""The ``Tokenizer`` base class: one ``encode``/``decode`` contract for every tokenizer family.

Subclasses implement two hooks on tensors that are already validated and converted:

- ``_encode(wav [B, C, T], lengths [B], n_codebooks) -> (codes [B, K, T'] padded -1, frame lengths [B], extras)``
- ``_decode(codes [B, K, T'], lengths [B], extras) -> (wav [B, C, T], sample lengths [B])``

The base class does everything else: input conversion (``slmtok.audio.prepare``), the codebook-count
argument, provenance on the tokens, and refusing tokens from another tokenizer or with codes out of range.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from slmtok.audio import prepare
from slmtok.errors import CodesError, DecodeLimitError, SlmtokError, TokenizerMismatchError
from slmtok.types import PAD_CODE, Audio, TokenizerCard, TokenizerRef, Tokens

#: default bound on the audio one decoded item may hold (seconds): 4 h
MAX_DECODE_SECONDS = 4 * 3600.0


class Tokenizer(ABC):
    """Audio <-> discrete tokens. Build through ``slmtok.load(name, ...)``."""

    #: set by subclasses in ``__init__``
    card: TokenizerCard
    device: torch.device
    #: causal tokenizers (frame ``t`` depends on no input past ``(t + 1) * hop + lookahead`` samples, and
    #: the decoder's samples of frame ``t`` on no later frame) set this; only they can ``streaming()``
    causal: bool = False
    #: input samples past a frame's end that the frame depends on (causal tokenizers)
    lookahead: int = 0

    def __init__(
        self, *, device: str | torch.device = "cpu", load_options: dict[str, Any] | None = None
    ) -> None:
        self.device = torch.device(device)
        self.load_options: dict[str, Any] = dict(load_options or {})

    # -------------------------------------------------------------------------------- public API
    @property
    def ref(self) -> TokenizerRef:
        """Name, hash, load options (without ``trust``) and weights files (resolved path and sha256)
        recorded on every ``Tokens`` this tokenizer makes."""
        from slmtok.provenance import recorded_options, weights_records

        options = recorded_options(self.load_options)
        key = json.dumps(options, sort_keys=True, default=str)
        cached = getattr(self, "_weights_cache", None)
        if cached is None or cached[0] != key:  # hashed once per tokenizer (and per file in-process)
            cached = (key, weights_records(options))
            self._weights_cache = cached
        return TokenizerRef(self.card.name, self.card.hash, options, cached[1])

    @property
    def max_codebook_sizes(self) -> tuple[int, ...]:
        """Sizes of every codebook the model has (``card.codebook_sizes`` is the default prefix)."""
        return self.card.codebook_sizes

    @torch.inference_mode()
    def encode(
        self,
        wav: torch.Tensor | np.ndarray,
        sample_rate: int,
        *,
        lengths: torch.Tensor | list[int] | None = None,
        n_codebooks: int | None = None,
    ) -> Tokens:
        """Tokenize audio.

        Args:
            wav: ``[T]``, ``[C, T]`` or ``[B, C, T]`` float audio (or int PCM) at ``sample_rate`` Hz.
            lengths: valid samples per item, ``[B]``; ``None`` means every item fills the width.
            n_codebooks: codebooks to emit (default ``card.n_codebooks``, at most ``card.max_codebooks``).

        Returns:
            ``Tokens`` with ``codes`` int64 ``[B, K, T']`` padded with -1 and ``lengths`` in frames.
            ``tokens.input`` records the input rate, channels, durations and the conversions applied.
        """
        k = self._check_n_codebooks(n_codebooks)
        audio = prepare(
            wav,
            sample_rate,
            lengths,
            target_rate=self.card.sample_rate,
            target_channels=self.card.channels,
            device=self.device,
        )
        codes, frame_lengths, extras = self._encode(audio.wav, audio.lengths, k)
        codes = codes.long().cpu()
        frame_lengths = frame_lengths.long().cpu()
        mask = torch.arange(codes.shape[-1])[None, None, :] >= frame_lengths[:, None, None]
        codes = codes.masked_fill(mask, PAD_CODE)
        return Tokens(
            codes=codes,
            lengths=frame_lengths,
            frame_rate=self.card.frame_rate,
            tokenizer=self.ref,
            extras={name: t.cpu() for name, t in extras.items()},
            input=audio.info,
        )

    @torch.inference_mode()
    def decode(self, tokens: Tokens, *, max_seconds: float = MAX_DECODE_SECONDS) -> Audio:
        """Turn tokens back into audio at ``card.output_sample_rate`` (``card.sample_rate`` for all but a
        codec that decodes at another rate than it encodes, such as NeuCodec).

        Args:
            max_seconds: the most audio one item may decode to, in seconds (default 4 h); checked from
                the frame counts (and ``durations`` of deduplicated units) before anything is allocated.

        Raises ``TokenizerMismatchError`` for tokens made by another tokenizer (name or weights hash),
        ``CodesError`` for codes out of range, too many codebooks or bad ``durations``, and
        ``DecodeLimitError`` for an item that would decode to more than ``max_seconds``.
        """
        self.check_tokens(tokens)
        self.check_decode_size(tokens, max_seconds)
        codes = tokens.codes.to(self.device)
        lengths = tokens.lengths.to(self.device)
        extras = {k: v.to(self.device) for k, v in tokens.extras.items()}
        wav, sample_lengths = self._decode(codes, lengths, extras)
        return Audio(wav.float().cpu(), sample_lengths.long().cpu(), self.card.output_sample_rate)

    def streaming(
        self,
        batch_size: int = 1,
        *,
        n_codebooks: int | None = None,
        max_seconds: float | None = None,
        engine: str = "auto",
    ):
        """An encoder/decoder pair (``slmtok.codecs.streaming.Stream``) that encodes audio chunk by chunk
        (``push(chunk) -> Tokens``, ``flush()``) with exactly the whole-input codes, and decodes them chunk
        by chunk. Causal tokenizers only; the others raise ``StreamingError`` (one line). ``engine``:
        ``"carried"`` (the model's carried state, constant cost per chunk: Mimi), ``"recompute"`` (re-encodes
        from the start, O(n^2), bounded by ``max_seconds``, default 60 s) or ``"auto"`` (carried where the
        tokenizer has it). ``max_seconds`` bounds the carried engine's stream only when given."""
        from slmtok.codecs.streaming import StreamingError, open_stream

        if not self.causal:
            raise StreamingError(
                f"{self.card.name!r} is not causal (a frame depends on input after it), so it cannot stream; "
                "use a causal tokenizer such as mimi or encodec-24khz"
            )
        return open_stream(self, batch_size, n_codebooks=n_codebooks, max_seconds=max_seconds, engine=engine)

    def check_tokens(self, tokens: Tokens) -> None:
        """Raise a one-line error unless ``tokens`` can be decoded by this tokenizer."""
        ref = tokens.tokenizer
        if ref.name != self.card.name:
            raise TokenizerMismatchError(
                f"these tokens were made by {ref.name!r}, not {self.card.name!r}; decode them with {ref.name!r}"
            )
        if ref.hash and self.card.hash and ref.hash != self.card.hash:
            raise TokenizerMismatchError(
                f"these tokens were made by {ref.name!r} with weights {ref.hash[:12]}, but this {self.card.name!r} "
                f"has weights {self.card.hash[:12]}; load the weights that made them"
            )
        sizes = self.max_codebook_sizes
        k = tokens.n_codebooks
        if k < 1 or k > len(sizes):
            raise CodesError(f"tokens have {k} codebooks; {self.card.name!r} decodes 1 to {len(sizes)}")
        width = tokens.codes.shape[-1]
        lengths = tokens.lengths.cpu()
        if bool((lengths < 0).any()) or bool((lengths > width).any()):
            raise CodesError(f"token lengths {lengths.tolist()} do not fit {width} frames")
        valid = torch.arange(width)[None, :] < lengths[:, None]  # [B, T]
        codes = tokens.codes.cpu()
        limits = torch.tensor(sizes[:k])[None, :, None]
        bad = ((codes < 0) | (codes >= limits)) & valid[:, None, :]
        if bool(bad.any()):
            b, q, t = (int(i) for i in bad.nonzero()[0])
            raise CodesError(
                f"code {int(codes[b, q, t])} at item {b}, codebook {q}, frame {t} is out of range "
                f"[0, {sizes[q]}) for {self.card.name!r}"
            )

    def check_decode_size(self, tokens: Tokens, max_seconds: float = MAX_DECODE_SECONDS) -> None:
        """Raise unless every item decodes to at most ``max_seconds`` of audio: frames (expanded by
        integral, non-negative ``durations`` when the tokens carry them) over the card's frame rate."""
        if not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
            raise DecodeLimitError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
        frames = decoded_frames(tokens)
        seconds = frames.double() / float(self.card.frame_rate)
        if seconds.numel() and float(seconds.max()) > max_seconds:
            i = int(seconds.argmax())
            raise DecodeLimitError(
                f"item {i} would decode to {float(seconds[i]):.4g} s of audio, more than the limit of "
                f"{max_seconds:g} s (raise it with max_seconds= / --max-seconds)"
            )

    def _check_n_codebooks(self, n_codebooks: int | None) -> int:
        if n_codebooks is None:
            return self.card.n_codebooks
        if isinstance(n_codebooks, bool) or not isinstance(n_codebooks, int):
            raise CodesError(f"n_codebooks must be an integer, got {n_codebooks!r}")
        if not 1 <= n_codebooks <= self.card.max_codebooks:
            raise CodesError(
                f"{self.card.name!r} has {self.card.max_codebooks} codebooks; n_codebooks={n_codebooks} is out of range"
            )
        return n_codebooks

    def __repr__(self) -> str:
        c = self.card
        return (
            f"{type(self).__name__}(name={c.name!r}, {c.sample_rate} Hz, {c.frame_rate:g} frames/s, "
            f"K={c.n_codebooks}, {c.bitrate / 1000:.2f} kbps, device={self.device})"
        )

    # -------------------------------------------------------------------------------- hooks
    @abstractmethod
    def _encode(
        self, wav: torch.Tensor, lengths: torch.Tensor, n_codebooks: int
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``wav`` ``[B, C, T]`` at the card's rate, ``lengths`` ``[B]`` samples -> codes ``[B, K, T']``,
        frame lengths ``[B]``, extras (tensors with a leading batch axis)."""

    @abstractmethod
    def _decode(
        self, codes: torch.Tensor, lengths: torch.Tensor, extras: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes ``[B, K, T']`` (valid, padded -1), frame lengths ``[B]`` -> wav ``[B, C, T]``, sample lengths ``[B]``."""


def decoded_frames(tokens: Tokens) -> torch.Tensor:
    """Frames each item expands to before vocoding, ``[B]`` (float64): its length, or the sum of its
    ``durations`` (``[B, 1, T]``, frames per deduplicated unit) over its length. ``CodesError`` for
    durations that are not integral, negative or the wrong shape."""
    lengths = tokens.lengths.cpu().long()
    durations = tokens.extras.get("durations")
    if durations is None:
        return lengths.double()
    durations = durations.cpu()
    if durations.dtype.is_floating_point or durations.dtype.is_complex or durations.dtype == torch.bool:
        raise CodesError(f"durations must be integers (frames per unit), got {durations.dtype}")
    if (
        durations.ndim != 3
        or durations.shape[0] != tokens.batch_size
        or durations.shape[-1] < tokens.codes.shape[-1]
    ):
        raise CodesError(
            f"durations must be [B, 1, T] = [{tokens.batch_size}, 1, {tokens.codes.shape[-1]}], "
            f"got {list(durations.shape)}"
        )
    width = tokens.codes.shape[-1]
    valid = torch.arange(width)[None, :] < lengths[:, None]  # [B, T]
    runs = durations[:, 0, :width].long()
    if bool(((runs < 0) & valid).any()):
        raise CodesError("durations must be non-negative")
    return torch.where(valid, runs, 0).double().sum(-1)  # float64: a sum of huge runs cannot wrap around


def content_hash(config: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> str:
    """sha256 (hex) of a JSON-serialisable config and named tensors (name, dtype, shape and bytes)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors or {}):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def encode_list(
    tok: Tokenizer, wavs: list[torch.Tensor], sample_rate: int, *, n_codebooks: int | None = None
) -> list[Tokens | SlmtokError]:
    """Encode ``[C, T_i]`` signals of one rate and channel count as one padded batch, one ``Tokens``
    per item. If the batch is refused (say, one item holds NaN), items are encoded one by one, and each
    refused item gets its error in place of tokens, so one bad input never costs the others."""
    from slmtok.batching import pad_stack

    try:
        lengths = [w.shape[-1] for w in wavs]
        tokens = tok.encode(pad_stack(wavs), sample_rate, lengths=lengths, n_codebooks=n_codebooks)
        return [tokens.select([i]) for i in range(len(wavs))]
    except SlmtokError:
        if len(wavs) == 1:
            raise
    out: list[Tokens | SlmtokError] = []
    for wav in wavs:
        try:
            out.append(tok.encode(wav, sample_rate, n_codebooks=n_codebooks))
        except SlmtokError as error:
            out.append(error)
    return out
