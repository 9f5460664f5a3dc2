"""Input validation and conversion: every bad input gets a clear one-line error."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import slmtok
from slmtok.audio import as_batch, prepare, read_audio, write_audio
from slmtok.errors import AudioError, OutputError


@pytest.fixture(scope="module")
def tok():
    return slmtok.load("mel-rvq")


@pytest.mark.parametrize(
    ("wav", "rate", "message"),
    [
        (torch.zeros(0), 16000, "empty audio"),
        (torch.zeros(2, 0), 16000, "empty audio"),
        (torch.tensor([0.0, float("nan"), 0.1] * 100), 16000, "NaN or Inf"),
        (torch.tensor([0.0, float("inf")] * 100), 16000, "NaN or Inf"),
        (torch.zeros(1, 1, 1, 100), 16000, "dimensions"),
        (torch.zeros(16000, 2), 16000, "looks like \\[T, C\\]"),
        (torch.zeros(100), 0, "outside"),
        (torch.zeros(100), 16000.5, "integer"),
        ("not audio", 16000, "tensor or numpy"),
        (torch.zeros(100, dtype=torch.complex64), 16000, "float or int16"),
    ],
)
def test_bad_audio_is_refused(tok, wav, rate, message):
    with pytest.raises(AudioError, match=message) as info:
        tok.encode(wav, rate)
    assert "\n" not in str(info.value)


def test_nan_only_in_padding_is_fine(tok):
    wav = torch.randn(2, 1, 4000) * 0.1
    wav[0, 0, 3000:] = float("nan")
    tokens = tok.encode(wav, 16000, lengths=[3000, 4000])
    assert tokens.lengths.tolist() == [1 + 3000 // 160, 1 + 4000 // 160]


def test_nan_names_the_item(tok):
    wav = torch.zeros(3, 1, 400)
    wav[1, 0, 5] = float("nan")
    with pytest.raises(AudioError, match="item 1"):
        tok.encode(wav, 16000)


def test_bad_lengths_are_refused(tok):
    wav = torch.zeros(2, 1, 400)
    with pytest.raises(AudioError, match="lengths"):
        tok.encode(wav, 16000, lengths=[400, 401])
    with pytest.raises(AudioError, match="one entry per item"):
        tok.encode(wav, 16000, lengths=[400])
    with pytest.raises(AudioError, match="empty audio: item 0"):
        tok.encode(wav, 16000, lengths=[0, 400])


def test_int16_numpy_is_scaled():
    x = (np.sin(np.arange(1600) / 10) * 16000).astype(np.int16)
    wav, _ = as_batch(x)
    assert wav.dtype == torch.float32 and wav.abs().max() <= 0.5
    np.testing.assert_allclose(wav[0, 0].numpy(), x / 32768.0, atol=1e-6)


def test_prepare_downmixes_and_resamples():
    t = torch.arange(44100) / 44100
    left, right = torch.sin(2 * torch.pi * 440 * t), torch.zeros(44100)
    out = prepare(torch.stack([left, right]), 44100, target_rate=16000, target_channels=1)
    assert out.wav.shape == (1, 1, 16000) and out.lengths.tolist() == [16000]
    assert out.info.steps == ("channels 2 -> 1 (mean)", "resampled 44100 Hz -> 16000 Hz (Kaiser sinc)")
    assert out.wav.abs().max() == pytest.approx(0.5, abs=0.01)  # mean of a full-scale and a silent channel


def test_resampling_is_band_limited():
    """A 7 kHz tone at 48 kHz survives; a 12 kHz tone is removed (above 16 kHz's Nyquist) rather than aliased."""
    t = torch.arange(48000) / 48000
    keep = prepare(torch.sin(2 * torch.pi * 7000 * t), 48000, target_rate=16000, target_channels=1).wav
    drop = prepare(torch.sin(2 * torch.pi * 12000 * t), 48000, target_rate=16000, target_channels=1).wav
    assert keep[..., 1000:-1000].pow(2).mean() == pytest.approx(0.5, rel=0.02)
    assert drop[..., 1000:-1000].pow(2).mean() < 1e-6


def test_mono_to_stereo_duplicates():
    out = prepare(torch.ones(100) * 0.25, 16000, target_rate=16000, target_channels=2)
    assert out.wav.shape == (1, 2, 100) and torch.equal(out.wav[0, 0], out.wav[0, 1])


def test_read_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"definitely not audio" * 50)
    with pytest.raises(AudioError, match="not a readable audio file") as info:
        read_audio(junk)
    assert "\n" not in str(info.value)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty audio"):
        read_audio(empty)
    with pytest.raises(AudioError, match="folder"):
        read_audio(tmp_path)


