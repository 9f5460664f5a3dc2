"""Corpus-scale encoding: both engines give per-file ``encode`` tokens, a killed run resumes with every
input encoded exactly once, and unreadable files land in the failures list."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import slmtok
from slmtok.audio import resample
from slmtok.corpora import asterisk_prompts
from slmtok.corpus import encode_corpus, iter_items, load_item, read_index
from slmtok.errors import SlmtokError

TOKENIZER = "mfcc-km"  # fast; dedup adds extras (durations) that must survive sharding
OPTIONS = {"dedup": True}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """~230 inputs: real prompts (G.722 and 8 kHz wav), espeak-ng voices at 22.05 kHz, two long
    files, a stereo file, and two broken files."""
    root = tmp_path_factory.mktemp("corpus")
    prompts = asterisk_prompts("en")
    for path in prompts[:150]:
        (root / "g722").mkdir(exist_ok=True)
        shutil.copy(path, root / "g722" / path.name)
    (root / "wav8k").mkdir()
    for path in prompts[150:200]:
        wav, rate = slmtok.read_audio(path)
        sf.write(
            root / "wav8k" / f"{path.stem}.wav", resample(wav[0], rate, 8000).numpy(), 8000, subtype="PCM_16"
        )
    if shutil.which("espeak-ng"):
        (root / "tts").mkdir()
        for i, voice in enumerate(["en-us", "en-gb", "en-us+f3", "en-sc", "en-us+m7"] * 5):
            subprocess.run(
                [
                    "espeak-ng",
                    "-v",
                    voice,
                    "-w",
                    str(root / "tts" / f"s{i:02d}.wav"),
                    f"Sentence number {i} for {voice}.",
                ],
                check=True,
            )
    long = torch.cat([slmtok.read_audio(p)[0][0] for p in prompts[200:260]])
    (root / "long").mkdir()
    sf.write(root / "long" / "a.flac", long.numpy(), 16000)
    sf.write(root / "long" / "b.wav", long[: len(long) // 2].numpy(), 16000)
    sf.write(root / "long" / "stereo.wav", np.stack([long[:48000], long[:48000] * 0.5], 1), 16000)
    (root / "broken").mkdir()
    (root / "broken" / "junk.wav").write_bytes(b"RIFF not really a wave file" * 20)
    nan = np.zeros(8000, dtype=np.float32)
    nan[100] = np.nan
    sf.write(root / "broken" / "nan.wav", nan, 16000, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def reference(corpus):
    """Per-file ``encode`` of every readable input."""
    tok = slmtok.load(TOKENIZER, **OPTIONS)
    out = {}
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and "broken" not in path.parts:
            wav, rate = slmtok.read_audio(path)
            out[path.relative_to(corpus).with_suffix("").as_posix()] = tok.encode(wav, rate)
    return out


def check_equivalent(out: Path, reference: dict) -> None:
    rows = read_index(out)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(reference), "an input is missing or duplicated"
    for row, tokens in iter_items(out):
        expected = reference[row["id"]]
        assert torch.equal(tokens.codes, expected.codes), row["id"]
        assert torch.equal(tokens.extras["durations"], expected.extras["durations"]), row["id"]
        assert tokens.tokenizer == expected.tokenizer
        assert tokens.input.sample_rate == expected.input.sample_rate
        assert tokens.input.lengths == expected.input.lengths
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert sorted(f["id"] for f in failures) == ["broken/junk", "broken/nan"]
    assert all(f["error"] for f in failures)


def test_local_engine_matches_per_file_encode(corpus, reference, tmp_path):
    out = tmp_path / "local"
    summary = encode_corpus(
        [str(corpus)], out, tokenizer=TOKENIZER, options=OPTIONS, shard_size=40, batch_seconds=30
    )
    assert summary["encoded"] == len(reference) and summary["failures"] == 2
    assert summary["audio_seconds_per_second"] > 0
    check_equivalent(out, reference)
    decoded = slmtok.load(TOKENIZER, **OPTIONS).decode(load_item(out, "long/b"))
    assert abs(decoded.durations[0] - reference["long/b"].input.durations[0]) < 0.05
    # a second run over a finished folder does nothing and changes nothing
    before = {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    again = encode_corpus([str(corpus)], out, tokenizer=TOKENIZER, options=OPTIONS, shard_size=40)
    assert again["shards_this_run"] == 0 and before == {
        p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()
    }


def test_ray_engine_matches_per_file_encode(corpus, reference, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    summary = encode_corpus(
        [str(corpus)], out, tokenizer=TOKENIZER, options=OPTIONS, engine="ray", shard_size=40, actors=2
    )
    assert summary["engine"] == "ray" and summary["encoded"] == len(reference)
    check_equivalent(out, reference)


def test_resume_refuses_other_settings(corpus, tmp_path):
    out = tmp_path / "run"
    small = [str(corpus / "wav8k")]
    encode_corpus(small, out, tokenizer=TOKENIZER, options=OPTIONS, shard_size=100)
    with pytest.raises(SlmtokError, match="tokenizer options"):
        encode_corpus(small, out, tokenizer=TOKENIZER, options={}, shard_size=100)
    with pytest.raises(SlmtokError, match=r"inputs \(25 added, 50 removed\)"):
        encode_corpus([str(corpus / "tts")], out, tokenizer=TOKENIZER, options=OPTIONS)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(SlmtokError, match="not empty"):
        encode_corpus(small, tmp_path / "other", tokenizer=TOKENIZER)


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_kill_and_resume(corpus, reference, tmp_path, engine):
    if engine == "ray":
        pytest.importorskip("ray")
    out = tmp_path / engine
    command = [
        sys.executable, "-m", "slmtok.cli.main", "encode-corpus", str(corpus), "-o", str(out),
        "-t", TOKENIZER, "-O", "dedup=true", "--shard-size", "12", "--engine", engine,
    ]  # fmt: skip
    if engine == "ray":
        command += ["--actors", "1"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    shards = out / "shards"
    deadline = time.time() + 240
    while time.time() < deadline and (not shards.exists() or len(list(shards.glob("*.safetensors"))) < 3):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the whole job dies mid-run, Ray workers included
    process.wait()
    written = len(list(shards.glob("*.safetensors")))
    assert 3 <= written < 20, f"the kill came too late or too early ({written} of 20 shards)"
    assert not (out / "index.jsonl").exists()
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr  # 3: finished, with failures recorded
    check_equivalent(out, reference)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards_this_run"] == 20 - written


# --------------------------------------------------------------------------- durability (small corpus)
SMALL_TOKENIZER = "mulaw-8bit"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """12 short prompts (16 kHz wav), for the resume, damage, lock and orphan tests."""
    root = tmp_path_factory.mktemp("small")
    for path in asterisk_prompts("en")[:12]:
        wav, rate = slmtok.read_audio(path)
        sf.write(root / f"{path.stem}.wav", wav[0, :16000].numpy(), rate, subtype="PCM_16")
    return root


def small_reference(folder: Path) -> dict[str, torch.Tensor]:
    """Codes of each file from a per-file ``Tokenizer.encode`` (the path every user takes first)."""
    tok = slmtok.load(SMALL_TOKENIZER)
    return {p.stem: tok.encode(*slmtok.read_audio(p)).codes for p in sorted(folder.glob("*.wav"))}


def check_small(out: Path, folder: Path) -> None:
    expected = small_reference(folder)
    rows = read_index(out)
    assert sorted(r["id"] for r in rows) == sorted(expected), "an input is missing or duplicated"
    for row, tokens in iter_items(out):
        assert torch.equal(tokens.codes, expected[row["id"]]), row["id"]


def run_small(folder: Path, out: Path, **kwargs):
    warnings: list[str] = []
    kwargs.setdefault("shard_size", 4)
    summary = encode_corpus([str(folder)], out, tokenizer=SMALL_TOKENIZER, warn=warnings.append, **kwargs)
    return summary, warnings


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "foreign"])
def test_damaged_shard_is_encoded_again(small, tmp_path, damage):
    """A shard file that is empty, cut short, has a flipped byte in its codes, or holds another shard's
    items is encoded again with a one-line warning (the old code stopped, or kept the bad shard)."""
    out = tmp_path / "run"
    run_small(small, out)
    shard = out / "shards" / "shard-00001.safetensors"
    blob = shard.read_bytes()
    if damage == "empty":
        shard.write_bytes(b"")
    elif damage == "truncated":
        shard.write_bytes(blob[: len(blob) // 2])
    elif damage == "flipped":
        shard.write_bytes(blob[:-10] + bytes([blob[-10] ^ 0x55]) + blob[-9:])
    else:
        shutil.copy(out / "shards" / "shard-00000.safetensors", shard)
    (out / "index.jsonl").unlink()
    summary, warnings = run_small(small, out)
    assert summary["shards_this_run"] == 1
    assert len(warnings) == 1 and "shard 1" in warnings[0] and "\n" not in warnings[0]
    check_small(out, small)


def test_resume_checks_the_recorded_request(small, tmp_path):
    """The request a run was started with is recorded and compared: another shard size, a changed input
    file or a hand-edited plan is refused with one line naming what changed."""
    out = tmp_path / "run"
    run_small(small, out)
    with pytest.raises(SlmtokError, match=r"--shard-size 4 -> 5") as caught:
        run_small(small, out, shard_size=5)
    assert "\n" not in str(caught.value)
    with pytest.raises(SlmtokError, match=r"--n-codebooks None -> 1"):
        run_small(small, out, n_codebooks=1)
    changed = tmp_path / "changed"
    shutil.copytree(small, changed)
    other = tmp_path / "run2"
    run_small(changed, other)
    first = sorted(changed.glob("*.wav"))[0]
    sf.write(first, np.zeros(20000, dtype=np.float32), 16000, subtype="PCM_16")
    with pytest.raises(SlmtokError, match=r"inputs \(files changed on disk"):
        run_small(changed, other)
    plan = json.loads((out / "plan.json").read_text())
    plan["shards"][0][0]["duration"] = 99.0
    (out / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(SlmtokError, match="does not match its fingerprint"):
        run_small(small, out)


def test_second_concurrent_run_is_refused(small, tmp_path):
    """While another process holds the folder (a real ``slmtok encode-corpus`` stopped with SIGSTOP right
    after it wrote its plan), a second run is refused with one line naming its PID; once the first is
    gone, the folder can be resumed."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "slmtok.cli.main", "encode-corpus", str(small), "-o", str(out),
               "-t", SMALL_TOKENIZER, "--shard-size", "1"]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "plan.json").exists() and first.poll() is None:
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)
    try:
        if first.poll() is not None:
            pytest.skip("the first run finished before it could be paused")
        second = subprocess.run(command, capture_output=True, text=True)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"slmtok: error: another encode-corpus run (pid {first.pid}) is using {out}; wait for it to finish"
        ]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    summary, _ = run_small(small, out, shard_size=1)
    assert summary["encoded"] == 12
    check_small(out, small)


def test_orphaned_temporary_files_are_removed(small, tmp_path):
    """Temporary files of a dead writer (a PID that no longer exists) are removed by the next run; one of
    a live writer (this process) is left alone."""
    from slmtok.atomic import temp_name

    out = tmp_path / "run"
    run_small(small, out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live_name = temp_name("shard-00002.safetensors")
    dead_name = live_name.replace(f"-{os.getpid()}.", f"-{dead.pid}.")
    for name in (live_name, dead_name):
        (out / "shards" / name).write_bytes(b"partial")
    (out / "shards" / "shard-00002.safetensors").unlink()
    run_small(small, out)
    left = sorted(p.name for p in (out / "shards").iterdir() if not p.name.endswith(".safetensors"))
    assert left == [live_name]
    check_small(out, small)
