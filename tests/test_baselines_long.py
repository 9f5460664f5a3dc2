"""Long audio through the embedded baselines: pieces of ``CHUNK_FRAMES`` frames, so memory stays flat.

References: the whole-input log-mel analysis (chunked frames must equal it bit for bit) and the
whole-input Griffin-Lim decode (chunked audio must match its spectrum); the memory figures are the
kernel's peak RSS (``PeakMemory``). Chunks are made small here so that short audio runs in many pieces.
"""

from __future__ import annotations

import pytest
import torch

import slmtok
from slmtok.tokenizers.baselines import vocode as pieces


@pytest.fixture(scope="module")
def tok():
    return slmtok.load("mel-rvq")


@pytest.mark.parametrize("n_samples", [24000, 24000 - 1, 160 * 37 * 3, 160 * 37 * 3 + 159, 161])
def test_chunked_log_mel_equals_the_whole_input_analysis(tok, speech_16k, n_samples):
    x = speech_16k.repeat(3)[:n_samples]
    whole = tok.features(x)
    assert torch.equal(pieces.log_mel_frames(tok.features, x, chunk_frames=37), whole)


def test_chunked_encode_and_decode_match_whole_items(tok, speech_16k, monkeypatch):
    whole_tokens = tok.encode(speech_16k, 16000)
    whole_audio = tok.decode(whole_tokens)
    monkeypatch.setattr(pieces, "CHUNK_FRAMES", 40)
    monkeypatch.setattr(pieces, "OVERLAP_FRAMES", 10)
    tokens = tok.encode(speech_16k, 16000)
    assert torch.equal(tokens.codes, whole_tokens.codes)
    audio = tok.decode(tokens)
    assert torch.equal(audio.lengths, whole_audio.lengths) and bool(torch.isfinite(audio.wav).all())
    a, b = tok.features(audio.item(0)[0]), tok.features(whole_audio.item(0)[0])
    corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
    assert corr > 0.97, f"log-mel correlation of chunked vs whole decode {corr:.3f}"


def test_memory_does_not_grow_with_duration(speech_16k, monkeypatch):
    """On 02c346e decode memory grew linearly (0.8 GB at 5 min); in 100-frame pieces, 16 s of audio
    must peak within 1.5x of 4 s (without pieces: 45.6 vs 12.1 MiB added here, decode alone, least of three
    runs from a trimmed heap). Two Griffin-Lim iterations keep it fast; the memory per iteration is the
    same."""
    from slmtok.codecs.base import release_freed_memory
    from slmtok.metrics.cost import PeakMemory

    tok = slmtok.load("mel-rvq", griffin_lim_iters=2)
    monkeypatch.setattr(pieces, "CHUNK_FRAMES", 100)
    monkeypatch.setattr(pieces, "OVERLAP_FRAMES", 10)
    peaks = []
    for seconds in (4, 16):
        x = speech_16k.repeat(seconds)[: seconds * 16000]
        tokens = tok.encode(x, 16000)
        tok.decode(tokens)  # warm up allocator caches at this size
        runs = []
        for _ in range(3):  # the least of three: one run's allocator noise is not growth
            release_freed_memory()  # every run starts from the same heap state
            with PeakMemory() as peak:
                tok.decode(tokens)
            runs.append(peak.peak_bytes)
        peaks.append(min(runs))
    assert peaks[1] <= 1.5 * peaks[0] + 8 * 2**20, f"peaks {[p / 2**20 for p in peaks]} MiB"
