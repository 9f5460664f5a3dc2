"""Spectral and prosodic reconstruction metrics: log-mel distance, mel-cepstral distortion, F0 error.

Inputs are mono ``[T]`` signals (numpy or torch) at ``sample_rate`` Hz, already time-aligned (see
``slmtok.metrics.signal.estimate_delay``); they are cut to the shorter length. Frames are 64 ms windows
(1024 samples at 16 kHz) with a 10 ms hop unless stated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from slmtok.metrics.signal import MetricError, as_mono

LOG_FLOOR = 1e-5


def _equal(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    ref, est = as_mono(reference), as_mono(estimate)
    n = min(ref.size, est.size)
    return ref[:n], est[:n]


def mel_power(
    x: np.ndarray, sample_rate: int, *, n_mels: int = 80, n_fft: int = 1024, hop: float = 0.01
) -> torch.Tensor:
    """Mel power spectrogram ``[frames, n_mels]`` (Slaney-normalised HTK-free mel bands, 0 to Nyquist).

    ``hop`` in seconds; Hann window of ``n_fft`` samples, centred frames.
    """
    signal = torch.from_numpy(np.ascontiguousarray(x)).float()
    hop_length = max(1, int(round(hop * sample_rate)))
    spec = torch.stft(
        signal, n_fft, hop_length, window=torch.hann_window(n_fft), center=True, return_complex=True
    )
    power = spec.abs().pow(2).T  # [frames, n_fft // 2 + 1]
    return power @ _mel_bank(n_fft, sample_rate, n_mels)


@functools.lru_cache(maxsize=8)
def _mel_bank(n_fft: int, sample_rate: int, n_mels: int) -> torch.Tensor:
    import torchaudio.functional as AF

    return AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, "slaney", "slaney")


def log_mel_distance(
    reference: torch.Tensor | np.ndarray,
    estimate: torch.Tensor | np.ndarray,
    sample_rate: int,
    n_mels: int = 80,
) -> float:
    """Mean absolute difference of natural-log mel magnitudes, ``mean |ln max(M, 1e-5) - ln max(M', 1e-5)|``
    over frames and ``n_mels`` bands (the L1 mel loss of HiFi-GAN and DAC). 0 for identical signals."""
    ref, est = _equal(reference, estimate)
    a = mel_power(ref, sample_rate, n_mels=n_mels).sqrt().clamp_min(LOG_FLOOR).log()
    b = mel_power(est, sample_rate, n_mels=n_mels).sqrt().clamp_min(LOG_FLOOR).log()
    return float((a - b).abs().mean())


def mel_cepstrum(
    x: np.ndarray, sample_rate: int, *, n_coefficients: int = 25, n_mels: int = 80
) -> torch.Tensor:
    """Mel cepstra ``[frames, n_coefficients]`` of the natural-log mel amplitude ``L_n`` over ``N`` bands:
    ``c_k = 1/N sum_n L_n cos(pi k (n + 1/2) / N)``, the cepstrum of ``ln|X(w)| = c_0 + 2 sum c_k cos(k w)``
    sampled on the mel-warped axis (so MCD values sit on the usual scale of a few dB)."""
    from scipy.fft import dct

    log_amp = mel_power(x, sample_rate, n_mels=n_mels).sqrt().clamp_min(LOG_FLOOR).log().numpy()
    cepstra = dct(log_amp, type=2, axis=-1)[:, :n_coefficients] / (2 * n_mels)
    return torch.from_numpy(cepstra)


def mel_cepstral_distortion(
    reference: torch.Tensor | np.ndarray,
    estimate: torch.Tensor | np.ndarray,
    sample_rate: int,
    n_coefficients: int = 25,
    speech_only: bool = True,
) -> float:
    """Mel-cepstral distortion (dB): ``10 / ln 10 * sqrt(2 * sum_{d>=1} (c_d - c'_d)^2)``, averaged over
    frames (c0, the energy, excluded; Kubichek 1993). Cepstra from the log mel filterbank (not SPTK's
    all-pass warping) on time-aligned frames (no DTW). ``speech_only`` keeps the frames whose reference
    energy is within 40 dB of its loudest frame. 0 for identical signals."""
    ref, est = _equal(reference, estimate)
    a = mel_cepstrum(ref, sample_rate, n_coefficients=n_coefficients)
    b = mel_cepstrum(est, sample_rate, n_coefficients=n_coefficients)
    frames = torch.ones(a.shape[0], dtype=torch.bool)
    if speech_only:
        energy = mel_power(ref, sample_rate).sum(dim=-1).clamp_min(1e-20).log10() * 10
        frames = energy > energy.max() - 40
    diff = (a[frames, 1:] - b[frames, 1:]).double()
    if diff.shape[0] == 0:
        raise MetricError("MCD: no speech frames in the reference")
    per_frame = (10.0 / np.log(10.0)) * torch.sqrt(2.0 * diff.pow(2).sum(dim=-1))
    return float(per_frame.mean())


@dataclass(frozen=True)
class PitchTrack:
    """F0 in Hz per frame (NaN where unvoiced) and the voiced flag, ``[frames]`` each, at ``hop`` s."""

    f0: np.ndarray
    voiced: np.ndarray
    hop: float


def pitch_track(
    x: torch.Tensor | np.ndarray,
    sample_rate: int,
    *,
    fmin: float = 60.0,
    fmax: float = 500.0,
    hop: float = 0.01,
) -> PitchTrack:
    """Probabilistic YIN (``librosa.pyin``; Mauch & Dixon 2014) with ``fmin``..``fmax`` Hz, ``hop`` s.

    pYIN decides voicing and picks the pitch on a quarter-semitone grid (librosa's default 0.1 semitone
    is 5-20x slower); each voiced frame's F0 is then refined to YIN's continuous estimate (parabolic
    interpolation, same frames) when that lies within half a semitone of the grid value.
    """
    import librosa

    signal = as_mono(x).astype(np.float32)
    hop_length = max(1, int(round(hop * sample_rate)))
    frame_length = 1 << int(np.ceil(np.log2(sample_rate * 0.064)))  # about 64 ms, two periods of 31 Hz
    f0, voiced, _ = librosa.pyin(
        signal,
        fmin=fmin,
        fmax=fmax,
        sr=sample_rate,
        frame_length=frame_length,
        hop_length=hop_length,
        center=True,
        resolution=0.25,
    )
    fine = librosa.yin(
        signal, fmin=fmin, fmax=fmax, sr=sample_rate, frame_length=frame_length, hop_length=hop_length
    )
    f0 = np.asarray(f0, dtype=np.float64)
    n = min(f0.size, fine.size)
    close = np.zeros(f0.size, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        close[:n] = np.abs(12 * np.log2(fine[:n] / f0[:n])) < 0.5
    f0[close] = fine[:n][close[:n]]
    return PitchTrack(f0=f0, voiced=np.asarray(voiced, dtype=bool), hop=hop)


@dataclass(frozen=True)
class F0Error:
    """F0 agreement on frames voiced in both signals.

    ``rmse_hz``: RMSE of F0 (Hz); ``rmse_cents``: RMSE of the log-ratio (cents, 1200 per octave);
    ``correlation``: Pearson correlation of F0; ``voicing_error``: fraction of frames whose voiced/unvoiced
    decision differs (0..1); ``voiced_frames``: frames voiced in both. Values are NaN when fewer than 3
    frames are voiced in both.
    """

    rmse_hz: float
    rmse_cents: float
    correlation: float
    voicing_error: float
    voiced_frames: int


def f0_error(
    reference: torch.Tensor | np.ndarray | PitchTrack,
    estimate: torch.Tensor | np.ndarray | PitchTrack,
    sample_rate: int,
) -> F0Error:
    """Compare the pitch of two aligned signals (or two ``PitchTrack`` s, to reuse the reference's)."""
    a = reference if isinstance(reference, PitchTrack) else pitch_track(reference, sample_rate)
    b = estimate if isinstance(estimate, PitchTrack) else pitch_track(estimate, sample_rate)
    n = min(a.f0.size, b.f0.size)
    va, vb = a.voiced[:n], b.voiced[:n]
    fa, fb = a.f0[:n], b.f0[:n]
    both = va & vb & np.isfinite(fa) & np.isfinite(fb)
    voicing_error = float(np.mean(va != vb)) if n else float("nan")
    count = int(both.sum())
    if count < 3:
        nan = float("nan")
        return F0Error(nan, nan, nan, voicing_error, count)
    x, y = fa[both], fb[both]
    rmse = float(np.sqrt(np.mean((x - y) ** 2)))
    cents = float(np.sqrt(np.mean((1200 * np.log2(y / x)) ** 2)))
    corr = float(np.corrcoef(x, y)[0, 1]) if np.std(x) > 0 and np.std(y) > 0 else float("nan")
    return F0Error(rmse, cents, corr, voicing_error, count)
