"""The contract every registered tokenizer keeps: batch == single, lengths, shapes, determinism, token
files, resampling from 8-48 kHz, mono and stereo, and refusals of codes it cannot decode."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch

import slmtok
from slmtok.errors import CodesError, TokenizerMismatchError
from slmtok.types import PAD_CODE, TokenizerRef

from .conformance import LOAD_OPTIONS, SHORT_LENGTHS, VARIANTS, check_decodes_short_input
from .conftest import at_rate

CASES = {**LOAD_OPTIONS, **VARIANTS}


def test_every_tokenizer_is_covered():
    builtin = [n for n in slmtok.list_tokenizers() if slmtok.tokenizer_entry(n).origin == "builtin"]
    assert builtin, "no tokenizers registered"
    missing = sorted(set(builtin) - set(LOAD_OPTIONS))
    assert not missing, f"add these tokenizers to tests/conformance.py: {missing}"


@pytest.fixture(scope="module", params=sorted(CASES))
def tok(request, tmp_path_factory):
    case = request.param
    name = case.split("[")[0]
    return slmtok.load(name, **CASES[case](tmp_path_factory.mktemp(name)))


def test_card_is_consistent(tok):
    card = tok.card
    assert card.kind in ("semantic", "acoustic", "hybrid", "baseline")
    assert card.sample_rate >= 8000 and card.frame_rate > 0
    assert isinstance(card.output_sample_rate, int) and card.output_sample_rate >= 8000
    assert card.to_dict()["output_sample_rate"] == card.output_sample_rate
    assert len(card.codebook_sizes) == card.n_codebooks <= card.max_codebooks
    assert card.bitrate == pytest.approx(sum(card.frame_rate * math.log2(s) for s in card.codebook_sizes))
    assert len(card.hash) == 64 and card.license and card.source
    assert all(0 <= q < card.n_codebooks for q in card.semantic_codebooks)


def test_tokens_layout_and_lengths(tok, speech_batch):
    wav, lengths = speech_batch
    tokens = tok.encode(wav, 16000, lengths=lengths)
    assert tokens.codes.dtype == torch.int64 and tokens.codes.ndim == 3
    assert tokens.codes.shape[:2] == (3, tok.card.n_codebooks)
    assert tokens.lengths.tolist() and tokens.codes.shape[-1] == int(tokens.lengths.max())
    for i in range(3):
        n = int(tokens.lengths[i])
        assert (tokens.codes[i, :, n:] == PAD_CODE).all()
        assert (tokens.codes[i, :, :n] >= 0).all()
        for q, size in enumerate(tok.card.codebook_sizes):
            assert int(tokens.codes[i, q, :n].max()) < size
    assert tokens.tokenizer == tok.ref
    assert tokens.input.lengths == tuple(lengths.tolist())
    if "durations" not in tokens.extras:  # frame count follows the frame rate
        for i in range(3):
            expected = lengths[i] / 16000 * tok.card.frame_rate
            assert abs(int(tokens.lengths[i]) - float(expected)) <= 3


def test_batch_equals_single(tok, speech_batch):
    wav, lengths = speech_batch
    batch = tok.encode(wav, 16000, lengths=lengths)
    for i in range(3):
        alone = tok.encode(wav[i, :, : int(lengths[i])], 16000)
        assert torch.equal(batch.item(i), alone.item(0)), f"item {i} differs when batched"
        for name, extra in batch.extras.items():
            n = int(lengths[i]) and int(batch.lengths[i])
            assert torch.equal(extra[i, ..., :n], alone.extras[name][0, ..., :n])


def test_padding_content_is_ignored(tok, speech_batch):
    wav, lengths = speech_batch
    noisy = wav.clone()
    for i, n in enumerate(lengths.tolist()):
        noisy[i, :, n:] = torch.randn_like(noisy[i, :, n:])
    assert torch.equal(
        tok.encode(noisy, 16000, lengths=lengths).codes, tok.encode(wav, 16000, lengths=lengths).codes
    )


def test_encode_is_deterministic(tok, speech_16k):
    a = tok.encode(speech_16k, 16000)
    b = tok.encode(speech_16k.clone(), 16000)
    assert torch.equal(a.codes, b.codes)


def test_decode_shapes_and_lengths(tok, speech_batch):
    wav, lengths = speech_batch
    tokens = tok.encode(wav, 16000, lengths=lengths)
    audio = tok.decode(tokens)
    rate = tok.card.output_sample_rate  # the card's sample_rate, except for NeuCodec (16 kHz in, 24 out)
    assert audio.sample_rate == rate
    assert audio.wav.shape[:2] == (3, tok.card.channels) and audio.wav.dtype == torch.float32
    assert audio.wav.shape[-1] == int(audio.lengths.max())
    for i in range(3):
        expected = int(lengths[i]) * rate / 16000
        assert abs(int(audio.lengths[i]) - expected) <= 0.03 * rate  # within 30 ms
        assert (audio.wav[i, :, int(audio.lengths[i]) :] == 0).all()
        assert torch.isfinite(audio.item(i)).all() and audio.item(i).abs().max() > 0
    again = tok.decode(tokens)
    assert torch.equal(audio.wav, again.wav), "decode is not deterministic"


def test_decode_batch_gives_each_item_its_own_audio(tok, speech_batch):
    wav, lengths = speech_batch
    tokens = tok.encode(wav, 16000, lengths=lengths)
    batch = tok.decode(tokens)
    for i in range(3):
        alone = tok.decode(tokens.select([i]))
        assert int(alone.lengths[0]) == int(batch.lengths[i])
        torch.testing.assert_close(alone.item(0), batch.item(i), atol=1e-4, rtol=0)


def test_token_file_round_trip(tok, speech_batch, tmp_path):
    wav, lengths = speech_batch
    tokens = tok.encode(wav, 16000, lengths=lengths)
    path = slmtok.save_tokens(tmp_path / "x.slmtok", tokens, card=tok.card.to_dict(), sources=["a", "b", "c"])
    back = slmtok.load_tokens(path)
    assert torch.equal(back.codes, tokens.codes) and torch.equal(back.lengths, tokens.lengths)
    assert back.tokenizer == tokens.tokenizer and back.frame_rate == tokens.frame_rate
    assert back.extras.keys() == tokens.extras.keys()
    assert all(torch.equal(back.extras[k], tokens.extras[k]) for k in tokens.extras)
    assert back.input == tokens.input
    assert "trust" not in back.tokenizer.options, "trust is the loader's choice, never recorded"
    for record in back.tokenizer.weights:  # reference: hashlib over the file's bytes
        assert Path(record.path).is_absolute()
        if record.kind == "file":
            assert record.sha256 == hashlib.sha256(Path(record.path).read_bytes()).hexdigest()
    # decodable from the file alone (trust, if this tokenizer needed it, from the caller only)
    rebuilt = slmtok.load_for(back, trust=bool(tok.load_options.get("trust")))
    assert rebuilt.card.hash == tok.card.hash
    assert torch.equal(rebuilt.decode(back).wav, tok.decode(tokens).wav)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_resampling_from_common_rates(tok, speech_16k, rate):
    x = at_rate(speech_16k, rate)
    tokens = tok.encode(x, rate)
    assert tokens.input.sample_rate == rate
    assert any("resampled" in s for s in tokens.input.steps) == (rate != tok.card.sample_rate)
    assert tokens.input.durations[0] == pytest.approx(speech_16k.numel() / 16000, abs=1e-3)
    audio = tok.decode(tokens)
    assert abs(audio.durations[0] - 1.5) < 0.05


def test_mono_and_stereo(tok, speech_16k):
    mono = tok.encode(speech_16k, 16000)
    stereo = torch.stack([speech_16k, speech_16k])
    from_stereo = tok.encode(stereo, 16000)
    assert from_stereo.input.channels == 2
    if tok.card.channels == 1:
        assert any("channels 2 -> 1" in s for s in from_stereo.input.steps)
        assert torch.equal(mono.codes, from_stereo.codes)  # identical channels down-mix to the same signal
    batch = tok.encode(torch.stack([stereo, stereo * 0.5]), 16000)
    assert batch.codes.shape[0] == 2


def test_n_codebooks_argument(tok, speech_16k):
    card = tok.card
    full = tok.encode(speech_16k, 16000, n_codebooks=card.max_codebooks)
    assert full.n_codebooks == card.max_codebooks
    one = tok.encode(speech_16k, 16000, n_codebooks=1)
    assert torch.equal(one.codes[:, 0], full.codes[:, 0]), "codebook 0 must not depend on how many follow"
    assert tok.card.n_codebooks == card.n_codebooks, "n_codebooks must not mutate the tokenizer"
    with pytest.raises(CodesError):
        tok.encode(speech_16k, 16000, n_codebooks=card.max_codebooks + 1)
    with pytest.raises(CodesError):
        tok.encode(speech_16k, 16000, n_codebooks=0)


def test_decode_refuses_codes_out_of_range(tok, speech_16k):
    tokens = tok.encode(speech_16k, 16000)
    bad = tokens.codes.clone()
    bad[0, 0, 1] = tok.card.codebook_sizes[0]
    with pytest.raises(CodesError, match="out of range"):
        tok.decode(type(tokens)(bad, tokens.lengths, tokens.frame_rate, tokens.tokenizer, tokens.extras))
    negative = tokens.codes.clone()
    negative[0, 0, 0] = -1
    with pytest.raises(CodesError):
        tok.decode(type(tokens)(negative, tokens.lengths, tokens.frame_rate, tokens.tokenizer, tokens.extras))


def test_decode_refuses_other_tokenizers(tok, speech_16k):
    tokens = tok.encode(speech_16k, 16000)
    other = "mulaw-8bit" if tok.card.name != "mulaw-8bit" else "mel-rvq"
    wrong_name = type(tokens)(tokens.codes, tokens.lengths, tokens.frame_rate, TokenizerRef(other, "0" * 64))
    with pytest.raises(TokenizerMismatchError, match=other):
        tok.decode(wrong_name)
    wrong_hash = type(tokens)(
        tokens.codes, tokens.lengths, tokens.frame_rate, TokenizerRef(tok.card.name, "f" * 64)
    )
    with pytest.raises(TokenizerMismatchError, match="weights"):
        tok.decode(wrong_hash)


@pytest.mark.parametrize("n_samples", SHORT_LENGTHS)
def test_decodes_what_it_encodes_down_to_one_sample(tok, speech_16k, n_samples):
    """1 sample, 10, 25 and 50 ms at the tokenizer's own rate encode and decode (on 02c346e mel-rvq and
    mfcc-km failed below 5 frames with a padding error). Reference: the input length
    (``tests/conformance.check_decodes_short_input``)."""
    signal = at_rate(speech_16k, tok.card.sample_rate)[..., 4000:]
    check_decodes_short_input(tok, signal, n_samples)
