"""Score one resynthesis against its original: every enabled metric, each failure kept with its reason.

``Scorer`` holds the optional back-ends (built once, reported unavailable with the reason when they
cannot be built) and per-file caches of what does not depend on the tokenizer: the reference audio at the
evaluation rate, its pitch track, its speaker embedding, its transcript by the ASR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slmtok.metrics import signal, spectral
from slmtok.metrics.backends import BackendStatus, probe

#: metric groups: name -> what it adds to a row
METRIC_GROUPS = {
    "pesq": "pesq_wb (16 kHz), pesq_nb (8 kHz)",
    "stoi": "stoi, estoi",
    "si_sdr": "si_sdr (dB) after delay alignment, delay_ms",
    "mel": "log_mel_distance, mcd (dB)",
    "f0": "f0_rmse_hz, f0_rmse_cents, f0_corr, vuv_error",
    "wer": "wer / cer of the resynthesis by Whisper (needs transcripts)",
    "speaker": "speaker_similarity (resemblyzer cosine)",
    "dnsmos": "dnsmos_ovrl, dnsmos_sig, dnsmos_bak, dnsmos_p808",
    "visqol": "visqol (speech mode, MOS-LQO)",
}
DEFAULT_GROUPS = ("pesq", "stoi", "si_sdr", "mel", "f0", "wer", "speaker", "dnsmos")


@dataclass
class ScoreSettings:
    """What to compute and with which models (paths ``None`` = the back-end's default)."""

    eval_rate: int = 16000
    groups: tuple[str, ...] = DEFAULT_GROUPS
    max_delay: float = 0.1
    whisper_model: str | None = None
    speaker_model: str | None = None
    dnsmos_models: str | None = None
    visqol_model: str | None = None
    language: str = "en"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, groups=list(self.groups))


def shift(estimate: np.ndarray, delay: int, length: int) -> np.ndarray:
    """Put ``estimate`` on the reference's time line: undo ``delay`` (samples, positive = late), then cut
    or zero-pad to ``length`` samples."""
    est = estimate[delay:] if delay > 0 else np.concatenate([np.zeros(-delay), estimate])
    if est.size >= length:
        return est[:length]
    return np.concatenate([est, np.zeros(length - est.size)])


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


