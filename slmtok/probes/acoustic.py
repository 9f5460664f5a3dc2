"""Signal transforms for the acoustic and invariance probes, each keeping the phone alignment exact.

All audio is float32 ``[T]`` at 16 kHz; alignments are ``(symbol, start_s, end_s)`` tuples. Every
transform is deterministic (noise comes from a ``numpy.random.Generator`` the caller seeds).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from slmtok.probes.espeak import Speech
from slmtok.probes.schema import SAMPLE_RATE, SILENCE

Span = tuple[str, float, float]


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator, start: int = 0) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` dB below the power of the whole ``audio`` ``[T]``, added from
    sample ``start`` on (0: throughout). Clipped to [-1, 1]."""
    power = float(np.mean(audio.astype(np.float64) ** 2)) or 1e-8
    noise = rng.standard_normal(len(audio) - start) * np.sqrt(power / 10 ** (snr_db / 10))
    out = audio.astype(np.float64).copy()
    out[start:] += noise
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def pitch_shift(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping the duration (and so the alignment): phase-vocoder time
    stretch by ``r = 2 ** (semitones / 12)`` (STFT 512 / hop 128), then polyphase resampling by
    ``1 / r`` (``r`` as a fraction with denominator <= 200: under 0.002 % off). Output ``[T]``."""
    import torch
    import torchaudio.functional as AF
    from scipy.signal import resample_poly

    ratio = 2.0 ** (semitones / 12.0)
    n_fft, hop = 512, 128
    x = torch.from_numpy(audio.astype(np.float32))
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, np.pi * hop, spec.shape[-2])[..., None]
    stretched = AF.phase_vocoder(spec, 1.0 / ratio, advance)
    longer = torch.istft(stretched, n_fft, hop, window=window, length=int(round(len(audio) * ratio)))
    fraction = Fraction(ratio).limit_denominator(200)
    out = resample_poly(longer.numpy().astype(np.float64), fraction.denominator, fraction.numerator)
    out = np.pad(out, (0, max(0, len(audio) - len(out))))[: len(audio)]
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def speed(speech: Speech, factor: float) -> Speech:
    """Play ``factor`` times faster (Kaldi-style speed perturbation: tempo and pitch change together) by
    polyphase resampling; phone and word times are divided by ``factor``."""
    from scipy.signal import resample_poly

    fraction = Fraction(factor).limit_denominator(100)
    audio = resample_poly(speech.audio.astype(np.float64), fraction.denominator, fraction.numerator)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    scale = 1.0 / float(fraction)
    phones = _rescale(speech.phones, scale)
    symbol, start, _ = phones[-1]
    phones = (*phones[:-1], (symbol, start, len(audio) / SAMPLE_RATE))  # the last phone ends with the audio
    return Speech(audio=audio, phones=phones, words=_rescale(speech.words, scale))


def _rescale(spans: tuple[Span, ...], scale: float) -> tuple[Span, ...]:
    """Multiply every time by ``scale``, rounded to whole samples."""
    return tuple((s, _to_grid(a * scale), _to_grid(b * scale)) for s, a, b in spans)


def _to_grid(seconds: float) -> float:
    return round(seconds * SAMPLE_RATE) / SAMPLE_RATE


def concat(parts: list[Speech]) -> Speech:
    """Join utterances end to end; times shift by the preceding audio, and a silence that ends one part
    and a silence that starts the next merge into one ``SIL``."""
    audio = np.concatenate([p.audio for p in parts]).astype(np.float32)
    phones: list[Span] = []
    words: list[Span] = []
    offset = 0
    for part in parts:
        shift = offset / SAMPLE_RATE
        for symbol, start, stop in part.phones:
            start, stop = start + shift, stop + shift
            if phones and phones[-1][0] == SILENCE == symbol:
                phones[-1] = (SILENCE, phones[-1][1], stop)
            else:
                phones.append((symbol, start, stop))
        words.extend((w, a + shift, b + shift) for w, a, b in part.words)
        offset += len(part.audio)
    return Speech(audio=audio, phones=tuple(phones), words=tuple(words))
