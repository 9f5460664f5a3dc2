"""Weight-free vocoder: log-mel -> linear magnitude (least squares, clamped at 0) -> Griffin-Lim."""

from __future__ import annotations

from functools import cached_property

import torch

from slmtok.tokenizers.features.mel import LogMel, MelConfig


class GriffinLimVocoder:
    """Invert ``LogMel`` frames to audio.

    ``n_iter`` Griffin-Lim iterations with momentum (fast Griffin-Lim, Perraudin et al. 2013), started from
    zero phase so the output is deterministic.
    """

    def __init__(
        self,
        config: MelConfig | None = None,
        *,
        n_iter: int = 32,
        momentum: float = 0.99,
        device: str | torch.device = "cpu",
    ) -> None:
        self.mel = LogMel(config, device=device)
        self.n_iter = n_iter
        self.momentum = momentum
        self.device = torch.device(device)

    @property
    def config(self) -> MelConfig:
        return self.mel.config

    @cached_property
    def _inverse_filterbank(self) -> torch.Tensor:
        """Pseudo-inverse of the mel filterbank, ``[n_freqs, n_mels]``."""
        return torch.linalg.pinv(self.mel.filterbank.T.double()).float()

    def magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``[T', n_mels]`` natural-log mel power -> ``[n_freqs, T']`` linear magnitude."""
        power = self._inverse_filterbank @ log_mel.to(self.device).T.exp()
        return power.clamp_min(0.0).sqrt()

    def num_samples(self, n_frames: int) -> int:
        """Samples rebuilt from ``n_frames`` centred frames: ``(n_frames - 1) * hop_length`` (at least 1)."""
        return max((n_frames - 1) * self.config.hop_length, 1)

    def __call__(self, log_mel: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
        """``[T', n_mels]`` -> ``[n_samples]`` audio (default ``num_samples(T')``; zero-padded or cut)."""
        import torchaudio.functional as AF

        c = self.config
        frames = log_mel.shape[0]
        length = self.num_samples(frames)
        n_samples = length if n_samples is None else n_samples
        window = torch.hann_window(c.win_length, device=self.device)
        wav = AF.griffinlim(
            self.magnitude(log_mel)[None],
            window,
            c.n_fft,
            c.hop_length,
            c.win_length,
            1.0,
            self.n_iter,
            self.momentum,
            length,
            False,
        )[0]
        if n_samples != length:
            wav = (
                torch.nn.functional.pad(wav, (0, n_samples - length))
                if n_samples > length
                else wav[:n_samples]
            )
        return wav
