"""The ``slmtok`` command line, run in-process through ``slmtok.cli.main.main`` (plus one subprocess test).

Audio is real speech (the Asterisk prompts, read through PyAV), cut to short clips written with soundfile.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import slmtok
from slmtok.audio import resample
from slmtok.cli.main import main
from slmtok.corpora import asterisk_prompts
from slmtok.tokenfile import read_header

# ------------------------------------------------------------------------------------------ fixtures


def _speech(language: str, index: int, seconds: float) -> np.ndarray:
    """The first ``seconds`` of the first prompt from ``index`` on that lasts that long: 16 kHz mono ``[T]``."""
    for path in asterisk_prompts(language)[index:]:
        wav, rate = slmtok.read_audio(path)
        assert rate == 16000
        if wav.shape[-1] >= seconds * rate:
            return wav[0, : int(seconds * rate)].numpy()
    raise AssertionError(f"no {language} prompt of {seconds} s")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Clips this short gain nothing from threads, and OpenMP threads spinning on a busy 2-core machine
    make each call tens of times slower; restored afterwards for the rest of the session."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def speech() -> dict[str, np.ndarray]:
    """Three short clips of two talkers at 16 kHz (different lengths)."""
    return {
        "en1": _speech("en", 2, 1.5),
        "en2": _speech("en", 8, 0.9),
        "fr": _speech("fr", 5, 1.2),
    }


@pytest.fixture(scope="module")
def tokenizers():
    cache: dict[tuple, slmtok.Tokenizer] = {}

    def get(name: str, **options) -> slmtok.Tokenizer:
        key = (name, json.dumps(options, sort_keys=True))
        if key not in cache:
            cache[key] = slmtok.load(name, **options)
        return cache[key]

    return get


def resample_np(x: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz ``[T]`` (or ``[T, C]``) -> ``rate`` Hz, so files on disk really have other rates."""
    if rate == 16000:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x.T if x.ndim == 2 else x))
    y = resample(t, 16000, rate).numpy()
    return np.ascontiguousarray(y.T if x.ndim == 2 else y)


