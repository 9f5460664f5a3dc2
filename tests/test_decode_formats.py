"""Decoding to the input's format (``--match-input``, ``slmtok.audio.match_input``), multi-item token files
in ``slmtok decode``, the ``[C, T]`` warning, and progress lines when stderr is not a terminal.

References: rates, channel counts and lengths come from the files soundfile wrote; content is checked
against scipy's polyphase resampler (``scipy.signal.resample_poly``) and against the input speech's
RMS envelope (numpy), never against slmtok's own output.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

import slmtok
from slmtok.audio import match_input
from slmtok.cli import commands
from slmtok.cli.main import main
from slmtok.errors import AudioError, SlmtokWarning
from slmtok.types import Audio, InputInfo, Tokens


@pytest.fixture(scope="module")
def mel_rvq():
    return slmtok.load("mel-rvq")


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_line_error(rc: int, out: str, err: str, *fragments: str) -> None:
    assert rc == 1 and out == "", (rc, out, err)
    assert len(err.splitlines()) == 1 and err.startswith("slmtok: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def envelope(x: np.ndarray, hop: int) -> np.ndarray:
    """Frame RMS (numpy) of mono ``[T]``: what any decoder of this speech must roughly keep."""
    n = len(x) // hop
    return np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(1))


@pytest.fixture(scope="module")
def stereo_44k(tmp_path_factory, speech_16k) -> Path:
    """A 44.1 kHz stereo file of exactly 12345 samples: real speech (left) and 0.5x it (right)."""
    x = resample_poly(speech_16k.numpy().astype(np.float64), 441, 160)[:12345]
    path = tmp_path_factory.mktemp("stereo") / "st.wav"
    sf.write(str(path), np.stack([x, 0.5 * x], 1), 44100, subtype="FLOAT")
    return path


# ------------------------------------------------------------------------------------------ match input


def test_decode_match_input_gives_the_input_format(capsys, tmp_path, stereo_44k):
    """The issue's case: 44.1 kHz stereo, 12345 samples, mel-rvq (16 kHz mono) -> 44.1 kHz, 2, 12345."""
    tokens = tmp_path / "st.slmtok"
    rc, _, err = run(capsys, "encode", stereo_44k, "-o", tokens)
    assert rc == 0, err
    plain, matched = tmp_path / "plain.wav", tmp_path / "matched.wav"
    rc, _, err = run(capsys, "decode", tokens, "-o", plain)
    assert rc == 0, err
    assert (sf.info(str(plain)).samplerate, sf.info(str(plain)).channels) == (16000, 1)
    rc, out, err = run(capsys, "decode", tokens, "-o", matched, "--match-input", "--json")
    assert rc == 0, err
    info = sf.info(str(matched))
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, 12345)
    item = json.loads(out)["items"][0]
    assert (item["sample_rate"], item["channels"]) == (44100, 2)
    assert item["duration"] == pytest.approx(12345 / 44100)
    # content: the 16 kHz decode resampled by scipy, the mono output on both channels
    base, _ = sf.read(str(plain), dtype="float64")
    want = resample_poly(base, 441, 160)[:12345]
    got, _ = sf.read(str(matched), dtype="float64")
    assert np.abs(got[:, 0] - got[:, 1]).max() < 1e-4
    n = min(len(want), 12345) - 200
    assert np.corrcoef(got[200:n, 0], want[200:n])[0, 1] > 0.99


def test_resynth_match_input(capsys, tmp_path, stereo_44k):
    out = tmp_path / "r.wav"
    rc, _, err = run(capsys, "resynth", stereo_44k, "-o", out, "--match-input")
    assert rc == 0, err
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, 12345)
    rc, _, err = run(capsys, "resynth", stereo_44k, "-o", tmp_path / "plain.wav")
    assert rc == 0, err
    assert sf.info(str(tmp_path / "plain.wav")).samplerate == 16000


def test_match_input_library_trims_pads_and_mixes():
    """Lengths are the recorded ones exactly (trimmed or zero-padded); stereo decoded to a mono record is
    averaged; the resampled content follows scipy's resampler."""
    t = torch.arange(16000) / 16000
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    wav = torch.zeros(2, 2, 16000)
    wav[0, 0], wav[0, 1] = tone, -tone / 2
    wav[1, :, :8000] = tone[:8000]
    audio = Audio(wav, torch.tensor([16000, 8000]), 16000)
    out = match_input(audio, InputInfo(22050, 1, (22000, 11100)))
    assert out.sample_rate == 22050 and out.wav.shape == (2, 1, 22000)
    assert out.lengths.tolist() == [22000, 11100]
    want = resample_poly((tone / 4).double().numpy(), 441, 320)[:22000]
    assert np.abs(out.wav[0, 0].double().numpy()[100:-100] - want[100:-100]).max() < 2e-3
    assert float(out.wav[1, 0, 11100:].abs().max()) == 0.0  # past its length: padding only


