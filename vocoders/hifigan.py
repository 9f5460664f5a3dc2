"""HiFi-GAN generator (Kong et al., 2020), with parameter names of the official checkpoints.

The module tree — ``conv_pre``, ``ups.{i}``, ``resblocks.{j}.convs1.{m}`` / ``convs2.{m}`` (ResBlock1) or
``resblocks.{j}.convs.{m}`` (ResBlock2), ``conv_post``, each weight-normed (``weight_g``, ``weight_v``,
``bias``) — is the one in jik876/hifi-gan, facebookresearch/speech-resynthesis and fairseq's
``text_to_speech/hifigan.py``, so their ``state_dict["generator"]`` loads as is.

Batches: ``forward(x, lengths)`` zeroes every activation past each item's length before the next
convolution reads it, which is exactly the zero padding the item sees alone, so a padded batch gives each
item its own audio (up to float rounding). ``remove_weight_norm()`` folds the norms for inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import remove_weight_norm

LRELU_SLOPE = 0.1


@dataclass(frozen=True)
class GeneratorConfig:
    """Generator hyper-parameters, named as in the upstream ``config.json`` files."""

    model_in_dim: int = 80
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = field(
        default_factory=lambda: ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    )

    def __post_init__(self) -> None:
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")
        if self.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {self.resblock!r}")
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            if (k - u) % 2:
                raise ValueError(f"upsample kernel {k} and rate {u} must differ by an even number")

    @property
    def hop_length(self) -> int:
        """Output samples per input frame: the product of the upsampling rates."""
        hop = 1
        for u in self.upsample_rates:
            hop *= u
        return hop

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        names = cls.__dataclass_fields__
        kept = {k: v for k, v in data.items() if k in names}
        for key in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
            if key in kept:
                kept[key] = tuple(int(v) for v in kept[key])
        if "resblock_dilation_sizes" in kept:
            kept["resblock_dilation_sizes"] = tuple(
                tuple(int(d) for d in ds) for ds in kept["resblock_dilation_sizes"]
            )
        if "resblock" in kept:
            kept["resblock"] = str(kept["resblock"])
        return cls(**kept)

    def to_dict(self) -> dict:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()} | {
            "resblock_dilation_sizes": [list(d) for d in self.resblock_dilation_sizes]
        }


def weight_norm(module: nn.Module) -> nn.Module:
    """``torch.nn.utils.weight_norm`` (parameters ``weight_g``/``weight_v``, the official checkpoints'
    names) without its deprecation warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.nn.utils.weight_norm(module)


def _padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


def _init_weights(module: nn.Module, std: float = 0.01) -> None:
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        module.weight.data.normal_(0.0, std)


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


class ResBlock1(nn.Module):
    """Three dilated convolutions, each followed by an undilated one, with residual connections."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5)) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(
                nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=_padding(kernel_size, d))
            )
            for d in dilation
        )
        self.convs2 = nn.ModuleList(
            weight_norm(
                nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=_padding(kernel_size))
            )
            for _ in dilation
        )
        self.convs1.apply(_init_weights)
        self.convs2.apply(_init_weights)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = _masked(c1(F.leaky_relu(x, LRELU_SLOPE)), mask)
            xt = _masked(c2(F.leaky_relu(xt, LRELU_SLOPE)), mask)
            x = xt + x
        return x

    def remove_weight_norm(self) -> None:
        for conv in [*self.convs1, *self.convs2]:
            remove_weight_norm(conv)


class ResBlock2(nn.Module):
    """Two dilated convolutions with residual connections (HiFi-GAN V3)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            weight_norm(
                nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=_padding(kernel_size, d))
            )
            for d in dilation
        )
        self.convs.apply(_init_weights)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for conv in self.convs:
            x = _masked(conv(F.leaky_relu(x, LRELU_SLOPE)), mask) + x
        return x

    def remove_weight_norm(self) -> None:
        for conv in self.convs:
            remove_weight_norm(conv)


class Generator(nn.Module):
    """``[B, model_in_dim, T]`` frames -> ``[B, 1, T * hop_length]`` waveform in [-1, 1]."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.num_kernels = len(config.resblock_kernel_sizes)
        self.num_upsamples = len(config.upsample_rates)
        base = config.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(config.model_in_dim, base, 7, 1, padding=3))
        self.ups = nn.ModuleList(
            weight_norm(nn.ConvTranspose1d(base // 2**i, base // 2 ** (i + 1), k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True))
        )
        block = ResBlock1 if config.resblock == "1" else ResBlock2
        self.resblocks = nn.ModuleList(
            block(base // 2 ** (i + 1), k, d)
            for i in range(self.num_upsamples)
            for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True)
        )
        self.conv_post = weight_norm(nn.Conv1d(base // 2**self.num_upsamples, 1, 7, 1, padding=3))
        self.ups.apply(_init_weights)
        self.conv_post.apply(_init_weights)
        self.weight_norm_removed = False

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, C, T]`` frames, ``lengths`` ``[B]`` valid frames (``None``: all) -> ``[B, 1, T * hop]``.

        With ``lengths``, samples past ``lengths * hop`` are zero and each item equals its own
        unpadded forward up to float rounding.
        """
        mask = None if lengths is None else _mask(lengths, x.shape[-1], x)
        x = _masked(self.conv_pre(_masked(x, mask)), mask)
        for i, rate in enumerate(self.config.upsample_rates):
            x = self.ups[i](F.leaky_relu(x, LRELU_SLOPE))
            if lengths is not None:
                lengths = lengths * rate
                mask = _mask(lengths, x.shape[-1], x)
                x = x * mask
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x, mask) for block in blocks) / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as upstream
        return _masked(torch.tanh(x), mask)

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights (inference); the outputs do not change."""
        if self.weight_norm_removed:
            return
        for conv in [self.conv_pre, *self.ups, self.conv_post]:
            remove_weight_norm(conv)
        for block in self.resblocks:
            block.remove_weight_norm()
        self.weight_norm_removed = True


def _mask(lengths: torch.Tensor, width: int, like: torch.Tensor) -> torch.Tensor:
    """``[B, 1, width]`` float mask, 1 where the position is below the item's length."""
    positions = torch.arange(width, device=like.device)
    return (positions[None, :] < lengths.to(like.device)[:, None]).to(like.dtype)[:, None, :]


#: HiFi-GAN V1/V2/V3 (Kong et al., 2020, table 1; jik876/hifi-gan config_v{1,2,3}.json)
PRESETS: dict[str, GeneratorConfig] = {
    "v1": GeneratorConfig(),
    "v2": GeneratorConfig(upsample_initial_channel=128),
    "v3": GeneratorConfig(
        upsample_rates=(8, 8, 4),
        upsample_kernel_sizes=(16, 16, 8),
        upsample_initial_channel=256,
        resblock="2",
        resblock_kernel_sizes=(3, 5, 7),
        resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
    ),
}
