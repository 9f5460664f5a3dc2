"""HiFi-GAN discriminators: multi-period (MPD) and multi-scale (MSD), as in Kong et al. (2020).

Layer shapes follow jik876/hifi-gan and speech-resynthesis; ``width`` scales every channel count
(1.0 is the published size, about 70M parameters in all; CPU training uses a fraction of it).
Each discriminator returns its logits ``[B, N]`` and its feature maps (for the feature-matching loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from slmtok.vocoders.hifigan import LRELU_SLOPE, weight_norm

Features = list[torch.Tensor]


def _ch(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 16 (so every group count divides it)."""
    return max(16, int(round(channels * width / 16)) * 16)


class DiscriminatorP(nn.Module):
    """Looks at every ``period``-th sample: ``[B, 1, T]`` -> 2-D ``[B, 1, T / period, period]`` convs."""

    def __init__(self, period: int, width: float = 1.0, kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = period
        chans = [1, *(_ch(c, width) for c in (32, 128, 512, 1024, 1024))]
        pad = ((kernel_size - 1) // 2, 0)
        self.convs = nn.ModuleList(
            weight_norm(
                nn.Conv2d(chans[i], chans[i + 1], (kernel_size, 1), (stride if i < 4 else 1, 1), padding=pad)
            )
            for i in range(5)
        )
        self.conv_post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), "reflect")
        x = x.view(b, c, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return x.flatten(1), features


class DiscriminatorS(nn.Module):
    """Strided grouped 1-D convolutions over the waveform at one scale."""

    def __init__(self, width: float = 1.0, spectral: bool = False) -> None:
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        c = [_ch(n, width) for n in (128, 128, 256, 512, 1024, 1024, 1024)]
        groups = [1, 4, 16, 16, 16, 16, 1]
        specs = [(1, c[0], 15, 1, 7), (c[0], c[1], 41, 2, 20), (c[1], c[2], 41, 2, 20), (c[2], c[3], 41, 4, 20),
                 (c[3], c[4], 41, 4, 20), (c[4], c[5], 41, 1, 20), (c[5], c[6], 5, 1, 2)]  # fmt: skip
        self.convs = nn.ModuleList(
            norm(nn.Conv1d(i, o, k, s, groups=g, padding=p))
            for (i, o, k, s, p), g in zip(specs, groups, strict=True)
        )
        self.conv_post = norm(nn.Conv1d(c[6], 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return x.flatten(1), features


class MultiPeriodDiscriminator(nn.Module):
    """Periods 2, 3, 5, 7, 11."""

    def __init__(self, width: float = 1.0, periods: tuple[int, ...] = (2, 3, 5, 7, 11)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorP(p, width) for p in periods)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[Features]]:
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class MultiScaleDiscriminator(nn.Module):
    """Raw audio (spectral norm), then x2 and x4 average-pooled audio."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            [DiscriminatorS(width, spectral=True), DiscriminatorS(width), DiscriminatorS(width)]
        )
        self.meanpools = nn.ModuleList([nn.AvgPool1d(4, 2, padding=2), nn.AvgPool1d(4, 2, padding=2)])

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[Features]]:
        logits, features = [], []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.meanpools[i - 1](x)
            out, feats = d(x)
            logits.append(out)
            features.append(feats)
        return logits, features
