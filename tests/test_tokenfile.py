"""``.slmtok`` files: round trip, header, atomic writes, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import slmtok
from slmtok.errors import OutputError, TokenFileError, TokenizerMismatchError
from slmtok.tokenfile import FORMAT_VERSION, read_header


@pytest.fixture(scope="module")
def tok():
    return slmtok.load("mel-rvq")


@pytest.fixture(scope="module")
def tokens(tok, speech_16k):
    return tok.encode(speech_16k, 16000)


def test_header_describes_everything_needed(tok, tokens, tmp_path):
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens, card=tok.card.to_dict(), sources=["speech.wav"])
    header = read_header(path)
    assert header["tokenizer"] == {"name": "mel-rvq", "hash": tok.card.hash, "options": {}, "weights": []}
    assert header["card"]["bitrate"] == tok.card.bitrate
    assert header["sample_rate"] == 16000 and header["frame_rate"] == 100.0
    assert header["codebook_sizes"] == [1024] * 8 and header["lengths"] == tokens.lengths.tolist()
    assert header["sources"] == ["speech.wav"] and header["input"]["durations"] == [1.5]
    assert [p.name for p in tmp_path.iterdir()] == ["a.slmtok"]


def test_codes_are_stored_compactly(tokens, tmp_path):
    from safetensors import safe_open

    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)
    with safe_open(str(path), "pt") as f:
        assert f.get_tensor("codes").dtype == torch.int16
    assert slmtok.load_tokens(path).codes.dtype == torch.int64


def test_refuses_junk_and_newer_versions(tokens, tmp_path):
    with pytest.raises(TokenFileError, match="no such token file"):
        slmtok.load_tokens(tmp_path / "missing.slmtok")
    junk = tmp_path / "junk.slmtok"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(TokenFileError, match="not a .slmtok token file"):
        slmtok.load_tokens(junk)
    foreign = tmp_path / "foreign.slmtok"
    save_file({"x": torch.zeros(2)}, foreign)
    with pytest.raises(TokenFileError, match="no slmtok header"):
        slmtok.load_tokens(foreign)
    newer = tmp_path / "newer.slmtok"
    header = {"tokenizer": {"name": "mel-rvq", "hash": ""}, "frame_rate": 100.0}
    meta = {"format": "slmtok", "format_version": str(FORMAT_VERSION + 1), "header": json.dumps(header)}
    save_file({"codes": tokens.codes.to(torch.int16), "lengths": tokens.lengths}, newer, metadata=meta)
    with pytest.raises(TokenFileError, match="upgrade slmtok"):
        slmtok.load_tokens(newer)
    truncated = tmp_path / "truncated.slmtok"
    slmtok.save_tokens(truncated, tokens)
    truncated.write_bytes(truncated.read_bytes()[:-100])
    with pytest.raises(TokenFileError):
        slmtok.load_tokens(truncated)


def test_file_from_another_tokenizer_is_refused(tokens, tmp_path):
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)
    with pytest.raises(TokenizerMismatchError, match="made by 'mel-rvq'"):
        slmtok.load("mfcc-km").decode(slmtok.load_tokens(path))


def test_failed_write_leaves_nothing(tokens, tmp_path):
    target = tmp_path / "a.slmtok"
    slmtok.save_tokens(target, tokens)
    before = target.read_bytes()
    with pytest.raises(TokenFileError):  # sources of the wrong length: refused before writing
        slmtok.save_tokens(target, tokens, sources=["a", "b"])
    with pytest.raises(OutputError):
        slmtok.save_tokens(tmp_path / "a.slmtok" / "b.slmtok", tokens)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["a.slmtok"]


def test_tokens_cat_and_select(tok, speech_batch):
    wav, lengths = speech_batch
    tokens = tok.encode(wav, 16000, lengths=lengths)
    parts = [tokens.select([i]) for i in range(3)]
    joined = slmtok.Tokens.cat(parts)
    assert torch.equal(joined.codes, tokens.codes) and torch.equal(joined.lengths, tokens.lengths)
    assert joined.input == tokens.input
    with pytest.raises(ValueError, match="different tokenizers"):
        slmtok.Tokens.cat([parts[0], slmtok.load("mulaw-8bit").encode(wav[0], 16000)])
