"""slmtok.metrics: rates from tokens, and reconstruction metrics against known values and degradations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slmtok.metrics import rates, signal, spectral
from slmtok.types import TokenizerRef, Tokens

RATE = 16000


def _tokens(codes: list[list[list[int]]], lengths: list[int], frame_rate: float = 50.0) -> Tokens:
    return Tokens(torch.tensor(codes), torch.tensor(lengths), frame_rate, TokenizerRef("t", ""))


# ------------------------------------------------------------------------------------------- rates
def test_rates_known_values():
    tokens = _tokens([[[0, 0, 1, 1, 1, 2]]], [6])  # 6 frames at 50 Hz = 0.12 s, 3 runs, codebook of 4
    seconds = 0.12
    assert rates.frame_rate(tokens) == 50.0
    assert rates.tokens_per_second(tokens, seconds) == pytest.approx(50.0)
    assert rates.nominal_bitrate(50.0, [4]) == pytest.approx(100.0)
    assert rates.run_counts(tokens).tolist() == [3]
    assert rates.effective_bitrate(tokens, [4], seconds) == pytest.approx(3 * 2 / 0.12)
    (hist,) = rates.code_histograms(tokens, [4])
    assert hist.tolist() == [2, 3, 1, 0]
    h = -(1 / 3 * math.log2(1 / 3) + 1 / 2 * math.log2(1 / 2) + 1 / 6 * math.log2(1 / 6))
    assert rates.entropy_bits(hist) == pytest.approx(h)
    assert rates.perplexity(hist) == pytest.approx(2**h)
    assert rates.utilisation(hist) == pytest.approx(0.75)
    assert rates.entropy_bitrate([hist], seconds) == pytest.approx(6 * h / seconds)


def test_rates_ignore_padding_and_count_every_codebook():
    # two items, two codebooks; item 1 has 2 valid frames, the rest is padding (-1)
    codes = [[[5, 5, 6], [1, 2, 3]], [[7, 7, -1], [0, 0, -1]]]
    tokens = _tokens(codes, [3, 2], frame_rate=10.0)
    assert rates.tokens_per_second(tokens, [0.3, 0.2]) == pytest.approx(5 * 2 / 0.5)
    assert rates.run_counts(tokens).tolist() == [2 + 1, 3 + 1]
    hists = rates.code_histograms(tokens, [8, 4])
    assert hists[0].tolist() == [0, 0, 0, 0, 0, 2, 1, 2]
    assert hists[1].tolist() == [2, 1, 1, 1]
    total = rates.add_histograms(None, hists)
    total = rates.add_histograms(total, hists)
    assert total[1].tolist() == [4, 2, 2, 2]


def test_uniform_codes_have_full_entropy_and_perplexity():
    hist = torch.ones(256, dtype=torch.long)
    assert rates.entropy_bits(hist) == pytest.approx(8.0)
    assert rates.perplexity(hist) == pytest.approx(256.0)
    stats = rates.codebook_stats([hist], seconds=256 / 16000)
    assert stats["entropy_bitrate"] == pytest.approx(128000.0)  # mu-law at 16 kHz, uniform use
    assert stats["mean_utilisation"] == 1.0
    assert rates.entropy_bits(torch.zeros(4, dtype=torch.long)) == 0.0


def test_rates_of_a_real_tokenizer_match_its_card(speech_16k):
    import slmtok

    tok = slmtok.load("mel-rvq", n_codebooks=4)
    tokens = tok.encode(speech_16k, RATE)
    sizes = tok.card.codebook_sizes
    assert rates.nominal_bitrate(tokens.frame_rate, sizes) == pytest.approx(tok.card.bitrate)
    seconds = speech_16k.numel() / RATE
    assert rates.tokens_per_second(tokens) == pytest.approx(tok.card.tokens_per_second, rel=0.02)
    assert rates.effective_bitrate(tokens, sizes) <= tok.card.bitrate
    entropy = rates.entropy_bitrate(rates.code_histograms(tokens, sizes), seconds)
    assert 0 < entropy <= tok.card.bitrate * 1.02  # at most log2(size) bits per token


# ------------------------------------------------------------------------------------ degradations
def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(x.size)
    noise *= math.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return x + noise


def _lowpass(x: np.ndarray, cutoff_rate: int) -> np.ndarray:
    """Band-limit to ``cutoff_rate / 2`` Hz by resampling down and back up."""
    low = signal.resample_to(x, RATE, cutoff_rate)
    return signal.resample_to(low, cutoff_rate, RATE)[: x.size]


@pytest.fixture(scope="module")
def speech(speech_16k) -> np.ndarray:
    return speech_16k.double().numpy()


def test_identical_audio_scores_perfectly(speech):
    assert signal.si_sdr(speech, speech) > 100
    assert signal.pesq_score(speech, speech, RATE, "wb") == pytest.approx(4.64, abs=0.01)
    assert signal.pesq_score(speech, speech, RATE, "nb") == pytest.approx(4.55, abs=0.01)
    assert signal.stoi_score(speech, speech, RATE) == pytest.approx(1.0, abs=1e-6)
    assert signal.stoi_score(speech, speech, RATE, extended=True) == pytest.approx(1.0, abs=1e-6)
    assert spectral.log_mel_distance(speech, speech, RATE) == pytest.approx(0.0, abs=1e-6)
    assert spectral.mel_cepstral_distortion(speech, speech, RATE) == pytest.approx(0.0, abs=1e-6)
    f0 = spectral.f0_error(speech, speech, RATE)
    assert f0.rmse_hz == 0.0 and f0.voicing_error == 0.0 and f0.correlation == pytest.approx(1.0)
    assert f0.voiced_frames > 30
    assert signal.estimate_delay(speech, speech, RATE) == 0


def test_si_sdr_equals_the_snr_of_added_white_noise(speech):
    for snr in (30.0, 20.0, 10.0, 0.0):
        assert signal.si_sdr(speech, _noisy(speech, snr)) == pytest.approx(snr, abs=0.3)


def test_noise_moves_every_metric_the_right_way(speech):
    scores = []
    for snr in (30.0, 15.0, 0.0):
        y = _noisy(speech, snr)
        scores.append(
            (
                signal.pesq_score(speech, y, RATE, "wb"),
                signal.pesq_score(speech, y, RATE, "nb"),
                signal.stoi_score(speech, y, RATE),
                signal.stoi_score(speech, y, RATE, extended=True),
                -spectral.log_mel_distance(speech, y, RATE),
                -spectral.mel_cepstral_distortion(speech, y, RATE),
            )
        )
    for cleaner, noisier in zip(scores, scores[1:], strict=False):
        for a, b in zip(cleaner, noisier, strict=True):
            assert a > b, scores


def test_low_pass_moves_the_metrics_the_right_way(speech):
    mild, strong = _lowpass(speech, 8000), _lowpass(speech, 2000)  # 4 kHz and 1 kHz bandwidth
    assert signal.pesq_score(speech, mild, RATE) > signal.pesq_score(speech, strong, RATE)
    assert signal.pesq_score(speech, mild, RATE) < 4.5
    assert signal.stoi_score(speech, mild, RATE) > signal.stoi_score(speech, strong, RATE)
    assert spectral.log_mel_distance(speech, mild, RATE) < spectral.log_mel_distance(speech, strong, RATE)
    assert spectral.mel_cepstral_distortion(speech, mild, RATE) > 0.1


@pytest.mark.parametrize("delay", [37, -25, 800])
def test_delay_is_recovered_and_undone(speech, delay):
    shifted = np.roll(speech, delay)
    assert signal.estimate_delay(speech, shifted, RATE) == delay
    aligned = signal.aligned_si_sdr(speech, shifted, RATE)
    assert aligned.delay_samples == delay
    assert aligned.delay_ms == pytest.approx(1000 * delay / RATE)
    assert aligned.si_sdr > 30  # np.roll wraps a few samples around the ends
    assert signal.si_sdr(speech, shifted) < 5  # without alignment the delay ruins SI-SDR


def test_gain_changes_only_the_energy_terms(speech):
    half = 0.5 * speech
    assert signal.si_sdr(speech, half) > 100  # scale-invariant
    assert spectral.log_mel_distance(speech, half, RATE) == pytest.approx(math.log(2), abs=0.01)
    assert spectral.mel_cepstral_distortion(speech, half, RATE) < 0.05  # c0 is excluded


def test_f0_error_of_a_known_pitch_shift():
    t = np.arange(int(1.0 * RATE)) / RATE

    def voice(f0: float) -> np.ndarray:
        return sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)) * 0.2

    err = spectral.f0_error(voice(150.0), voice(155.0), RATE)
    assert err.rmse_hz == pytest.approx(5.0, abs=0.5)
    assert err.rmse_cents == pytest.approx(1200 * math.log2(155 / 150), abs=5)
    assert err.voicing_error < 0.05


# ----------------------------------------------------------------------- agreement with the packages
def test_pesq_wrapper_agrees_with_the_reference_package(speech):
    from pesq import pesq

    y = _noisy(speech, 10.0)
    assert signal.pesq_score(speech, y, RATE, "wb") == pesq(RATE, speech, y, "wb")
    x8, y8 = signal.resample_to(speech, RATE, 8000), signal.resample_to(y, RATE, 8000)
    assert signal.pesq_score(speech, y, RATE, "nb") == pytest.approx(pesq(8000, x8, y8, "nb"), abs=1e-9)
    assert signal.pesq_score(x8, y8, 8000, "nb") == pesq(8000, x8, y8, "nb")
    # the argument order matters to PESQ: the wrapper passes the reference first
    assert signal.pesq_score(speech, y, RATE) != pesq(RATE, y, speech, "wb")


def test_stoi_wrapper_agrees_with_the_reference_package(speech):
    from pystoi import stoi

    y = _noisy(speech, 5.0)
    assert signal.stoi_score(speech, y, RATE) == stoi(speech, y, RATE, extended=False)
    assert signal.stoi_score(speech, y, RATE, extended=True) == stoi(speech, y, RATE, extended=True)


def test_undefined_metrics_raise_one_line_errors():
    silence = np.zeros(RATE)
    with pytest.raises(signal.MetricError, match="silent reference"):
        signal.si_sdr(silence, silence)
    with pytest.raises(signal.MetricError, match="PESQ"):
        signal.pesq_score(silence, silence, RATE)
    with pytest.raises(signal.MetricError, match="0.4 s"):
        signal.stoi_score(np.ones(100), np.ones(100), RATE)
    with pytest.raises(signal.MetricError, match="mode"):
        signal.pesq_score(silence, silence, RATE, "xx")
