"""Log-mel filterbank frames: the features of ``mel-rvq`` and the input of the Griffin-Lim vocoder."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class MelConfig:
    """STFT and mel settings (samples and Hz). Frames are centred: ``1 + T // hop_length`` per item."""

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    log_floor: float = 1e-5

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


class LogMel:
    """``[T]`` mono audio -> natural-log mel power ``[T', n_mels]`` with ``T' = 1 + T // hop_length``.

    The signal is zero-padded by ``n_fft // 2`` on both sides (centred frames), so any length >= 1 works.
    """

    def __init__(
        self, config: MelConfig | None = None, device: str | torch.device = "cpu", **overrides
    ) -> None:
        self.config = config or MelConfig(**overrides)
        self.device = torch.device(device)

    @property
    def dim(self) -> int:
        return self.config.n_mels

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    def num_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.config.hop_length

    @cached_property
    def window(self) -> torch.Tensor:
        return torch.hann_window(self.config.win_length, device=self.device)

    @cached_property
    def filterbank(self) -> torch.Tensor:
        """Mel filterbank ``[n_freqs, n_mels]`` (HTK scale, no area normalisation)."""
        import torchaudio.functional as AF

        c = self.config
        return AF.melscale_fbanks(c.n_freqs, c.f_min, c.f_max, c.n_mels, c.sample_rate).to(self.device)

    def power_spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """``[T]`` -> ``[n_freqs, T']`` power spectrogram."""
        c = self.config
        x = torch.nn.functional.pad(wav[None, None], (c.n_fft // 2, c.n_fft // 2))[0, 0]
        spec = torch.stft(
            x, c.n_fft, c.hop_length, c.win_length, self.window, center=False, return_complex=True
        )
        return spec.abs().pow(2)

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """``[T]`` float audio -> ``[1 + T // hop, n_mels]`` log-mel frames."""
        mel = self.filterbank.T @ self.power_spectrogram(wav.to(self.device))
        return mel.clamp_min(self.config.log_floor).log().T.contiguous()
