"""espeak-ng speech with exact phone and word alignments, through ``libespeak-ng.so.1``.

espeak-ng reports, while it synthesises, a phoneme event at the sample where each phoneme starts
(``espeakINITIALIZE_PHONEME_EVENTS``) and a word event where each word starts; a phone ends where the
next one starts, the last one at the end of the audio. Pause phonemes (``_``, ``_:``, ``_!``...) and the
audio before the first phoneme are silence (``"SIL"``). Audio is resampled from espeak-ng's 22050 Hz
to 16 kHz (polyphase, ``scipy.signal.resample_poly``); times are in seconds.

espeak-ng runs in a worker process (``slmtok.probes.espeak_worker``) that speaks every utterance from the
same fresh state: the same request gives the same samples. Nothing in the calling process is changed.
"""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass

import numpy as np

from slmtok.probes.schema import SAMPLE_RATE, SILENCE, ProbeError

_EVENT_WORD = 1
DEFAULT_RATE = 175  # words per minute, espeak-ng's default


@dataclass(frozen=True)
class Speech:
    """One synthesised utterance: ``audio`` float32 ``[T]`` at 16 kHz, ``phones`` contiguous
    ``(symbol, start_s, end_s)`` from 0 to ``T / 16000`` (silence "SIL"), ``words`` ``(word, start_s,
    end_s)`` snapped to phone boundaries."""

    audio: np.ndarray
    phones: tuple[tuple[str, float, float], ...]
    words: tuple[tuple[str, float, float], ...]

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


class Engine:
    """espeak-ng in a worker process (``slmtok.probes.espeak_worker``) that speaks every request from
    the same fresh state, so the same request always gives the same samples. Use as a context manager;
    ``close()`` ends the worker. Thread-safe (requests are serialised)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "slmtok.probes.espeak_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError as error:
            raise ProbeError(f"cannot start the espeak-ng worker: {error}") from None
        hello = json.loads(self._process.stdout.readline() or b'{"error": "espeak-ng worker exited"}')
        if "error" in hello:
            self.close()
            raise ProbeError(hello["error"])
        self.rate = int(hello["rate"])  # espeak-ng's output rate, Hz (22050)
        self.version = str(hello["version"])

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the worker process (idempotent)."""
        process = getattr(self, "_process", None)
        if process is None:
            return
        self._process = None
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

    def raw(
        self, text: str, voice: str, *, phonemes: bool = False, rate: int = DEFAULT_RATE, pitch: int = 50
    ) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        """int16 samples ``[T]`` at ``self.rate`` Hz and the ``(type, sample, phoneme)`` events."""
        request = {"text": text, "voice": voice, "phonemes": phonemes, "rate": int(rate), "pitch": int(pitch)}
        with self._lock:
            if self._process is None:
                raise ProbeError("the espeak-ng engine is closed")
            try:
                self._process.stdin.write(json.dumps(request).encode() + b"\n")
                self._process.stdin.flush()
                size_bytes = self._process.stdout.read(8)
                if len(size_bytes) != 8:
                    raise OSError("no reply")
                payload = self._process.stdout.read(struct.unpack("<Q", size_bytes)[0])
            except OSError:
                raise ProbeError("the espeak-ng worker stopped unexpectedly") from None
        head, _, audio = payload.partition(b"\n")
        reply = json.loads(head)
        if "error" in reply:
            raise ProbeError(
                reply["error"] if reply.get("voice") else f"{reply['error']} (text {text[:60]!r})"
            )
        samples = np.frombuffer(audio, dtype="<i2", count=int(reply["samples"]))
        return samples, [(int(k), int(at), str(name)) for k, at, name in reply["events"]]

    def synthesize(
        self,
        text: str,
        voice: str,
        *,
        words: list[str] | None = None,
        phonemes: bool = False,
        rate: int = DEFAULT_RATE,
        pitch: int = 50,
    ) -> Speech:
        """Speak ``text`` with espeak-ng ``voice`` (``"en-us+f3"``) and align its phones and words.

        ``phonemes=True`` reads ``[[...]]`` spans as espeak-ng phoneme mnemonics (one span per word).
        ``words`` names the words in order (default: ``text.split()``); if espeak-ng reports another
        number of words, ``ProbeError``. ``rate`` is in words per minute, ``pitch`` 0-100 (50: the voice's).
        """
        samples, events = self.raw(text, voice, phonemes=phonemes, rate=rate, pitch=pitch)
        if len(samples) == 0:
            raise ProbeError(f"espeak-ng made no audio for {text[:60]!r} in voice {voice}")
        return align(samples, events, self.rate, text.split() if words is None else list(words), text)


def _is_pause(symbol: str) -> bool:
    return symbol.startswith("_") or not symbol.strip()


def align(
    samples: np.ndarray, events: list[tuple[int, int, str]], rate: int, names: list[str], text: str = ""
) -> Speech:
    """Resample espeak-ng's int16 ``samples`` ``[T]`` (``rate`` Hz) to 16 kHz and turn its phoneme and
    word events (sample positions at ``rate``) into contiguous phones and phone-snapped word spans."""
    from math import gcd

    from scipy.signal import resample_poly  # scipy comes with scikit-learn

    step = gcd(SAMPLE_RATE, rate)
    wav = samples.astype(np.float64) / 32768.0
    audio = resample_poly(wav, SAMPLE_RATE // step, rate // step).astype(np.float32)  # Kaiser-windowed FIR
    n_out = len(audio)
    scale = SAMPLE_RATE / rate

    def to_sample(position: int) -> int:
        return min(max(int(round(position * scale)), 0), n_out)

    # phone starts in 16 kHz samples; a phone that would last no sample gives way to the next real one
    starts: list[tuple[int, str]] = []
    word_starts: list[int] = []
    for kind, position, name in events:
        at = to_sample(position)
        if kind == _EVENT_WORD:
            word_starts.append(at)
            continue
        symbol = SILENCE if _is_pause(name) else name
        if starts and starts[-1][0] >= at:
            if symbol == SILENCE:
                continue
            at = starts[-1][0]
            starts.pop()
        if starts and starts[-1][1] == SILENCE == symbol:
            continue
        starts.append((at, symbol))
    if not starts or starts[0][0] > 0:
        starts.insert(0, (0, SILENCE))
    phones_samples = [
        (symbol, at, starts[k + 1][0] if k + 1 < len(starts) else n_out)
        for k, (at, symbol) in enumerate(starts)
    ]
    phones_samples = [p for p in phones_samples if p[2] > p[1]]
    phones = tuple((s, a / SAMPLE_RATE, b / SAMPLE_RATE) for s, a, b in phones_samples)

    if len(word_starts) != len(names):
        raise ProbeError(f"espeak-ng found {len(word_starts)} words in {text[:60]!r}, expected {len(names)}")
    spans = []
    for k, name in enumerate(names):
        begin = word_starts[k]
        stop = word_starts[k + 1] if k + 1 < len(word_starts) else n_out
        inside = [p for p in phones_samples if p[0] != SILENCE and begin <= p[1] < stop]
        if not inside:
            raise ProbeError(f"espeak-ng word {name!r} in {text[:60]!r} has no phones")
        spans.append((name, inside[0][1] / SAMPLE_RATE, inside[-1][2] / SAMPLE_RATE))
    return Speech(audio=audio, phones=phones, words=tuple(spans))
