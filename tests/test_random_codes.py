"""``random-codes``: codes that depend on the item's length alone, never on its content (the contract
itself is checked by the conformance suite). References: numpy's PCG64 stream and hand-worked counts."""

from __future__ import annotations

import hashlib
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


def test_codes_are_a_keyed_hash_stream_of_the_samples(tok, speech_16k):
    n = speech_16k.numel()
    tokens = tok.encode(speech_16k, 16000)
    assert int(tokens.lengths[0]) == math.ceil(n / 320)
    # the reference: hashlib's keyed BLAKE2b of the float32 samples seeds numpy's PCG64 stream
    digest = hashlib.blake2b(speech_16k.numpy().astype(np.float32).tobytes(), digest_size=16,
                             key=KEY.to_bytes(8, "little")).digest()  # fmt: skip
    expected = np.random.default_rng(int.from_bytes(digest, "little")).integers(0, 1024, math.ceil(n / 320))
    assert tokens.codes[0, 0].tolist() == expected.tolist()


def test_other_audio_gets_an_unrelated_stream(tok, speech_16k):
    """Same length, other content (noise; the speech at half level; one sample changed): the codes agree
    on about 1/1024 of the frames, as two independent uniform draws do."""
    base = tok.encode(speech_16k, 16000).codes[0, 0]
    noise = torch.randn(speech_16k.numel(), generator=torch.Generator().manual_seed(1)) * 0.3
    nudged = speech_16k.clone()
    nudged[1000] += 1e-3
    for other in (noise, speech_16k * 0.5, nudged):
        codes = tok.encode(other, 16000).codes[0, 0]
        assert codes.shape == base.shape and float((codes == base).float().mean()) < 0.02


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
