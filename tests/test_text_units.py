"""Unit strings for text LLMs (``slmtok.text_units``, ``Tokens.to_text``, ``slmtok export-vocab``,
``slmtok tokens-to-text``).

References: the expected strings are literals written from the documented layout (``<|s_N|>`` per frame;
``<|c0_N|><|c1_N|>...`` frame by frame), never produced by slmtok; round trips compare with the codes
the tokenizer produced.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

import slmtok
from slmtok.cli.main import main
from slmtok.errors import UnitTextError
from slmtok.text_units import export_vocab, from_text, to_text
from slmtok.types import TokenizerRef, Tokens


@pytest.fixture(scope="module")
def mel_rvq():
    return slmtok.load("mel-rvq")


def small_tokens(codes: list[list[list[int]]], lengths: list[int]) -> Tokens:
    return Tokens(torch.tensor(codes), torch.tensor(lengths), 100.0, TokenizerRef("mel-rvq", ""))


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_single_codebook_layout_is_the_documented_literal():
    tokens = small_tokens([[[5, 7, 1023]], [[0, -1, -1]]], [3, 1])
    assert to_text(tokens) == ["<|s_5|><|s_7|><|s_1023|>", "<|s_0|>"]
    assert tokens.to_text() == ["<|s_5|><|s_7|><|s_1023|>", "<|s_0|>"]
    assert to_text(tokens, layout="codebooks") == ["<|c0_5|><|c0_7|><|c0_1023|>", "<|c0_0|>"]


def test_several_codebooks_interleave_frame_by_frame():
    tokens = small_tokens([[[12, 3, 9], [7, 40, -1], [0, 1, -1]]], [2])
    assert to_text(tokens) == ["<|c0_12|><|c1_7|><|c2_0|><|c0_3|><|c1_40|><|c2_1|>"]
    with pytest.raises(UnitTextError, match="one codebook"):
        to_text(tokens, layout="single")


def test_round_trip_is_exact_for_real_codes(mel_rvq, speech_batch):
    """Codes of three items of different lengths (K = 8 and K = 1) read back identical, padding included."""
    wav, lengths = speech_batch
    for k in (8, 1):
        tokens = mel_rvq.encode(wav, 16000, lengths=lengths, n_codebooks=k)
        text = tokens.to_text()
        assert len(text) == 3
        units = re.findall(r"<\|[^|]*\|>", text[1])
        assert len(units) == int(tokens.lengths[1]) * k  # one unit per frame and codebook
        back = from_text(text, mel_rvq)
        assert torch.equal(back.codes, tokens.codes)
        assert torch.equal(back.lengths, tokens.lengths)
        assert back.tokenizer == tokens.tokenizer and back.frame_rate == tokens.frame_rate
        assert torch.equal(from_text(text, mel_rvq.card).codes, tokens.codes)
        audio = mel_rvq.decode(back)  # decodable as it is
        assert audio.wav.shape[0] == 3


def test_whitespace_between_units_is_ignored(mel_rvq):
    back = from_text([" <|c0_1|><|c1_2|>\n<|c0_3|> <|c1_4|> "], mel_rvq)
    assert back.codes.tolist() == [[[1, 3], [2, 4]]]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<|s_1|>hello", "not a unit: 'hello'"),
        ("<|s_1024|>", "out of range for codebook 0"),
        ("<|s_07|>", "not a unit"),  # leading zeros: not the canonical text of any code
        ("<|c1_3|><|c0_3|>", "codebook 1 where codebook 0 was expected"),
        ("<|c0_1|><|c1_2|><|c0_3|>", "frame 1 has 1 codebook, the first frame 2"),
        ("<|c0_1|><|c2_2|>", "codebook 2 where codebook 1"),
        ("<|s_1|><|c0_2|>", "mixed"),
        ("<|c0_1|><|c1_1|><|c2_1|><|c3_1|><|c4_1|><|c5_1|><|c6_1|><|c7_1|><|c8_1|>", "name 9 codebooks"),
        ("<|s_-1|>", "not a unit"),
    ],
)
def test_bad_unit_text_is_one_line_error(mel_rvq, text, fragment):
    with pytest.raises(UnitTextError) as caught:
        from_text([text], mel_rvq)
    message = str(caught.value)
    assert fragment in message and "\n" not in message


def test_items_must_share_a_layout(mel_rvq):
    with pytest.raises(UnitTextError, match="mix"):
        from_text(["<|s_1|>", "<|c0_1|><|c1_1|>"], mel_rvq)
    with pytest.raises(UnitTextError, match="different numbers of codebooks"):
        from_text(["<|c0_1|><|c1_1|>", "<|c0_1|><|c1_1|><|c2_1|>"], mel_rvq)


def test_export_vocab_lists_every_code_of_every_codebook(mel_rvq):
    """mel-rvq: 8 codebooks of 1024 codes (its card)."""
    vocab = export_vocab(mel_rvq, n_codebooks=2)
    assert len(vocab) == 2048 and len(set(vocab)) == 2048
    assert vocab[0] == "<|c0_0|>" and vocab[1023] == "<|c0_1023|>" and vocab[1024] == "<|c1_0|>"
    assert export_vocab(mel_rvq, n_codebooks=1) == [f"<|s_{i}|>" for i in range(1024)]
    assert len(export_vocab(mel_rvq.card)) == 8 * 1024
    with pytest.raises(UnitTextError, match="1 to 8"):
        export_vocab(mel_rvq, n_codebooks=9)


def test_every_unit_written_is_in_the_vocabulary(mel_rvq, speech_16k):
    tokens = mel_rvq.encode(speech_16k, 16000, n_codebooks=3)
    vocab = set(export_vocab(mel_rvq, n_codebooks=3))
    assert set(re.findall(r"<\|[^|]*\|>", tokens.to_text()[0])) <= vocab


def test_cli_export_vocab_txt_json_and_stdout(capsys, tmp_path):
    rc, out, err = run(capsys, "export-vocab", "mel-rvq", "-k", "2", "-o", tmp_path / "v.txt")
    assert rc == 0, err
    lines = (tmp_path / "v.txt").read_text().splitlines()
    assert len(lines) == 2048 and lines[0] == "<|c0_0|>" and lines[-1] == "<|c1_1023|>"
    rc, out, err = run(capsys, "export-vocab", "mel-rvq", "-k", "1", "-o", tmp_path / "v.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "v.json").read_text()) == [f"<|s_{i}|>" for i in range(1024)]
    rc, out, err = run(capsys, "export-vocab", "mel-rvq")
    assert rc == 0 and out.splitlines()[-1] == "<|c7_1023|>" and len(out.splitlines()) == 8192


@pytest.mark.parametrize("args", [["-o", "vocab.csv"], ["-k", "9"], ["-k", "0"]])
def test_cli_export_vocab_errors_are_one_line(capsys, tmp_path, args):
    args = [str(tmp_path / a) if a.startswith("vocab") else a for a in args]
    rc, out, err = run(capsys, "export-vocab", "mel-rvq", *args)
    assert rc == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("slmtok: error: "), err
    assert list(tmp_path.iterdir()) == []


def test_cli_tokens_to_text_jsonl_round_trips(capsys, tmp_path, mel_rvq, speech_batch):
    wav, lengths = speech_batch
    tokens = mel_rvq.encode(wav, 16000, lengths=lengths, n_codebooks=2)
    path = slmtok.save_tokens(tmp_path / "b.slmtok", tokens, sources=["a.wav", "b.wav", "c.wav"])
    rc, out, err = run(capsys, "tokens-to-text", path, "-o", tmp_path / "units.jsonl")
    assert rc == 0, err
    rows = [json.loads(line) for line in (tmp_path / "units.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == ["a.wav", "b.wav", "c.wav"]
    assert [r["item"] for r in rows] == [0, 1, 2]
    assert [r["frames"] for r in rows] == tokens.lengths.tolist()
    pattern = r"(<\|c0_(0|[1-9][0-9]*)\|><\|c1_(0|[1-9][0-9]*)\|>)*"
    assert all(re.fullmatch(pattern, r["text"]) for r in rows)
    back = from_text([r["text"] for r in rows], mel_rvq)
    assert torch.equal(back.codes, tokens.codes)
    rc, out, err = run(capsys, "tokens-to-text", path, "-o", path)  # never over an input
    assert rc == 1 and len(err.splitlines()) == 1 and ".jsonl" in err
    assert slmtok.load_tokens(path).batch_size == 3