def write(path: Path, data: np.ndarray, rate: int = 16000, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def library_codes(tok, path: Path, start: float = 0.0, duration: float | None = None, **kw) -> torch.Tensor:
    """What the library (one file alone, no batching) makes of ``path``: codes ``[K, T]``."""
    wav, rate = slmtok.read_audio(path, start=start, duration=duration)
    tokens = tok.encode(wav, rate, **kw)
    return tokens.item(0)


def file_codes(path: Path) -> torch.Tensor:
    tokens = slmtok.load_tokens(path)
    assert tokens.batch_size == 1
    return tokens.item(0)


def files_under(folder: Path) -> list[Path]:
    """Every file (hidden temporaries included) under ``folder``; none if it does not exist."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def expected_bitrate(frame_rate: float, sizes: list[int]) -> float:
    return frame_rate * sum(math.log2(s) for s in sizes)


# ------------------------------------------------------------------------------------------ list, info


def test_list_json_has_every_tokenizer_with_computed_bitrate(capsys):
    rc, out, err = run(capsys, "list", "--json")
    assert rc == 0, err
    rows = json.loads(out)
    names = [r["name"] for r in rows]
    assert names == slmtok.list_tokenizers()
    assert {"mel-rvq", "mfcc-km", "mulaw-8bit"} <= set(names)
    for row in rows:
        if not row["available"]:
            assert row["reason"]
            continue
        assert row["bitrate"] == pytest.approx(expected_bitrate(row["frame_rate"], row["codebook_sizes"]))
        assert row["tokens_per_second"] == pytest.approx(row["frame_rate"] * len(row["codebook_sizes"]))
    by_name = {r["name"]: r for r in rows}
    assert by_name["mel-rvq"]["bitrate"] == pytest.approx(8000.0)
    assert by_name["mulaw-8bit"]["bitrate"] == pytest.approx(128000.0)
    assert by_name["mfcc-km"]["bitrate"] == pytest.approx(100 * math.log2(100))


def test_list_pattern_filters(capsys):
    rc, out, _ = run(capsys, "list", "mf*", "--json")
    assert rc == 0
    assert [r["name"] for r in json.loads(out)] == ["mfcc-km"]


@pytest.mark.parametrize("columns", ["80", "250"])
def test_list_table_shows_every_name_and_kbps(capsys, monkeypatch, columns):
    """Names must never be cut, even on an 80-column terminal or a pipe (rich's default width)."""
    monkeypatch.setenv("COLUMNS", columns)
    rc, out, err = run(capsys, "list")
    assert rc == 0, err
    lines = out.splitlines()
    for name in slmtok.list_tokenizers():
        rows = [ln for ln in lines if f" {name} " in ln]
        assert rows, f"{name!r} missing (or cut) in:\n{out}"
        if columns == "250":
            try:
                card = slmtok.load(name).card
            except slmtok.SlmtokError:  # weights not available here: listed with the reason instead
                continue
            kbps = expected_bitrate(card.frame_rate, list(card.codebook_sizes)) / 1000
            assert f" {kbps:.2f} " in rows[0]
            assert f"{card.sample_rate} Hz" in rows[0]


def test_info_json(capsys, tokenizers):
    rc, out, err = run(capsys, "info", "mel-rvq", "--json")
    assert rc == 0, err
    info = json.loads(out)
    for key in (
        "name",
        "kind",
        "sample_rate",
        "frame_rate",
        "codebook_sizes",
        "bitrate",
        "hash",
        "license",
        "source",
    ):
        assert key in info, key
    assert info["name"] == "mel-rvq"
    assert info["kind"] == "acoustic"
    assert info["sample_rate"] == 16000
    assert info["frame_rate"] == 100
    assert info["codebook_sizes"] == [1024] * 8
    assert info["bitrate"] == pytest.approx(expected_bitrate(info["frame_rate"], info["codebook_sizes"]))
    assert info["bitrate"] == pytest.approx(8000.0)
    assert info["hash"] == tokenizers("mel-rvq").card.hash
    assert len(info["hash"]) == 64 and int(info["hash"], 16) >= 0
    assert info["license"] and info["source"]
    assert info["load_options"] == {}


def test_info_text(capsys):
    rc, out, _ = run(capsys, "info", "mulaw-8bit")
    assert rc == 0
    assert "mulaw-8bit" in out
    assert "128000.0 bits/s (128.00 kbps)" in out


def test_info_with_option(capsys, tokenizers):
    rc, out, err = run(capsys, "info", "mfcc-km", "-O", "dedup=true", "--json")
    assert rc == 0, err
    info = json.loads(out)
    assert info["load_options"] == {"dedup": True}  # "true" parsed as JSON, not the string "true"
    assert info["hash"] == tokenizers("mfcc-km", dedup=True).card.hash
    assert info["codebook_sizes"] == [100]
    _, plain, _ = run(capsys, "info", "mfcc-km", "--json")
    plain = json.loads(plain)
    assert not plain["load_options"].get("dedup", False)
    assert plain["hash"] != info["hash"]  # the option changes what the tokenizer is


def test_option_without_equals_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["info", "mfcc-km", "-O", "dedup"])
    assert exc.value.code == 2
    assert "KEY=VALUE" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ encode, decode


def test_encode_one_file_then_decode(capsys, tmp_path, speech, tokenizers):
    wav = write(tmp_path / "in" / "clip.wav", speech["en1"])
    tokens_path = tmp_path / "out" / "clip.slmtok"
    rc, out, err = run(capsys, "encode", wav, "-o", tokens_path, "--json")
    assert rc == 0, err
    assert all(line.startswith("slmtok encode: ") for line in err.splitlines()), err  # progress lines only
    report = json.loads(out)
    assert report["tokenizer"] == "mel-rvq" and report["files"] == 1
    assert report["items"][0]["output"] == str(tokens_path)
    assert report["audio_seconds"] == pytest.approx(len(speech["en1"]) / 16000)
    assert files_under(tmp_path / "out") == [tokens_path]

    tokens = slmtok.load_tokens(tokens_path)
    tok = tokenizers("mel-rvq")
    assert tokens.tokenizer.name == "mel-rvq" and tokens.tokenizer.hash == tok.card.hash
    assert tokens.n_codebooks == 8
    assert tokens.input.lengths == (len(speech["en1"]),)
    assert torch.equal(tokens.item(0), library_codes(tok, wav))
    assert read_header(tokens_path)["sources"] == [str(wav)]

    audio_path = tmp_path / "decoded.wav"
    rc, out, err = run(capsys, "decode", tokens_path, "-o", audio_path)
    assert rc == 0, err
    assert "decoded 1 file in" in out
    info = sf.info(str(audio_path))
    assert info.samplerate == 16000 and info.channels == 1
    assert abs(info.frames - len(speech["en1"])) <= 160  # within one 10 ms frame
    decoded, _ = sf.read(str(audio_path), dtype="float32")
    assert np.abs(decoded).max() > 0.01  # not silence
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_encode_k_codebooks(capsys, tmp_path, speech, tokenizers):
    wav = write(tmp_path / "clip.wav", speech["en2"])
    out = tmp_path / "clip.slmtok"
    rc, _, err = run(capsys, "encode", wav, "-o", out, "-k", "3")
    assert rc == 0, err
    codes = file_codes(out)
    assert codes.shape[0] == 3
    assert torch.equal(codes, library_codes(tokenizers("mel-rvq"), wav, n_codebooks=3))


def test_encode_folder_recursively_batched(capsys, tmp_path, speech, tokenizers):
    """Nested folders, .wav and .flac, 8/16/44.1/48 kHz and a stereo file, --batch-size 3: one token file
    per input at the mirrored path, each with exactly the codes the library gives that file alone."""
    root = tmp_path / "corpus"
    en1, en2, fr = speech["en1"], speech["en2"], speech["fr"]
    stereo = np.stack([en2[:12000], fr[:12000]], axis=1)
    inputs = {
        "a.wav": (en1, 16000),  # a and b: same rate, different lengths -> batched with padding
        "b.wav": (en2, 16000),
        "c.flac": (resample_np(fr, 8000), 8000),
        "sub/d.wav": (resample_np(en2, 44100), 44100),
        "sub/e.flac": (resample_np(fr[:10000], 48000), 48000),
        "sub/deeper/f.wav": (stereo, 16000),
        "sub/deeper/g.flac": (en1[:9000], 16000),
        "other/h.wav": (resample_np(en1[:20000], 44100), 44100),
    }
    for rel, (data, rate) in inputs.items():
        write(root / rel, data, rate)
    (root / "notes.txt").write_text("not audio, not collected")
    (root / "empty_dir").mkdir()
    assert sf.info(str(root / "sub/deeper/f.wav")).channels == 2
    assert sf.info(str(root / "sub/e.flac")).samplerate == 48000

    out = tmp_path / "tokens"
    rc, stdout, err = run(capsys, "encode", root, "-o", out, "--batch-size", "3", "--json")
    assert rc == 0, err
    report = json.loads(stdout)
    assert report["files"] == len(inputs)

    expected = {Path(rel).with_suffix(".slmtok") for rel in inputs}
    assert {p.relative_to(out) for p in files_under(out)} == expected
    tok = tokenizers("mel-rvq")
    for rel, (data, rate) in inputs.items():
        path = out / Path(rel).with_suffix(".slmtok")
        tokens = slmtok.load_tokens(path)
        assert torch.equal(tokens.item(0), library_codes(tok, root / rel)), rel
        assert tokens.input.sample_rate == rate, rel
        assert tokens.input.lengths == (data.shape[0],), rel
        assert tokens.input.channels == (2 if data.ndim == 2 else 1), rel
        assert int(tokens.lengths[0]) == pytest.approx(data.shape[0] / rate * 100, abs=2), rel

    # the folder of token files decodes back to a mirrored folder of wavs
    decoded = tmp_path / "decoded"
    rc, stdout, err = run(capsys, "decode", out, "-o", decoded, "-b", "3", "--json")
    assert rc == 0, err
    assert {p.relative_to(decoded) for p in files_under(decoded)} == {p.with_suffix(".wav") for p in expected}
    for rel, (data, rate) in inputs.items():
        info = sf.info(str(decoded / Path(rel).with_suffix(".wav")))
        assert info.samplerate == 16000
        assert info.duration == pytest.approx(data.shape[0] / rate, abs=0.02), rel


def test_encode_tsv_manifest(capsys, tmp_path, speech, tokenizers):
    root = tmp_path / "audio"
    write(root / "spk1" / "u1.wav", speech["en1"])
    write(root / "spk2" / "u2.flac", resample_np(speech["fr"], 8000), 8000)
    manifest = tmp_path / "lists" / "train.tsv"
    manifest.parent.mkdir()
    manifest.write_text(
        f"{root}\nspk1/u1.wav\t{len(speech['en1'])}\nspk2/u2.flac\t{len(speech['fr']) // 2}\n"
    )

    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", manifest, "-o", out, "--json")
    assert rc == 0, err
    assert {p.relative_to(out) for p in files_under(out)} == {Path("spk1/u1.slmtok"), Path("spk2/u2.slmtok")}
    tok = tokenizers("mel-rvq")
    assert torch.equal(file_codes(out / "spk1/u1.slmtok"), library_codes(tok, root / "spk1/u1.wav"))
    assert torch.equal(file_codes(out / "spk2/u2.slmtok"), library_codes(tok, root / "spk2/u2.flac"))
    durations = [item["duration"] for item in json.loads(stdout)["items"]]
    assert durations == pytest.approx([len(speech["en1"]) / 16000, len(speech["fr"]) / 16000], abs=1e-3)


def test_encode_tsv_manifest_without_root_line(capsys, tmp_path, speech):
    write(tmp_path / "x" / "one.wav", speech["en2"])
    manifest = tmp_path / "list.tsv"
    manifest.write_text("x/one.wav\n")  # relative to the manifest's folder
    out = tmp_path / "out"
    rc, _, err = run(capsys, "encode", manifest, "-o", out)
    assert rc == 0, err
    assert files_under(out) == [out / "x" / "one.slmtok"]


def test_encode_jsonl_manifest_segments(capsys, tmp_path, speech, tokenizers):
    clip = write(tmp_path / "audio" / "long.wav", speech["en1"])  # 1.5 s
    g722 = asterisk_prompts("en")[2]  # read through PyAV (FFmpeg), sliced after decoding
    rows = [
        {"path": "audio/long.wav", "id": "seg-a", "offset": 0.25, "duration": 0.5},
        {"path": "audio/long.wav", "offset": 1.0},  # to the end: 0.5 s, named long_1-end
        {"path": str(clip)},  # whole file: 1.5 s
        {"path": str(g722), "id": "nested/prompt", "offset": 1.0, "duration": 0.75},
    ]
    manifest = tmp_path / "segments.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")

    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", manifest, "-o", out, "--json", "-b", "2")
    assert rc == 0, err
    names = {"seg-a.slmtok", "audio/long_1-end.slmtok", "long.slmtok", "nested/prompt.slmtok"}
    assert {str(p.relative_to(out)) for p in files_under(out)} == names

    report = json.loads(stdout)
    assert [item["duration"] for item in report["items"]] == pytest.approx([0.5, 0.5, 1.5, 0.75], abs=1e-3)
    assert report["items"][0]["input"].endswith("long.wav[0.25:0.75]")

    tok = tokenizers("mel-rvq")
    seg = slmtok.load_tokens(out / "seg-a.slmtok")
    assert seg.input.lengths == (8000,)
    assert int(seg.lengths[0]) == pytest.approx(50, abs=2)
    assert torch.equal(seg.item(0), library_codes(tok, clip, start=0.25, duration=0.5))
    sliced = tok.encode(torch.from_numpy(speech["en1"][4000:12000]), 16000).item(0)
    assert torch.equal(seg.item(0), sliced)
    tail = slmtok.load_tokens(out / "audio" / "long_1-end.slmtok")
    assert tail.input.lengths == (8000,)
    prompt = slmtok.load_tokens(out / "nested" / "prompt.slmtok")
    assert prompt.input.lengths == (12000,)
    assert torch.equal(prompt.item(0), library_codes(tok, g722, start=1.0, duration=0.75))


