"""Log-mel analysis and Griffin-Lim vocoding in pieces: the shared DSP of the baselines.

Memory stays flat with duration: ``log_mel_frames`` computes frames ``CHUNK_FRAMES`` at a time from a
slice of the signal with enough context that every frame equals the whole-input frame, and ``vocode``
inverts frames ``CHUNK_FRAMES`` at a time, cross-fading pieces over ``OVERLAP_FRAMES`` (Griffin-Lim is
iterative and starts from zero phase in each piece, so long audio differs from a single whole-item run
within the cross-fades; items up to ``CHUNK_FRAMES`` frames are inverted in one piece, as before).
Griffin-Lim also works down to a single frame (or none).
"""

from __future__ import annotations

import math

import torch

from slmtok.tokenizers.features.mel import LogMel
from slmtok.vocoders.griffin_lim import GriffinLimVocoder

#: frames per piece (60 s at 100 frames/s): peak memory of a piece, not of the item
CHUNK_FRAMES = 6000
#: frames two vocoded pieces share; the audio is cross-faded over them
OVERLAP_FRAMES = 50


def log_mel_frames(features: LogMel, wav: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
    """``[T]`` audio -> ``[1 + T // hop, n_mels]`` log-mel frames, equal to ``features(wav)``, computed in
    balanced pieces of at most ``chunk_frames`` (default ``CHUNK_FRAMES``). Each piece is cut from the
    signal with ``ceil(n_fft / 2 / hop)`` hops of context on both sides, so every frame's window holds the
    same samples (zero past the ends) as in the whole-input analysis. (Pieces are balanced because a
    matrix product over a handful of frames can round differently, by one ulp, from one over many.)"""
    c = features.config
    chunk_frames = chunk_frames or CHUNK_FRAMES
    total = features.num_frames(wav.shape[-1])
    if total <= chunk_frames:
        return features(wav)
    hop = c.hop_length
    context = math.ceil(c.n_fft / 2 / hop) * hop
    size = math.ceil(total / math.ceil(total / chunk_frames))  # balanced: no piece of a few frames
    pieces = []
    for start in range(0, total, size):
        stop = min(total, start + size)
        lo = max(0, start * hop - context)
        hi = min(wav.shape[-1], (stop - 1) * hop + context)
        frames = features(wav[lo:hi])
        skip = (start * hop - lo) // hop
        pieces.append(frames[skip : skip + stop - start])
    return torch.cat(pieces)


def min_frames(vocoder: GriffinLimVocoder) -> int:
    """Fewest log-mel frames Griffin-Lim can invert: its STFT pads ``n_fft // 2`` samples by reflection,
    which needs more than that many samples, i.e. ``(frames - 1) * hop_length > n_fft // 2``."""
    c = vocoder.config
    return (c.n_fft // 2) // c.hop_length + 2


def _vocode_piece(vocoder: GriffinLimVocoder, log_mel: torch.Tensor, n_samples: int) -> torch.Tensor:
    frames = log_mel.shape[0]
    if frames == 0:
        return torch.zeros(n_samples, device=vocoder.device)
    need = min_frames(vocoder)
    if frames < need:  # pad with silence (the log floor); the audio is cut back to n_samples
        floor = torch.full(
            (need - frames, log_mel.shape[1]),
            math.log(vocoder.config.log_floor),
            dtype=log_mel.dtype,
            device=log_mel.device,
        )
        log_mel = torch.cat([log_mel, floor])
    return vocoder(log_mel, n_samples)


def vocode(
    vocoder: GriffinLimVocoder,
    log_mel: torch.Tensor,
    n_samples: int,
    *,
    chunk_frames: int | None = None,
    overlap_frames: int | None = None,
) -> torch.Tensor:
    """``[T', n_mels]`` natural-log mel frames -> ``[n_samples]`` audio, for any ``T' >= 0``.

    Up to ``chunk_frames`` (default ``CHUNK_FRAMES``) frames: one Griffin-Lim run (fewer than ``min_frames`` are padded with
    silence, none give zeros). More: pieces of ``chunk_frames`` frames overlapping by ``overlap_frames``,
    each covering samples ``[first * hop, last * hop)``, joined with linear cross-fades over the shared
    samples; the result is zero-padded or cut to ``n_samples``.
    """
    chunk_frames = chunk_frames or CHUNK_FRAMES
    overlap_frames = overlap_frames or OVERLAP_FRAMES
    if not 2 <= overlap_frames < chunk_frames // 2:
        raise ValueError(f"overlap_frames must be in [2, chunk_frames / 2), got {overlap_frames}")
    frames = log_mel.shape[0]
    if frames <= chunk_frames:
        return _vocode_piece(vocoder, log_mel, n_samples)
    hop = vocoder.config.hop_length
    length = vocoder.num_samples(frames)
    out = torch.zeros(length, device=vocoder.device)
    step = chunk_frames - overlap_frames
    fade = (overlap_frames - 1) * hop
    ramp = torch.linspace(0.0, 1.0, fade + 2, device=vocoder.device)[1:-1]  # [fade], strictly inside (0, 1)
    start = 0
    while True:
        stop = min(frames, start + chunk_frames)
        piece = _vocode_piece(vocoder, log_mel[start:stop], (stop - start - 1) * hop)
        if start > 0:
            piece[:fade] *= ramp
        last = stop == frames
        if not last:
            piece[-fade:] *= ramp.flip(0)
        out[start * hop : start * hop + piece.shape[0]] += piece
        if last:
            break
        start += step
    if n_samples <= length:
        return out[:n_samples]
    return torch.nn.functional.pad(out, (0, n_samples - length))
