"""``random-codes``: codes that depend on the item's length alone, never on its content (the contract
itself is checked by the conformance suite). References: numpy's PCG64 stream and hand-worked counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import slmtok
from slmtok.errors import CodesError
from slmtok.tokenizers.baselines.random_codes import KEY


@pytest.fixture(scope="module")
def tok():
    return slmtok.load("random-codes")


def test_card(tok):
    card = tok.card
    assert (card.name, card.kind, card.sample_rate, card.frame_rate) == (
        "random-codes",
        "baseline",
        16000,
        50.0,
    )
    assert card.codebook_sizes == (1024,) and card.max_codebooks == 1
    assert card.bitrate == pytest.approx(500.0)  # 50 frames/s x 10 bits
    with pytest.raises(CodesError, match="one codebook"):
        slmtok.load("random-codes", n_codebooks=2)


def test_codes_ignore_content_and_follow_length(tok, speech_16k):
    n = speech_16k.numel()
    noise = torch.randn(n, generator=torch.Generator().manual_seed(1)) * 0.3
    speech, other = tok.encode(speech_16k, 16000), tok.encode(noise, 16000)
    assert torch.equal(speech.codes, other.codes), "codes changed with the content"
    assert int(speech.lengths[0]) == math.ceil(n / 320)
    # the reference: numpy's PCG64 stream keyed by (KEY, length in samples)
    expected = np.random.default_rng([KEY, n]).integers(0, 1024, size=math.ceil(n / 320))
    assert speech.codes[0, 0].tolist() == expected.tolist()
    shorter = tok.encode(speech_16k[:-1], 16000)
    assert not torch.equal(shorter.codes[0, 0, :10], speech.codes[0, 0, :10]), "another length, same codes"


def test_codes_are_spread_over_the_vocabulary(tok):
    codes = tok.encode(torch.zeros(16000 * 60), 16000).codes[0, 0].numpy()  # 3000 frames
    counts = np.bincount(codes, minlength=1024)
    # a uniform draw: chi-square over 1023 degrees of freedom is 1023 +- 45 (sd); 1250 is 5 sd out
    chi2 = float(((counts - 3000 / 1024) ** 2 / (3000 / 1024)).sum())
    assert chi2 < 1250 and len(set(codes.tolist())) > 900


def test_decode_is_quiet_noise_of_the_frames_length(tok, speech_16k):
    tokens = tok.encode(speech_16k[:16000], 16000)
    audio = tok.decode(tokens)
    assert int(audio.lengths[0]) == 50 * 320
    rms = float(audio.wav.pow(2).mean().sqrt())
    assert 0.5e-3 < rms < 2e-3