def test_decode_folder_of_mixed_tokenizers(capsys, tmp_path, speech, tokenizers):
    """Token files from three tokenizers (and two codebook counts) decoded in one batched run: each with
    the tokenizer its file names, each to its own length."""
    src = tmp_path / "src"
    tokens_dir = tmp_path / "tokens"
    clips = {
        "rvq8": (speech["en1"], ["-t", "mel-rvq"]),
        "rvq3": (speech["fr"], ["-t", "mel-rvq", "-k", "3"]),
        "units": (speech["en2"], ["-t", "mfcc-km", "-O", "dedup=true"]),
        "mulaw": (speech["en2"][:4000], ["-t", "mulaw-8bit"]),
    }
    for name, (data, options) in clips.items():
        wav = write(src / f"{name}.wav", data)
        rc, _, err = run(capsys, "encode", wav, "-o", tokens_dir / f"{name}.slmtok", *options)
        assert rc == 0, err
    out = tmp_path / "audio"
    rc, stdout, err = run(capsys, "decode", tokens_dir, "-o", out, "-b", "4", "--json")
    assert rc == 0, err
    report = json.loads(stdout)
    assert report["files"] == 4
    durations = {Path(item["output"]).stem: item["duration"] for item in report["items"]}
    for name, (data, _) in clips.items():
        info = sf.info(str(out / f"{name}.wav"))
        assert info.samplerate == 16000
        assert info.frames == pytest.approx(len(data), abs=320), name
        assert durations[name] == pytest.approx(info.duration, abs=1e-3), name
    mulaw, _ = sf.read(str(out / "mulaw.wav"), dtype="float32")
    assert np.abs(mulaw - clips["mulaw"][0]).max() < 0.05  # mu-law: near-transparent


