"""Shared fixtures: real speech from the Asterisk prompts (installed by .ci/run) and small signals."""

from __future__ import annotations

import pytest
import torch

import slmtok
from slmtok.audio import resample
from slmtok.corpora import asterisk_prompts


@pytest.fixture(scope="session")
def speech_16k() -> torch.Tensor:
    """About 1.5 s of real speech from a held-out talker (French, June), mono 16 kHz ``[T]``."""
    for path in asterisk_prompts("fr"):
        wav, rate = slmtok.read_audio(path)
        if wav.shape[-1] >= 32000:
            assert rate == 16000
            return wav[0, 4000:28000].clone()
    raise AssertionError("no French prompt of 2 s or more")


@pytest.fixture(scope="session")
def speech_batch(speech_16k) -> tuple[torch.Tensor, torch.Tensor]:
    """Three items of different lengths, zero-padded: ``[3, 1, T]`` and lengths ``[3]`` (16 kHz)."""
    lengths = torch.tensor([8000, 24000, 13371])
    wav = torch.zeros(3, 1, 24000)
    for i, n in enumerate(lengths.tolist()):
        wav[i, 0, :n] = speech_16k[-n:] if i == 2 else speech_16k[:n]
    return wav, lengths


def at_rate(x: torch.Tensor, rate: int) -> torch.Tensor:
    return resample(x, 16000, rate)