def test_match_input_refuses_a_record_that_is_not_this_audio():
    audio = Audio(torch.zeros(1, 1, 16000), torch.tensor([16000]), 16000)
    with pytest.raises(AudioError, match="not the record of this audio"):
        match_input(audio, InputInfo(44100, 2, (44100 * 3600,)))  # an hour recorded, a second decoded
    with pytest.raises(AudioError, match="2 item"):
        match_input(audio, InputInfo(44100, 2, (100, 100)))


def test_decode_match_input_needs_a_trustworthy_record(capsys, tmp_path, mel_rvq, speech_16k):
    tokens = mel_rvq.encode(speech_16k, 16000)
    bare = Tokens(tokens.codes, tokens.lengths, tokens.frame_rate, tokens.tokenizer)  # no input record
    no_record = slmtok.save_tokens(tmp_path / "none.slmtok", bare)
    rc, out, err = run(capsys, "decode", no_record, "-o", tmp_path / "o1.wav", "--match-input")
    one_line_error(rc, out, err, "does not record its input", "--match-input")
    forged = tokens.select([0])
    forged.input = InputInfo(48000, 2, (48000 * 100,))  # 100 s recorded for 1.5 s of codes
    path = slmtok.save_tokens(tmp_path / "forged.slmtok", forged)
    rc, out, err = run(capsys, "decode", path, "-o", tmp_path / "o2.wav", "--match-input")
    one_line_error(rc, out, err, "not the record of this audio")
    rc, out, err = run(
        capsys, "decode", path, "-o", tmp_path / "o3.wav", "--match-input", "--max-seconds", "50"
    )
    one_line_error(rc, out, err, "recorded input is 100 s", "--max-seconds")
    assert files_under(tmp_path) == sorted([no_record, path])


# ------------------------------------------------------------------------------------------ multi-item files


@pytest.fixture(scope="module")
def pair(mel_rvq, speech_16k):
    """Two items of 1.5 s and 0.6 s (speech and its tail) encoded as one batch."""
    a, b = speech_16k, speech_16k[-9600:]
    batch = torch.zeros(2, 1, len(a))
    batch[0, 0], batch[1, 0, : len(b)] = a, b
    return mel_rvq.encode(batch, 16000, lengths=[len(a), len(b)]), (a.numpy(), b.numpy())


def test_decode_multi_item_file_writes_one_output_per_source(capsys, tmp_path, mel_rvq, pair, speech_16k):
    tokens, (a, b) = pair
    folder = tmp_path / "in"
    folder.mkdir()
    card = mel_rvq.card.to_dict()
    path = slmtok.save_tokens(
        folder / "pair.slmtok", tokens, card=card, sources=["/data/x/a.wav", "b.flac[1:1.6]"]
    )
    single = slmtok.save_tokens(folder / "single.slmtok", mel_rvq.encode(speech_16k[:8000], 16000), card=card)
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "decode", path, single, "-o", out, "--json", "-b", "2")
    assert rc == 0, err
    assert [p.name for p in files_under(out)] == ["a.wav", "b_1-1.6.wav", "single.wav"]
    report = json.loads(stdout)
    assert report["files"] == 2 and len(report["items"]) == 3
    for name, source in (("a.wav", a), ("b_1-1.6.wav", b)):
        got, rate = sf.read(str(out / name), dtype="float32")
        assert rate == 16000 and abs(len(got) - len(source)) <= 160, name
        env_got, env_src = envelope(got, 320), envelope(source, 320)
        n = min(len(env_got), len(env_src))
        assert np.corrcoef(env_got[:n], env_src[:n])[0, 1] > 0.8, name  # its own speech, not the other's
    rc, stdout, err = run(capsys, "decode", path, "-o", tmp_path / "m", "--match-input")
    assert rc == 0, err
    assert [sf.info(str(p)).frames for p in files_under(tmp_path / "m")] == [len(a), len(b)]


@pytest.mark.parametrize(
    ("sources", "names"),
    [
        (["../../evil.wav", "/etc/passwd"], ["evil.wav", "passwd.wav"]),  # folders dropped: inside -o
        (["..\\..\\win.wav", "C:\\x\\y.ogg"], ["win.wav", "y.wav"]),
        (["a/x.wav", "b/x.wav"], ["pair.0.wav", "pair.1.wav"]),  # same name twice: fallback
        (["A.wav", "a.wav"], ["pair.0.wav", "pair.1.wav"]),  # equal up to case
        (["..", "ok.wav"], ["pair.0.wav", "pair.1.wav"]),
        (["bad\x1bname.wav", "ok.wav"], ["pair.0.wav", "pair.1.wav"]),
        (None, ["pair.0.wav", "pair.1.wav"]),
    ],
)
def test_decode_multi_item_names_stay_confined(capsys, tmp_path, pair, sources, names):
    tokens, _ = pair
    path = slmtok.save_tokens(tmp_path / "pair.slmtok", tokens, sources=sources)
    out = tmp_path / "out" / "inner"
    rc, _, err = run(capsys, "decode", path, "-o", out)
    assert rc == 0, err
    assert [p.relative_to(out).as_posix() for p in files_under(tmp_path / "out")] == names
    assert files_under(tmp_path) == sorted([path, *(out / n for n in names)])