def test_read_audio_formats_and_segments(tmp_path):
    x = (np.random.default_rng(0).standard_normal((3000, 2)) * 0.1).astype(np.float32)
    for suffix in (".wav", ".flac", ".ogg"):
        sf.write(tmp_path / f"a{suffix}", x, 22050)
        wav, rate = read_audio(tmp_path / f"a{suffix}")
        assert rate == 22050 and wav.shape == (2, 3000)
    seg, _ = read_audio(tmp_path / "a.wav", start=1000 / 22050, duration=500 / 22050)
    assert seg.shape == (2, 500)
    np.testing.assert_allclose(seg.numpy().T, x[1000:1500], atol=1e-4)


def test_read_g722_through_ffmpeg():
    from slmtok.corpora import asterisk_prompts

    path = asterisk_prompts("en")[0]
    wav, rate = read_audio(path)
    assert rate == 16000 and wav.shape[0] == 1 and wav.shape[1] > 1000
    assert 0.001 < wav.abs().max() <= 1.0


def test_write_audio_is_atomic(tmp_path):
    out = write_audio(tmp_path / "x.wav", torch.zeros(1, 800), 16000)
    assert sf.info(out).frames == 800 and sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]
    with pytest.raises(OutputError):
        write_audio(tmp_path / "x.wav" / "y.wav", torch.zeros(1, 800), 16000)
    with pytest.raises(AudioError, match="use .wav"):
        write_audio(tmp_path / "x.mp4", torch.zeros(1, 800), 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_write_audio_formats_read_back(tmp_path, fmt):
    """Encoded in memory, then written: soundfile (libsndfile) reads back the rate, length and samples."""
    t = torch.arange(16000) / 16000
    wav = 0.5 * torch.sin(2 * torch.pi * 440 * t)[None]
    out = write_audio(tmp_path / f"x.{fmt}", wav, 16000)
    data, rate = sf.read(str(out), dtype="float32")
    assert rate == 16000 and data.shape == (16000,)
    if fmt != "ogg":  # 16-bit PCM: within one quantisation step
        assert np.abs(data - wav[0].numpy()).max() <= 1 / 32768 + 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"x.{fmt}"]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("a" * 300 + ".wav", "File name too long"),  # over the 255-byte NAME_MAX of ext4 and most others
        ("spk\ud800.wav", "cannot be encoded"),  # a lone surrogate: no bytes in the filesystem encoding
    ],
)
def test_write_audio_refused_name_is_one_output_error_naming_the_file(tmp_path, name, reason):
    """Real refusals by the operating system (no monkeypatching): one ``OutputError`` line naming the
    file, and no file or temporary file left."""
    target = tmp_path / name
    with pytest.raises(OutputError) as caught:
        write_audio(target, torch.zeros(1, 800), 16000)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert str(target) in message and reason in message
    assert list(tmp_path.iterdir()) == []


def test_write_audio_file_too_large_is_one_output_error(tmp_path):
    """``RLIMIT_FSIZE`` in a child process (SIGXFSZ ignored) makes the kernel refuse the write with EFBIG,
    as a full disk or quota would with ENOSPC/EDQUOT; soundfile writing the file itself reported a bare
    ``LibsndfileError`` with no message."""
    import subprocess
    import sys

    code = (
        "import resource, signal, sys, torch\n"
        "from slmtok.audio import write_audio\n"
        "from slmtok.errors import OutputError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))\n"
        "try:\n"
        "    write_audio(sys.argv[1], torch.zeros(1, 16000), 16000)\n"
        "except OutputError as error:\n"
        "    print(error)\n"
    )
    target = tmp_path / "x.wav"
    done = subprocess.run(  # run in tmp_path: the checkout's folder must not shadow the installed slmtok
        [sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"cannot write {target}: File too large"
    assert list(tmp_path.iterdir()) == []
