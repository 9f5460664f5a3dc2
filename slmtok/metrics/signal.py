"""Waveform-level reconstruction metrics: delay alignment, SI-SDR, PESQ, STOI and ESTOI.

Every function takes a ``reference`` (the original audio) and an ``estimate`` (the tokenizer's
resynthesis), both mono ``[T]`` float signals (numpy arrays or torch tensors) at the same ``sample_rate``
in Hz. Lengths may differ by a few frames: signals are cut to the shorter one after alignment.

PESQ and STOI are the reference implementations (``pesq``: ITU-T P.862 / P.862.2 C code; ``pystoi``:
Taal et al. 2011, Jensen & Taal 2016); these wrappers only resample to the rate each standard defines,
cut to equal length, and turn their failures into ``MetricError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from slmtok.errors import SlmtokError

#: PESQ modes and the only sample rate each is computed at (Hz)
PESQ_RATES = {"wb": 16000, "nb": 8000}


class MetricError(SlmtokError, ValueError):
    """A metric that is undefined for this input (silence, too short, wrong rate)."""


def as_mono(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[T]``, ``[1, T]`` or ``[C, T]`` audio -> float64 numpy ``[T]`` (channels averaged)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if x.ndim != 1:
        raise MetricError(f"audio must be [T] or [C, T], got shape {x.shape}")
    if x.size == 0:
        raise MetricError("empty audio")
    return x


def resample_to(x: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling of ``[T]`` from ``sample_rate`` to ``target_rate`` Hz (slmtok's Kaiser sinc)."""
    if sample_rate == target_rate:
        return x
    from slmtok.audio import resample

    return resample(torch.from_numpy(x).float()[None], sample_rate, target_rate)[0].double().numpy()


def estimate_delay(
    reference: torch.Tensor | np.ndarray,
    estimate: torch.Tensor | np.ndarray,
    sample_rate: int,
    max_delay: float = 0.1,
) -> int:
    """Lag (samples) of ``estimate`` behind ``reference`` that maximises their cross-correlation.

    Searched within ``+-max_delay`` seconds; positive means the estimate is late. FFT cross-correlation,
    ``O(T log T)``.
    """
    ref, est = as_mono(reference), as_mono(estimate)
    n = ref.size + est.size - 1
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(est, size) * np.conj(np.fft.rfft(ref, size)), size)
    limit = int(round(max_delay * sample_rate))
    lags = np.arange(-limit, limit + 1)
    lags = lags[(lags < est.size) & (lags > -ref.size)]
    values = corr[lags % size]
    return int(lags[int(np.argmax(values))])


def align(
    reference: torch.Tensor | np.ndarray, estimate: torch.Tensor | np.ndarray, delay: int
) -> tuple[np.ndarray, np.ndarray]:
    """Undo a ``delay`` (samples, positive = estimate late) and cut both to the overlap: two ``[T']``."""
    ref, est = as_mono(reference), as_mono(estimate)
    if delay > 0:
        est = est[delay:]
    elif delay < 0:
        ref = ref[-delay:]
    n = min(ref.size, est.size)
    if n == 0:
        raise MetricError(f"no overlap left after a delay of {delay} samples")
    return ref[:n], est[:n]


def si_sdr(reference: torch.Tensor | np.ndarray, estimate: torch.Tensor | np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio (dB) of equal-length signals (Le Roux et al. 2019).

    ``10 log10(|a s|^2 / |a s - s_hat|^2)`` with ``a = <s_hat, s> / |s|^2``; means are not removed.
    A tiny floor keeps identical signals finite (about +150 dB or more).
    """
    ref, est = as_mono(reference), as_mono(estimate)
    n = min(ref.size, est.size)
    ref, est = ref[:n], est[:n]
    energy = float(np.dot(ref, ref))
    if energy <= 0:
        raise MetricError("SI-SDR is undefined for a silent reference")
    scale = float(np.dot(est, ref)) / energy
    target = scale * ref
    noise = est - target
    eps = 1e-12 * energy + 1e-30
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


@dataclass(frozen=True)
class AlignedSISDR:
    """SI-SDR (dB) after delay alignment, and the delay found (samples at ``sample_rate``, and ms)."""

    si_sdr: float
    delay_samples: int
    sample_rate: int

    @property
    def delay_ms(self) -> float:
        return 1000.0 * self.delay_samples / self.sample_rate


def aligned_si_sdr(
    reference: torch.Tensor | np.ndarray,
    estimate: torch.Tensor | np.ndarray,
    sample_rate: int,
    max_delay: float = 0.1,
) -> AlignedSISDR:
    """SI-SDR after finding and undoing the estimate's delay (within ``+-max_delay`` s)."""
    delay = estimate_delay(reference, estimate, sample_rate, max_delay)
    ref, est = align(reference, estimate, delay)
    return AlignedSISDR(si_sdr(ref, est), delay, sample_rate)


def pesq_score(
    reference: torch.Tensor | np.ndarray,
    estimate: torch.Tensor | np.ndarray,
    sample_rate: int,
    mode: str = "wb",
) -> float:
    """PESQ MOS-LQO: wide band (``"wb"``, P.862.2, computed at 16 kHz) or narrow band (``"nb"``, P.862,
    computed at 8 kHz). Inputs at ``sample_rate`` are resampled to that rate; range about 1.0 to 4.64 (wb)
    or 4.55 (nb). PESQ does its own time alignment."""
    if mode not in PESQ_RATES:
        raise MetricError(f"PESQ mode must be 'wb' or 'nb', got {mode!r}")
    from pesq import PesqError, pesq

    rate = PESQ_RATES[mode]
    ref = resample_to(as_mono(reference), sample_rate, rate)
    est = resample_to(as_mono(estimate), sample_rate, rate)
    n = min(ref.size, est.size)
    try:
        return float(pesq(rate, ref[:n], est[:n], mode))
    except PesqError as error:
        raise MetricError(f"PESQ {mode}: {type(error).__name__} {error}".strip()) from None


def stoi_score(
    reference: torch.Tensor | np.ndarray,
    estimate: torch.Tensor | np.ndarray,
    sample_rate: int,
    extended: bool = False,
) -> float:
    """STOI (``extended=False``, Taal et al. 2011) or ESTOI (``extended=True``, Jensen & Taal 2016), 0..1
    (ESTOI can dip below 0). ``pystoi`` resamples to 10 kHz itself; signals are cut to equal length."""
    from pystoi import stoi

    ref, est = as_mono(reference), as_mono(estimate)
    n = min(ref.size, est.size)
    if n < sample_rate * 0.4:  # 30 frames of 384 samples at 10 kHz with 50 % overlap is about 0.4 s
        raise MetricError(f"STOI needs at least 0.4 s of audio, got {n / sample_rate:.2f} s")
    value = float(stoi(ref[:n], est[:n], sample_rate, extended=extended))
    if not np.isfinite(value):
        raise MetricError("STOI is undefined here (no speech frames above the silence threshold)")
    return value
