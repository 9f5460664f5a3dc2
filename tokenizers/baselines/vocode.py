"""Griffin-Lim vocoding of any number of frames, down to none: the shared decode step of the baselines."""

from __future__ import annotations

import math

import torch

from slmtok.vocoders.griffin_lim import GriffinLimVocoder


def min_frames(vocoder: GriffinLimVocoder) -> int:
    """Fewest log-mel frames Griffin-Lim can invert: its STFT pads ``n_fft // 2`` samples by reflection,
    which needs more than that many samples, i.e. ``(frames - 1) * hop_length > n_fft // 2``."""
    c = vocoder.config
    return (c.n_fft // 2) // c.hop_length + 2


def vocode(vocoder: GriffinLimVocoder, log_mel: torch.Tensor, n_samples: int) -> torch.Tensor:
    """``[T', n_mels]`` natural-log mel frames -> ``[n_samples]`` audio, for any ``T' >= 0``.

    Fewer frames than ``min_frames`` are padded at the end with silence (the log floor) and the audio is
    cut back to ``n_samples``; no frames give ``n_samples`` zeros.
    """
    frames = log_mel.shape[0]
    if frames == 0:
        return torch.zeros(n_samples, device=vocoder.device)
    need = min_frames(vocoder)
    if frames < need:
        floor = torch.full(
            (need - frames, log_mel.shape[1]),
            math.log(vocoder.config.log_floor),
            dtype=log_mel.dtype,
            device=log_mel.device,
        )
        log_mel = torch.cat([log_mel, floor])
    return vocoder(log_mel, n_samples)