def test_decode_splits_a_multi_item_token_file(capsys, tmp_path, speech, tokenizers):
    """A library-made batch file (2 items) gives one audio file per item, each to its own length, named
    after its recorded source; it is neither cut to its first item nor mixed with the other files."""
    tok = tokenizers("mel-rvq")
    a, b = torch.from_numpy(speech["en1"]), torch.from_numpy(speech["en2"])
    batch = torch.zeros(2, 1, len(a))
    batch[0, 0], batch[1, 0, : len(b)] = a, b
    tokens = tok.encode(batch, 16000, lengths=[len(a), len(b)])
    (tmp_path / "in").mkdir()
    pair = slmtok.save_tokens(
        tmp_path / "in" / "pair.slmtok", tokens, card=tok.card.to_dict(), sources=["en1.wav", "en2.wav"]
    )
    single = slmtok.save_tokens(
        tmp_path / "in" / "single.slmtok", tok.encode(torch.from_numpy(speech["fr"]), 16000)
    )
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "decode", pair, single, "-o", out)
    assert rc == 0, err
    assert "decoded 2 files, 3 items," in stdout
    assert [p.name for p in files_under(out)] == ["en1.wav", "en2.wav", "single.wav"]
    for name in ("en1", "en2", "fr"):
        path = out / f"{'single' if name == 'fr' else name}.wav"
        assert sf.info(str(path)).frames == pytest.approx(len(speech[name]), abs=160), name


