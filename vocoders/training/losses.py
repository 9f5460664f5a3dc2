"""HiFi-GAN losses: least-squares GAN, feature matching, and L1 log-mel reconstruction.

Every loss is computed in fp32, whatever the dtype of its inputs (bf16 logits and feature maps of an
autocast forward pass): a bf16 mean keeps three significant digits.
"""

from __future__ import annotations

import torch

from slmtok.vocoders.training.discriminators import Features


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: real logits towards 1, generated towards 0, summed over sub-discriminators."""
    return sum(
        torch.mean((1 - r.float()) ** 2) + torch.mean(f.float() ** 2) for r, f in zip(real, fake, strict=True)
    )


def generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: generated logits towards 1."""
    return sum(torch.mean((1 - f.float()) ** 2) for f in fake)


def feature_matching_loss(real: list[Features], fake: list[Features]) -> torch.Tensor:
    """L1 between the discriminator feature maps of real and generated audio (x2, as upstream)."""
    total = sum(
        torch.mean(torch.abs(r.detach().float() - f.float()))
        for rs, fs in zip(real, fake, strict=True)
        for r, f in zip(rs, fs, strict=True)
    )
    return 2 * total


def mel_loss(real_mel: torch.Tensor, fake_mel: torch.Tensor) -> torch.Tensor:
    """L1 between log-mel spectrograms ``[B, n_mels, T]`` (weighted 45 in the total, as upstream)."""
    return torch.nn.functional.l1_loss(fake_mel, real_mel)
