"""Every metric back-end of ``slmtok bench`` runs once on a tiny real input, and a broken one FAILS here.

No skip: a back-end that cannot be built (package missing, an import that breaks inside it, model file
absent) fails this test with the back-end's reason, so CI (which installs ``.[eval]``) catches a broken
install instead of printing "skipped". Input: one English Asterisk prompt (a real recording, 16 kHz) and
its published transcript; the "resynthesis" is the prompt plus white noise at 30 dB SNR.

References: numbers are checked against ranges of the standards themselves (PESQ MOS-LQO 1..4.64, STOI
and cosine similarity at most 1, DNSMOS and ViSQOL MOS 1..5) and against the transcript shipped with the
prompts (asterisk-core-sounds-en), never against slmtok's own output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import slmtok
from slmtok.corpora import asterisk_prompts, asterisk_transcripts
from slmtok.leaderboard.scoring import METRIC_GROUPS, Scorer, ScoreSettings
from slmtok.metrics.backends import BackendUnavailable, require

RATE = 16000


@pytest.fixture(scope="module")
def prompt() -> tuple[np.ndarray, str]:
    """The first English prompt of 4-8 words without digits (about 1-3 s of speech) and its transcript."""
    transcripts = asterisk_transcripts()
    prompts = asterisk_prompts("en")
    root = Path(os.path.commonpath(prompts))
    for path in prompts:
        text = transcripts.get(path.relative_to(root).with_suffix("").as_posix())
        if text and 4 <= len(text.split()) <= 8 and not any(c.isdigit() for c in text):
            wav, rate = slmtok.read_audio(path)
            if rate == RATE and 1.0 <= wav.shape[-1] / rate <= 3.5:
                return wav[0].double().numpy(), text
    raise AssertionError("no English prompt of 4-8 words and 1-3.5 s")


def test_every_metric_backend_runs(prompt):
    wav, text = prompt
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(wav.size)
    noisy = wav + noise * np.sqrt(np.mean(wav**2) / np.mean(noise**2)) * 10 ** (-30 / 20)
    scorer = Scorer(ScoreSettings(groups=tuple(METRIC_GROUPS)))
    broken = {g: s.reason for g, s in scorer.status.items() if not s.available}
    assert not broken, f"metric back-ends that cannot run (pip install -e '.[eval]'): {broken}"
    assert set(scorer.status) == {"wer", "speaker", "dnsmos", "visqol"}

    original = scorer.score_original("p", wav, text)
    assert original["metric_errors"] == {}
    assert original["wer_errors"] <= 1 and original["wer_words"] == len(text.split())  # Whisper tiny.en
    row = scorer.score("p", wav, noisy, text)
    assert row["metric_errors"] == {}, row["metric_errors"]
    expected = {
        "pesq_wb": (1.0, 4.65),
        "pesq_nb": (1.0, 4.56),
        "stoi": (0.8, 1.0),
        "estoi": (0.6, 1.0),
        "si_sdr": (25.0, 35.0),  # the noise is 30 dB below the speech
        "log_mel_distance": (0.0, 2.0),
        "mcd": (0.0, 10.0),
        "f0_rmse_cents": (0.0, 100.0),
        "f0_corr": (0.8, 1.0),
        "vuv_error": (0.0, 0.2),
        "speaker_similarity": (0.8, 1.0),
        "dnsmos_ovrl": (1.0, 5.0),
        "dnsmos_sig": (1.0, 5.0),
        "visqol": (1.0, 5.0),
    }
    for key, (low, high) in expected.items():
        assert row.get(key) is not None and low <= row[key] <= high, (key, row.get(key))
    assert row["wer_errors"] <= 2 and row["wer_words"] == len(text.split()), (text, row["hypothesis"])


def test_a_package_whose_own_import_breaks_is_not_called_missing(tmp_path, monkeypatch):
    """The webrtcvad case: the package is installed, but it imports ``pkg_resources``, which is gone. The
    reason must say so (and how to fix it), not tell the user to install what is installed."""
    package = tmp_path / "s4_broken_vad"
    package.mkdir()
    (package / "__init__.py").write_text("import pkg_resources_s4_gone as pkg_resources\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BackendUnavailable) as error:
        require("s4_broken_vad", "broken-vad")
    message = str(error.value)
    assert "is installed but cannot be imported" in message and "pkg_resources_s4_gone" in message
    assert "not installed" not in message
    with pytest.raises(BackendUnavailable, match="s4-absent is not installed"):
        require("s4_absent_module", "s4-absent")


def test_resemblyzer_imports_without_pkg_resources(tmp_path):
    """On a fresh install torch's setuptools has no ``pkg_resources``: resemblyzer (and the webrtcvad it
    imports) must import with ``pkg_resources`` made unimportable."""
    blocker = tmp_path / "pkg_resources.py"
    blocker.write_text(
        "raise ModuleNotFoundError(\"No module named 'pkg_resources'\", name='pkg_resources')\n"
    )
    code = textwrap.dedent(
        """
        import resemblyzer, webrtcvad
        print(webrtcvad.Vad(3).is_speech(b"\\0" * 640, 16000))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"  # 20 ms of digital silence is not speech