# ------------------------------------------------------------------------------------------ resynth


def test_resynth_json(capsys, tmp_path, speech):
    folder = tmp_path / "in"
    write(folder / "a.wav", speech["en1"])
    write(folder / "b.wav", resample_np(speech["fr"], 44100), 44100)
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "resynth", folder, "-o", out, "--json")
    assert rc == 0, err
    report = json.loads(stdout)
    seconds = (len(speech["en1"]) + len(speech["fr"])) / 16000
    assert report["tokenizer"] == "mel-rvq" and report["files"] == 2
    assert report["audio_seconds"] == pytest.approx(seconds, abs=1e-3)
    assert report["n_codebooks"] == 8
    assert report["bitrate"] == pytest.approx(8000.0)
    assert report["tokens_per_second"] == pytest.approx(800.0, rel=0.02)
    for key in ("encode_real_time_factor", "decode_real_time_factor"):
        assert 0 < report[key] < 10, key  # seconds of compute per second of audio: positive, not absurd
    assert {p.relative_to(out) for p in files_under(out)} == {Path("a.wav"), Path("b.wav")}
    assert sf.info(str(out / "b.wav")).samplerate == 16000
    assert sf.info(str(out / "b.wav")).duration == pytest.approx(len(speech["fr"]) / 16000, abs=0.02)