@dataclass
class Scorer:
    """Per-file metrics of a resynthesis. Build once per bench; back-ends load in ``__post_init__``."""

    settings: ScoreSettings = field(default_factory=ScoreSettings)
    device: str = "cpu"

    def __post_init__(self) -> None:
        s = self.settings
        unknown = set(s.groups) - set(METRIC_GROUPS)
        if unknown:
            raise ValueError(f"unknown metric group(s) {sorted(unknown)}; known: {', '.join(METRIC_GROUPS)}")
        self.backends: dict[str, Any] = {}
        self.status: dict[str, BackendStatus] = {}
        builders = {
            "wer": (
                "whisper",
                "slmtok.metrics.asr:WhisperASR",
                {"model": s.whisper_model, "language": s.language},
            ),
            "speaker": (
                "resemblyzer",
                "slmtok.metrics.perceptual:SpeakerEncoder",
                {"model": s.speaker_model},
            ),
            "dnsmos": ("dnsmos", "slmtok.metrics.perceptual:DNSMOS", {"models": s.dnsmos_models}),
            "visqol": ("visqol", "slmtok.metrics.perceptual:ViSQOL", {"model": s.visqol_model}),
        }
        for group, (name, target, options) in builders.items():
            if group in s.groups:
                self.backends[group], self.status[group] = probe(name, _lazy(target), **options)
        self._cache: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------------------ per-file reference
    def reference(self, file_id: str, reference: np.ndarray) -> dict[str, Any]:
        """Cache entry of a file: its lazily computed analyses (pitch track, speaker embedding, transcript;
        small, kept for the whole run), keyed by file id and length."""
        return self._cache.setdefault(f"{file_id}|{reference.size}", {})

    def _cached(self, entry: dict[str, Any], key: str, compute) -> Any:
        if key not in entry:
            try:
                entry[key] = (compute(), None)
            except Exception as error:  # noqa: BLE001 - reported in the row, per metric
                entry[key] = (None, _reason(error))
        value, reason = entry[key]
        if reason is not None:
            raise _Cached(reason)
        return value

    def score_original(self, file_id: str, reference: np.ndarray, text: str | None) -> dict[str, Any]:
        """Non-intrusive metrics of the original audio: WER of its transcript, DNSMOS."""
        rate = self.settings.eval_rate
        entry = self.reference(file_id, reference)
        row: dict[str, Any] = {}
        errors: dict[str, str] = {}
        if "wer" in self.backends and self.backends["wer"] is not None and text:
            hyp = _run(errors, "wer", lambda: self._cached(entry, "asr", lambda: self._asr(reference)))
            if hyp is not None:
                row.update(self._wer(text, hyp))
        if self.backends.get("dnsmos") is not None:
            mos = _run(errors, "dnsmos", lambda: self.backends["dnsmos"].score(reference, rate))
            row.update({f"dnsmos_{k}": v for k, v in (mos or {}).items()})
        row["metric_errors"] = errors
        return row

    def score(
        self, file_id: str, reference: np.ndarray, estimate: np.ndarray, text: str | None
    ) -> dict[str, Any]:
        """Every enabled metric of ``estimate`` against ``reference`` (both mono ``[T]`` at
        ``settings.eval_rate``). Returns the row's metric fields and ``metric_errors`` {metric: reason}."""
        s, rate, groups = self.settings, self.settings.eval_rate, self.settings.groups
        entry = self.reference(file_id, reference)
        row: dict[str, Any] = {}
        errors: dict[str, str] = {}
        delay = signal.estimate_delay(reference, estimate, rate, s.max_delay)
        est = shift(signal.as_mono(estimate), delay, reference.size)
        row["delay_ms"] = 1000.0 * delay / rate
        if "si_sdr" in groups:
            row["si_sdr"] = _run(errors, "si_sdr", lambda: signal.si_sdr(reference, est))
        if "pesq" in groups:
            row["pesq_wb"] = _run(errors, "pesq_wb", lambda: signal.pesq_score(reference, est, rate, "wb"))
            row["pesq_nb"] = _run(errors, "pesq_nb", lambda: signal.pesq_score(reference, est, rate, "nb"))
        if "stoi" in groups:
            row["stoi"] = _run(errors, "stoi", lambda: signal.stoi_score(reference, est, rate))
            row["estoi"] = _run(errors, "estoi", lambda: signal.stoi_score(reference, est, rate, True))
        if "mel" in groups:
            row["log_mel_distance"] = _run(
                errors, "log_mel_distance", lambda: spectral.log_mel_distance(reference, est, rate)
            )
            row["mcd"] = _run(errors, "mcd", lambda: spectral.mel_cepstral_distortion(reference, est, rate))
        if "f0" in groups:
            track = _run(
                errors, "f0", lambda: self._cached(entry, "f0", lambda: spectral.pitch_track(reference, rate))
            )
            if track is not None:
                f0 = _run(errors, "f0", lambda: spectral.f0_error(track, est, rate))
                if f0 is not None and f0.voiced_frames < 3:
                    errors["f0"] = f"{f0.voiced_frames} frames voiced in both (F0 error needs 3 or more)"
                if f0 is not None:
                    row.update(
                        f0_rmse_hz=_finite(f0.rmse_hz),
                        f0_rmse_cents=_finite(f0.rmse_cents),
                        f0_corr=_finite(f0.correlation),
                        vuv_error=_finite(f0.voicing_error),
                    )
        if self.backends.get("speaker") is not None:
            encoder = self.backends["speaker"]

            def similarity() -> float:
                ref_embedding = self._cached(entry, "speaker", lambda: encoder.embed(reference, rate))
                return float(np.dot(ref_embedding, encoder.embed(estimate, rate)))

            row["speaker_similarity"] = _run(errors, "speaker_similarity", similarity)
        if self.backends.get("wer") is not None and text:
            hyp = _run(errors, "wer", lambda: self._asr(estimate))
            if hyp is not None:
                row.update(self._wer(text, hyp))
        if self.backends.get("dnsmos") is not None:
            mos = _run(errors, "dnsmos", lambda: self.backends["dnsmos"].score(estimate, rate))
            row.update({f"dnsmos_{k}": v for k, v in (mos or {}).items()})
        if self.backends.get("visqol") is not None:
            row["visqol"] = _run(
                errors, "visqol", lambda: self.backends["visqol"].score(reference, est, rate)
            )
        row["metric_errors"] = errors
        return row

    def _asr(self, wav: np.ndarray) -> str:
        return self.backends["wer"].transcribe(wav, self.settings.eval_rate)

    @staticmethod
    def _wer(text: str, hypothesis: str) -> dict[str, Any]:
        from slmtok.metrics.asr import error_counts

        words, chars = error_counts(text, hypothesis, "word"), error_counts(text, hypothesis, "char")
        return {
            "hypothesis": hypothesis,
            "wer_errors": words.errors,
            "wer_words": words.reference_length,
            "cer_errors": chars.errors,
            "cer_chars": chars.reference_length,
        }


class _Cached(Exception):
    """A cached analysis that failed before; carries its reason."""


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    if isinstance(error, _Cached):
        return text
    return text if type(error).__name__ in ("MetricError",) else f"{type(error).__name__}: {text}".strip()


def _run(errors: dict[str, str], name: str, compute) -> Any:
    """``compute()``, or ``None`` with the one-line reason stored in ``errors[name]``."""
    try:
        value = compute()
    except Exception as error:  # noqa: BLE001 - an undefined metric is a recorded gap, not a crash
        errors[name] = _reason(error)
        return None
    if isinstance(value, float) and not math.isfinite(value):
        errors[name] = "not finite"
        return None
    return value


def _lazy(target: str):
    def build(**options: Any) -> Any:
        import importlib

        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)(**options)

    return build