def test_decode_multi_item_file_to_one_audio_file_is_refused(capsys, tmp_path, pair):
    tokens, _ = pair
    path = slmtok.save_tokens(tmp_path / "pair.slmtok", tokens, sources=["a.wav", "b.wav"])
    rc, out, err = run(capsys, "decode", path, "-o", tmp_path / "one.wav")
    one_line_error(rc, out, err, "2 items", "output folder")
    rc, out, err = run(capsys, "decode", path, "-o", tmp_path / "out")  # a clash with another file's name
    assert rc == 0, err
    (tmp_path / "more").mkdir()
    other = slmtok.save_tokens(tmp_path / "more" / "a.slmtok", tokens.select([0]))
    rc, out, err = run(capsys, "decode", path, other, "-o", tmp_path / "out2")
    one_line_error(rc, out, err, "same output")
    assert not (tmp_path / "out2").exists() and not (tmp_path / "one.wav").exists()


# ------------------------------------------------------------------------------------------ [C, T] warning


def test_two_row_input_warns_once_and_says_how_to_pass_a_batch(mel_rvq, speech_16k):
    x = torch.stack([speech_16k, speech_16k.flip(0)])
    with pytest.warns(SlmtokWarning) as record:
        tokens = mel_rvq.encode(x, 16000)
    assert len(record) == 1
    message = str(record[0].message)
    assert "\n" not in message
    assert "2 channels of one item" in message and "down-mixed" in message and "[2, 1, " in message
    assert record[0].filename == __file__  # points at the caller's line, not at slmtok
    assert tokens.batch_size == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mel_rvq.encode(x[:, None], 16000).batch_size == 2  # [2, 1, T]: a batch, no warning
        mel_rvq.encode(x[:1], 16000)  # [1, T]: mono
        mel_rvq.encode(x[None], 16000)  # [1, 2, T]: explicit channels of one item


def test_cli_stereo_file_does_not_warn(capsys, tmp_path, stereo_44k):
    """A stereo file is one item's channels, never a batch: nothing to warn about."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rc, _, err = run(capsys, "encode", stereo_44k, "-o", tmp_path / "st.slmtok")
    assert rc == 0, err
    assert slmtok.load_tokens(tmp_path / "st.slmtok").input.channels == 2


# ------------------------------------------------------------------------------------------ progress

LINE = re.compile(r"^slmtok (\w+): (\d+)(/(\d+))? done, \d+ s elapsed \((running|finished)\)$")


def test_progress_lines_when_stderr_is_not_a_terminal(capsys, tmp_path, monkeypatch, mel_rvq, speech_16k):
    (tmp_path / "in").mkdir()
    for i in range(3):
        slmtok.save_tokens(
            tmp_path / "in" / f"{i}.slmtok", mel_rvq.encode(speech_16k[: 8000 + 4000 * i], 16000)
        )
    monkeypatch.setattr(commands, "PROGRESS_EVERY", 0.02)
    rc, out, err = run(capsys, "decode", tmp_path / "in", "-o", tmp_path / "out", "-b", "1")
    assert rc == 0, err
    lines = err.splitlines()
    assert lines and all(LINE.match(line) for line in lines), err
    assert all(LINE.match(line).group(1) == "decode" for line in lines)
    assert lines[-1].startswith("slmtok decode: 3/3 done") and lines[-1].endswith("(finished)")
    monkeypatch.setattr(commands, "PROGRESS_EVERY", 3600.0)  # a run shorter than the interval: quiet
    rc, out, err = run(capsys, "decode", tmp_path / "in", "-o", tmp_path / "out2")
    assert rc == 0 and err == ""


def test_progress_reports_a_single_long_item(capsys):
    """One long item (nothing advances for a while) still gets lines, from the timer."""
    with commands._LineProgress("decode", 0.05) as bar:
        task = bar.add_task("decode", total=1)
        time.sleep(0.4)
        bar.advance(task)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 3
    assert lines[0].startswith("slmtok decode: 0/1 done") and lines[-1].startswith("slmtok decode: 1/1 done")
    with commands._LineProgress("prepare", 0.05) as bar:  # lm prepare's use: update with unknown total
        task = bar.add_task("prepare", total=None)
        bar.update(task, completed=5, total=None)
        time.sleep(0.2)
    assert capsys.readouterr().err.splitlines()[0].startswith("slmtok prepare: 5 done")