def test_resynth_fewer_codebooks(capsys, tmp_path, speech):
    wav = write(tmp_path / "a.wav", speech["en2"])
    out = tmp_path / "a_k4.wav"
    rc, stdout, err = run(capsys, "resynth", wav, "-o", out, "-k", "4", "--json")
    assert rc == 0, err
    report = json.loads(stdout)
    assert report["n_codebooks"] == 4
    assert report["bitrate"] == pytest.approx(4000.0)
    assert report["tokens_per_second"] == pytest.approx(400.0, rel=0.03)
    assert out.is_file() and sf.info(str(out)).samplerate == 16000

    rc, text, err = run(capsys, "resynth", wav, "-o", tmp_path / "plain.wav", "-k", "4")
    assert rc == 0, err
    assert "4.00 kbps" in text and "4 codebooks" in text


def test_mfcc_km_dedup_round_trip_from_file_alone(capsys, tmp_path, speech, tokenizers):
    wav = write(tmp_path / "a.wav", speech["en1"])
    tokens_path = tmp_path / "a.slmtok"
    rc, _, err = run(capsys, "encode", wav, "-o", tokens_path, "-t", "mfcc-km", "-O", "dedup=true")
    assert rc == 0, err
    tokens = slmtok.load_tokens(tokens_path)
    assert tokens.tokenizer.name == "mfcc-km"
    assert tokens.tokenizer.options == {"dedup": True}
    tok = tokenizers("mfcc-km", dedup=True)
    assert torch.equal(tokens.item(0), library_codes(tok, wav))
    codes = tokens.item(0)[0]
    assert bool((codes[1:] != codes[:-1]).all())  # deduplicated: no unit repeats
    frames = int(tokens.extras["durations"][0, 0, : int(tokens.lengths[0])].sum())
    assert frames == pytest.approx(len(speech["en1"]) / 160, abs=2)  # run lengths cover every frame

    out = tmp_path / "a_resynth.flac"
    rc, _, err = run(capsys, "decode", tokens_path, "-o", out)  # no -t, no -O: the file says it all
    assert rc == 0, err
    info = sf.info(str(out))
    assert info.format == "FLAC" and info.samplerate == 16000
    assert info.frames == pytest.approx(len(speech["en1"]), abs=320)


# ------------------------------------------------------------------------------------------ errors


