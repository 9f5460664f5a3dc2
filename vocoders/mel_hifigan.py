"""``hifigan``: mel-spectrogram HiFi-GAN (V1/V2/V3 of Kong et al., 2020) and its mel front end.

Official checkpoints (jik876/hifi-gan ``generator_v1`` etc.) are ``{"generator": state_dict}`` beside a
``config.json``; they load unchanged (``slmtok.hub.safe_load``: torch's restricted unpickler). ``MelSpectrogram`` computes the
features those models were trained on: Slaney-normalised mel filterbank (as ``librosa.filters.mel``),
reflect padding of ``(n_fft - hop) / 2``, magnitude STFT, ``log(clamp(x, 1e-5))``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from slmtok.errors import SlmtokError
from slmtok.vocoders.hifigan import PRESETS, Generator, GeneratorConfig
from slmtok.vocoders.unit_hifigan import read_generator_state


@dataclass(frozen=True)
class MelConfig:
    """STFT/mel settings, named as in HiFi-GAN's ``config.json`` (samples and Hz)."""

    sampling_rate: int = 22050
    n_fft: int = 1024
    num_mels: int = 80
    hop_size: int = 256
    win_size: int = 1024
    fmin: float = 0.0
    fmax: float | None = 8000.0

    @classmethod
    def from_dict(cls, data: dict) -> MelConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class MelSpectrogram:
    """``[B, T]`` audio -> ``[B, num_mels, T // hop_size]`` natural-log mel magnitudes."""

    def __init__(self, config: MelConfig, device: str | torch.device = "cpu") -> None:
        import torchaudio.functional as AF

        self.config = config
        self.device = torch.device(device)
        fmax = config.fmax if config.fmax is not None else config.sampling_rate / 2
        self.filterbank = AF.melscale_fbanks(
            config.n_fft // 2 + 1,
            config.fmin,
            fmax,
            config.num_mels,
            config.sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        ).T.to(self.device)  # [num_mels, n_freqs]
        self.window = torch.hann_window(config.win_size, device=self.device)

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        c = self.config
        pad = (c.n_fft - c.hop_size) // 2
        x = torch.nn.functional.pad(wav.to(self.device)[:, None], (pad, pad), mode="reflect")[:, 0]
        spec = torch.stft(x, c.n_fft, c.hop_size, c.win_size, self.window, center=False, return_complex=True)
        magnitude = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        return torch.log(torch.clamp(self.filterbank @ magnitude, min=1e-5))


class MelHiFiGAN:
    """Mel frames -> audio with a HiFi-GAN generator (weight norm removed, batched with lengths)."""

    def __init__(
        self,
        generator: GeneratorConfig,
        mel: MelConfig,
        state_dict: dict[str, torch.Tensor] | None = None,
        *,
        device: str | torch.device = "cpu",
    ) -> None:
        if generator.model_in_dim != mel.num_mels:
            raise SlmtokError(f"HiFi-GAN input {generator.model_in_dim} != num_mels {mel.num_mels}")
        if generator.hop_length != mel.hop_size:
            raise SlmtokError(f"HiFi-GAN upsampling {generator.hop_length} != hop_size {mel.hop_size}")
        self.device = torch.device(device)
        self.mel_config = mel
        model = Generator(generator)
        if state_dict is not None:
            try:
                missing, unexpected = model.load_state_dict(state_dict, strict=False)
            except RuntimeError as error:
                detail = next(
                    (ln.strip() for ln in str(error).splitlines() if "size mismatch" in ln), str(error)
                )
                raise SlmtokError(f"HiFi-GAN weights do not fit the config: {detail}") from None
            if missing or unexpected:
                raise SlmtokError(f"HiFi-GAN weights do not fit the config: {(missing or unexpected)[0]!r}")
        model.eval()
        model.remove_weight_norm()
        self.model = model.to(self.device)

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike,
        *,
        config: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> MelHiFiGAN:
        """Load ``generator_v1``-style weights (a file, or a folder holding one) with its ``config.json``."""
        path = Path(checkpoint)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.name.startswith(("generator", "g_")) and p.is_file()
            )
            if not found:
                raise SlmtokError(f"no HiFi-GAN generator file in {path}")
            path = found[-1]
        if not path.is_file():
            raise SlmtokError(f"no such HiFi-GAN checkpoint: {path}")
        config_path = Path(config) if config is not None else path.parent / "config.json"
        if not config_path.is_file():
            raise SlmtokError(f"no config.json for HiFi-GAN {path} (looked for {config_path})")
        raw = json.loads(config_path.read_text(encoding="utf-8"))
        generator = GeneratorConfig.from_dict({"model_in_dim": raw.get("num_mels", 80), **raw})
        return cls(generator, MelConfig.from_dict(raw), read_generator_state(path), device=device)

    @classmethod
    def preset(cls, name: str = "v1", *, device: str | torch.device = "cpu") -> MelHiFiGAN:
        """An untrained V1/V2/V3 generator with the 22.05 kHz mel settings (architecture only)."""
        if name not in PRESETS:
            raise SlmtokError(f"unknown HiFi-GAN preset {name!r}; one of {', '.join(PRESETS)}")
        return cls(PRESETS[name], MelConfig(), device=device)

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sampling_rate

    @property
    def hop_length(self) -> int:
        return self.mel_config.hop_size

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` audio -> ``[B, num_mels, frames]``, the features this vocoder expects."""
        return MelSpectrogram(self.mel_config, self.device)(wav)

    @torch.inference_mode()
    def __call__(
        self, mel: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``mel`` ``[B, num_mels, T]``, ``lengths`` ``[B]`` frames -> wav ``[B, 1, T * hop]``, sample lengths."""
        if lengths is None:
            lengths = torch.full((mel.shape[0],), mel.shape[-1], dtype=torch.long)
        wav = self.model(mel.to(self.device), lengths.to(self.device))
        return wav, lengths.cpu() * self.hop_length


def load_mel_vocoder(
    checkpoint: str | os.PathLike | None = None,
    *,
    config: str | os.PathLike | None = None,
    preset: str = "v1",
    device: str | torch.device = "cpu",
) -> MelHiFiGAN:
    """Registry factory of ``hifigan``: official weights from ``checkpoint``, else an untrained ``preset``."""
    if checkpoint is None:
        return MelHiFiGAN.preset(preset, device=device)
    return MelHiFiGAN.load(checkpoint, config=config, device=device)
