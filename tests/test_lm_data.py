"""``slmtok.lm.prepare`` on real speech through real tokenizers: audio and token files give the same data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import slmtok
from slmtok.corpora import asterisk_prompts
from slmtok.errors import SlmtokError
from slmtok.lm.data import TokenData, prepare


@pytest.fixture(scope="module")
def prompts():
    """Eight short English prompts (under 3 s: G.722 is 8000 bytes/s)."""
    return [str(p) for p in asterisk_prompts("en") if p.stat().st_size < 24000][:8]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the test box is shared; small tensors gain nothing from two threads
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("name", "options", "pattern"), [("mel-rvq", {}, "delay"), ("mfcc-km", {"dedup": True}, "flatten")]
)
def test_audio_and_token_files_give_identical_data(tmp_path, prompts, name, options, pattern):
    tok = slmtok.load(name, **options)
    from_audio = prepare(
        prompts, tmp_path / "a", tokenizer=name, options=options, pattern=pattern, valid_fraction=0.2
    )
    folder = tmp_path / "tokens"
    folder.mkdir()
    codes, seconds = {}, 0.0
    for path in prompts:  # the same corpus as token files, made by the public API
        tokens = tok.encode(*slmtok.read_audio(path))
        codes[Path(path).stem] = tokens.item(0)
        seconds += tokens.input.durations[0]
        slmtok.save_tokens(folder / f"{Path(path).stem}.slmtok", tokens, card=tok.card.to_dict())
    from_tokens = prepare(None, tmp_path / "b", tokens=[str(folder)], pattern=pattern, valid_fraction=0.2)
    assert from_audio["splits"] == from_tokens["splits"]
    for split in ("train", "valid"):
        for shard in from_audio["splits"][split]["shards"]:
            assert (tmp_path / "a" / shard["file"]).read_bytes() == (
                tmp_path / "b" / shard["file"]
            ).read_bytes()

    manifest = from_audio
    assert manifest["tokenizer"] == {
        "name": name,
        "hash": tok.card.hash,
        "options": tok.ref.options,
        "weights": [w.to_dict() for w in tok.ref.weights],  # embedded weights: none recorded
    }
    assert from_tokens["tokenizer"] == manifest["tokenizer"]
    assert manifest["codebook_sizes"] == list(tok.card.codebook_sizes)
    assert manifest["dedup"] == bool(options.get("dedup"))
    total = manifest["splits"]["train"]["audio_seconds"] + manifest["splits"]["valid"]["audio_seconds"]
    assert total == pytest.approx(seconds, abs=1e-4)
    # the stored steps decode back to the tokenizer's codes, utterance by utterance
    data = TokenData(tmp_path / "a")
    stream = data.split("train")
    for line in (tmp_path / "a" / "train.tsv").read_text().splitlines()[1:]:
        utt, shard, start, steps, frames, _ = line.split("\t")
        raw = np.asarray(stream.shards[int(shard)][int(start) : int(start) + int(steps)], dtype=np.int64)
        assert torch.equal(data.pattern.decode(torch.from_numpy(raw)), codes[utt])
    if options.get("dedup"):  # deduplicated: fewer tokens per second than frames, mean durations kept
        assert manifest["splits"]["train"]["tokens_per_second"] < tok.card.frame_rate
        durations = manifest["unit_durations"]
        assert len(durations) == 100 and min(durations) >= 1
    else:
        assert manifest["splits"]["train"]["tokens_per_second"] == pytest.approx(800, rel=0.02)
    unigram = manifest["unigram"]
    assert (
        0
        < unigram["train_bits_per_token"]
        <= sum(math.log2(s) for s in tok.card.codebook_sizes) / tok.card.n_codebooks
    )
    json.dumps(manifest)  # plain JSON


def test_prepare_refusals(tmp_path, prompts):
    with pytest.raises(SlmtokError, match="not both"):
        prepare(prompts[:1], tmp_path / "x", tokens=[prompts[0]])
    with pytest.raises(SlmtokError, match="codebooks"):
        prepare(prompts[:2], tmp_path / "y", tokenizer="mfcc-km", n_codebooks=2)
    with pytest.raises(SlmtokError, match="no such file"):
        prepare([str(tmp_path / "missing.wav")], tmp_path / "z")
    tok = slmtok.load("mel-rvq")
    wav, rate = slmtok.read_audio(prompts[0])
    (tmp_path / "mixed").mkdir()
    slmtok.save_tokens(tmp_path / "mixed" / "a.slmtok", tok.encode(wav, rate, n_codebooks=2))
    slmtok.save_tokens(tmp_path / "mixed" / "b.slmtok", tok.encode(wav, rate, n_codebooks=3))
    with pytest.raises(SlmtokError, match="one tokenizer per data set"):
        prepare(None, tmp_path / "w", tokens=[str(tmp_path / "mixed")])