def assert_one_line_error(rc: int, out: str, err: str, *fragments: str) -> str:
    assert rc != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("slmtok: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)
    return lines[0]


@pytest.fixture
def good_wav(tmp_path, speech) -> Path:
    return write(tmp_path / "good.wav", speech["en2"])


def test_error_missing_input(capsys, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", tmp_path / "nope.wav", "-o", out)
    assert_one_line_error(rc, stdout, err, "no such file", "nope.wav")
    assert files_under(out) == []


def test_error_not_audio(capsys, tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", junk, "-o", out)
    assert_one_line_error(rc, stdout, err, "not a readable audio file", "junk.wav")
    assert files_under(out) == []


def test_error_empty_wav(capsys, tmp_path):
    empty = write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    assert sf.info(str(empty)).frames == 0
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", empty, "-o", out)
    assert_one_line_error(rc, stdout, err, "empty audio", "empty.wav")
    assert files_under(out) == []


def test_error_nan_wav(capsys, tmp_path, speech):
    data = speech["en2"].copy()
    data[1000] = np.nan
    bad = write(tmp_path / "nan.wav", data, subtype="FLOAT")
    assert np.isnan(sf.read(str(bad))[0]).any()
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", bad, "-o", out / "nan.slmtok")
    assert_one_line_error(rc, stdout, err, "NaN", "nan.wav")
    assert files_under(out) == []


def test_error_nan_file_in_a_batch_is_named(capsys, tmp_path, speech):
    """A bad file batched with good ones: the error names the bad file; no temporary files remain."""
    folder = tmp_path / "in"
    write(folder / "a.wav", speech["en1"])
    data = speech["en2"].copy()
    data[-1] = np.inf
    write(folder / "b.wav", data, subtype="FLOAT")
    write(folder / "c.wav", speech["fr"])
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", folder, "-o", out, "-b", "3")
    assert_one_line_error(rc, stdout, err, "b.wav", "NaN or Inf")
    assert files_under(out) == []  # the batch failed as a whole: nothing half-written


def test_error_decode_not_a_token_file(capsys, tmp_path, good_wav):
    fake = tmp_path / "fake.slmtok"
    fake.write_bytes(np.random.default_rng(1).bytes(2000))
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "decode", fake, "-o", out)
    assert_one_line_error(rc, stdout, err, "not a .slmtok token file", "fake.slmtok")
    assert files_under(out) == []
    rc, stdout, err = run(capsys, "decode", good_wav, "-o", out / "x.wav")
    assert_one_line_error(rc, stdout, err, "not a .slmtok token file")
    assert files_under(out) == []


@pytest.mark.parametrize("code", [1024, -7, 70000])  # mel-rvq codebooks hold 1024 codes: 0..1023
def test_error_decode_codes_out_of_range(capsys, tmp_path, good_wav, tokenizers, code):
    tok = tokenizers("mel-rvq")
    wav, rate = slmtok.read_audio(good_wav)
    tokens = tok.encode(wav, rate)
    codes = tokens.codes.clone()
    codes[0, 3, 5] = code
    tokens = dataclasses.replace(tokens, codes=codes)
    bad = slmtok.save_tokens(tmp_path / "bad.slmtok", tokens, card=tok.card.to_dict())
    # a negative code inside an item's length is refused as a corrupt file when it is read (token files
    # v2); codes past the codebook size only by the tokenizer that knows the size
    fragments = ("bad.slmtok", "codes must be >= 0") if code < 0 else (f"code {code} ", "codebook 3, frame 5")
    if code >= 0:
        assert int(slmtok.load_tokens(bad).codes[0, 3, 5]) == code
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "decode", bad, "-o", out / "bad.wav")
    assert_one_line_error(rc, stdout, err, *fragments)
    assert files_under(out) == []
    rc, stdout, err = run(capsys, "decode", bad, "-o", out)  # into a folder
    assert_one_line_error(rc, stdout, err, fragments[-1])
    assert files_under(out) == []


def test_error_output_under_a_regular_file(capsys, tmp_path, good_wav):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    for output in (blocker / "sub", blocker / "x.slmtok", blocker):
        rc, stdout, err = run(capsys, "encode", good_wav, "-o", output)
        assert_one_line_error(rc, stdout, err, "blocker")
        assert blocker.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "good.wav"]


def test_error_unknown_tokenizer(capsys, tmp_path, good_wav):
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", good_wav, "-o", out, "-t", "mel-rvk")
    assert_one_line_error(rc, stdout, err, "unknown tokenizer 'mel-rvk'", "did you mean", "mel-rvq")
    assert files_under(out) == []
    rc, stdout, err = run(capsys, "info", "mfcc-kn")
    assert_one_line_error(rc, stdout, err, "mfcc-km")


def test_error_two_inputs_one_token_file(capsys, tmp_path, good_wav, speech):
    other = write(tmp_path / "other.wav", speech["fr"])
    target = tmp_path / "both.slmtok"
    rc, stdout, err = run(capsys, "encode", good_wav, other, "-o", target)
    assert_one_line_error(rc, stdout, err, "2 inputs", "output folder")
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.wav", "other.wav"]


def test_error_two_inputs_same_output_name(capsys, tmp_path, speech):
    a = write(tmp_path / "x" / "clip.wav", speech["en1"])
    b = write(tmp_path / "y" / "clip.flac", speech["fr"])
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", a, b, "-o", out)
    assert_one_line_error(rc, stdout, err, "same output")
    assert files_under(out) == []


def test_error_unknown_option(capsys, tmp_path, good_wav):
    rc, stdout, err = run(capsys, "info", "mel-rvq", "-O", "griffin_lim_itters=4")
    assert_one_line_error(
        rc, stdout, err, "'mel-rvq' has no option 'griffin_lim_itters'", "griffin_lim_iters"
    )
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", good_wav, "-o", out, "-t", "mfcc-km", "-O", "dedupe=true")
    assert_one_line_error(rc, stdout, err, "'dedupe'", "dedup")
    assert files_under(out) == []
    rc, stdout, err = run(capsys, "info", "mel-rvq", "-O", "device=cpu")
    assert_one_line_error(rc, stdout, err, "--device")


def test_error_bad_device(capsys, tmp_path, good_wav):
    rc, stdout, err = run(capsys, "info", "mel-rvq", "--device", "gpu0")
    assert_one_line_error(rc, stdout, err, "--device gpu0")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last CUDA device, wherever this runs
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", good_wav, "-o", out, "--device", missing)
    assert_one_line_error(rc, stdout, err, f"--device {missing}")
    assert files_under(out) == []


def test_error_output_file_is_an_existing_folder(capsys, tmp_path, good_wav, tokenizers):
    (tmp_path / "x.slmtok").mkdir()
    rc, stdout, err = run(capsys, "encode", good_wav, "-o", tmp_path / "x.slmtok")
    assert_one_line_error(rc, stdout, err, "x.slmtok", "is a folder")
    assert files_under(tmp_path) == [good_wav]  # no temporary file left beside it
    tokens = slmtok.save_tokens(
        tmp_path / "t.slmtok", tokenizers("mel-rvq").encode(*slmtok.read_audio(good_wav))
    )
    (tmp_path / "out" / "t.wav").mkdir(parents=True)  # decode into out/: out/t.wav is taken by a folder
    rc, stdout, err = run(capsys, "decode", tokens, "-o", tmp_path / "out")
    assert_one_line_error(rc, stdout, err, "t.wav", "is a folder")
    assert files_under(tmp_path) == [good_wav, tokens]


# ------------------------------------------------------------------------------------------ console script


def test_console_script_and_light_start_up():
    script = shutil.which("slmtok")
    assert script, "the slmtok console script is not installed"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    for command in ("list", "info", "encode", "decode", "resynth"):
        assert command in done.stdout

    probe = (
        "import sys; import slmtok.cli.main as m; p = m.build_parser(); "
        "p.parse_args(['encode', 'x.wav', '-o', 'y']); "
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'torchaudio')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
