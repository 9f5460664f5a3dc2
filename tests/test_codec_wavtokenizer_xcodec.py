"""``wavtokenizer-40hz`` / ``wavtokenizer-75hz`` against Hugging Face transformers: same files, same speech ->
same codes, same audio.

Every reference comes from transformers, never from slmtok: a narrow random-weight ``WavTokenizerModel``
(4 base filters, 16-d latents, a one-block 32-d Vocos decoder, the published hops: 600 samples per 40 Hz
code, 320 per 75 Hz code, one codebook of 4096) is built by transformers, its codebook given distinct
random codewords (``standins.write_wavtokenizer``; transformers initialises it to zeros), and saved with
``save_pretrained`` (``config.json`` + ``model.safetensors``). slmtok loads that folder through a
``file://`` hub card (fetched into a private ``SLMTOK_HOME`` cache) and with ``checkpoint=``; the
reference is ``WavTokenizerModel.from_pretrained(folder)`` with its own ``encode(x)`` and ``decode(codes)``,
run on the exact signal slmtok feeds its model (real speech, Asterisk prompts at 16 kHz, converted from 8,
16 or 22.05 kHz to 24 kHz by ``slmtok.audio.prepare``), each file alone, torch on one thread (a module
fixture sets it and restores it). The condition tested: 0 differing codes, audio equal to transformers'
``decode`` to 1e-6, cut to the input length.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

import slmtok
from slmtok import hub
from slmtok.audio import resample
from slmtok.codecs import standins
from slmtok.codecs.loading import CheckpointError
from slmtok.errors import CodesError, SlmtokError

from . import test_codec_parity as parity
from .test_codec_parity import file_card, model_input

one_thread = parity.one_thread  # fixtures shared with the other codecs' parity tests: one thread, and
utterances = parity.utterances  # four real utterances at 16 kHz (2.2, 1.7, 1.3, 0.9 s)
home = parity.home  # a private SLMTOK_HOME for the module

HOPS = {"40hz": 600, "75hz": 320}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("wavtokenizer")
    return {v: standins.write_wavtokenizer(root / v, v) for v in HOPS}


@pytest.fixture(scope="module")
def upstream(folders):
    from transformers import WavTokenizerModel

    return {v: WavTokenizerModel.from_pretrained(str(f)).eval() for v, f in folders.items()}


@pytest.fixture(scope="module")
def toks(folders, home, tmp_path_factory):
    """``wavtokenizer-40hz`` through a ``file://`` card (sha256 of both files checked); ``-75hz`` (no
    transformers-format release: ``checkpoint=`` only) from its folder."""
    f = folders["40hz"]
    files = {"config": f / "config.json", "weights": f / "model.safetensors"}
    card = file_card(tmp_path_factory.mktemp("card"), "wavtokenizer-40hz", files)
    return {
        "40hz": slmtok.load("wavtokenizer-40hz", card=card),
        "75hz": slmtok.load("wavtokenizer-75hz", checkpoint=str(folders["75hz"])),
    }


def upstream_encode(model, x: torch.Tensor) -> torch.Tensor:
    """transformers' codes ``[B, 1, T]`` for ``x [B, 1, n]``."""
    with torch.inference_mode():
        return model.encode(x).audio_codes


def upstream_decode(model, codes: torch.Tensor) -> torch.Tensor:
    """transformers' audio ``[B, 1, T * hop]`` for ``codes [B, 1, T]``."""
    with torch.inference_mode():
        return model.decode(codes).audio_values


def test_card_and_rates(toks, upstream, home):
    card = hub.get_card("wavtokenizer-40hz")  # the published one
    assert {f.hf_repo for f in card.files} == {"swiss-ai/wavtokenizer-large-unify-40token"}
    assert {f.filename for f in card.files} == {"config.json", "model.safetensors"}
    assert card.license == "MIT" and "2408.16532" in card.paper
    assert card.sample_rate == 24000 and card.frame_rate == 40 and card.codebooks == 1
    assert not hub.has_card("wavtokenizer-75hz")
    for variant, hop in HOPS.items():
        tok, cfg = toks[variant], upstream[variant].config
        # the loaded card's rates come from the checkpoint's config (transformers' own properties)
        assert tok.card.sample_rate == cfg.sampling_rate == 24000
        assert cfg.hop_length == hop and tok.card.frame_rate == 24000 / hop == cfg.frame_rate
        assert tok.card.codebook_sizes == (cfg.codebook_size,) and tok.card.max_codebooks == 1
        assert tok.card.bitrate == pytest.approx(24000 / hop * math.log2(cfg.codebook_size))
    assert (home / "hub" / "wavtokenizer-40hz-local" / "model.safetensors").is_file()


@pytest.mark.parametrize("variant", list(HOPS))
@pytest.mark.parametrize("rate", [8000, 16000, 22050])
def test_codes_and_audio_match_transformers(toks, upstream, utterances, variant, rate):
    tok, model, hop = toks[variant], upstream[variant], HOPS[variant]
    for utterance in utterances:
        wav = resample(utterance, 16000, rate)
        x = model_input(tok, wav, rate)  # [1, 1, n] at 24 kHz
        n = x.shape[-1]
        reference = upstream_encode(model, x)
        tokens = tok.encode(wav, rate)
        assert int(tokens.lengths[0]) == reference.shape[-1] == math.ceil(n / hop)
        assert torch.equal(tokens.codes, reference)
        assert len(reference.unique()) > 3  # codes vary (the stand-in's codebook is not all zeros)
        assert int(tokens.extras["samples"].sum()) == n
        audio = tok.decode(tokens)
        expected = upstream_decode(model, reference)  # whole frames
        assert expected.shape[-1] == reference.shape[-1] * hop
        assert int(audio.lengths[0]) == n  # cut to the input length
        torch.testing.assert_close(audio.wav, expected[..., :n], rtol=0, atol=1e-6)
        bare = tok.decode(type(tokens)(tokens.codes, tokens.lengths, tokens.frame_rate, tokens.tokenizer))
        torch.testing.assert_close(bare.wav, expected, rtol=0, atol=1e-6)  # no extras: T * hop


@pytest.mark.parametrize("variant", list(HOPS))
def test_padded_batch_gives_each_item_its_solo_codes_and_audio(toks, upstream, utterances, variant):
    """Four utterances of 2.2-0.9 s at 24 kHz, batched: each item's codes are transformers' codes for it
    alone; transformers' own padded batch changes some (reflect padding, two-sided convolutions)."""
    tok, model = toks[variant], upstream[variant]
    items = [model_input(tok, u, 16000)[0] for u in utterances]  # [1, n_i]
    lengths = torch.tensor([x.shape[-1] for x in items])
    batch = torch.zeros(len(items), 1, int(lengths.max()))
    for i, x in enumerate(items):
        batch[i, :, : x.shape[-1]] = x
    tokens = tok.encode(batch, 24000, lengths=lengths)
    audio = tok.decode(tokens)
    padded = upstream_encode(model, batch)
    changed = 0
    for i, x in enumerate(items):
        solo = upstream_encode(model, x[None])[0]
        t = solo.shape[-1]
        assert int(tokens.lengths[i]) == t
        assert torch.equal(tokens.codes[i, :, :t], solo), f"item {i}"
        assert (tokens.codes[i, :, t:] < 0).all()
        changed += int((padded[i, :, :t] != solo).any())
        n = x.shape[-1]
        assert int(audio.lengths[i]) == n
        expected = upstream_decode(model, solo[None])[0, :, :n]
        torch.testing.assert_close(audio.wav[i, :, :n], expected, rtol=0, atol=1e-6)
        assert (audio.wav[i, :, n:] == 0).all()
    assert changed, "transformers' padded batch no longer changes codes: the per-item route may go"


def test_one_codebook_only(toks, utterances):
    tok = toks["40hz"]
    assert tok.encode(utterances[3], 16000, n_codebooks=1).codes.shape[1] == 1
    for bad in (0, 2):
        with pytest.raises(CodesError, match="out of range"):
            tok.encode(utterances[3], 16000, n_codebooks=bad)


def test_checkpoint_folder_equals_card_and_bad_folders_are_refused(toks, folders, tmp_path, utterances):
    direct = slmtok.load("wavtokenizer-40hz", checkpoint=str(folders["40hz"]))
    assert direct.card.hash == toks["40hz"].card.hash and len(direct.card.hash) == 64
    assert direct.card.license == "unknown (local checkpoint)"
    assert torch.equal(
        direct.encode(utterances[3], 16000).codes, toks["40hz"].encode(utterances[3], 16000).codes
    )

    def refused(name, folder, match):
        with pytest.raises(CheckpointError, match=match) as error:
            slmtok.load(name, checkpoint=str(folder))
        assert isinstance(error.value, SlmtokError) and "\n" not in str(error.value)

    # a save_pretrained folder of another model type (transformers' own EnCodec)
    from transformers import EncodecConfig, EncodecModel

    EncodecModel(EncodecConfig(num_filters=4, hidden_size=16, codebook_dim=16)).save_pretrained(
        tmp_path / "encodec"
    )
    refused("wavtokenizer-40hz", tmp_path / "encodec", "'encodec' checkpoint, not a WavTokenizer one")
    # the other variant's hop
    refused("wavtokenizer-40hz", folders["75hz"], "hop 320 samples, not the 600 of wavtokenizer-40hz")
    refused("wavtokenizer-75hz", folders["40hz"], "hop 600 samples, not the 320 of wavtokenizer-75hz")
    # a config whose weights do not fill the model (a wider codebook in the config than in the weights)
    other = tmp_path / "other"
    shutil.copytree(folders["40hz"], other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "hidden_size": 32, "codebook_dim": 32}))
    refused("wavtokenizer-40hz", other, "does not match its config|cannot load")
    (other / "model.safetensors").unlink()
    refused("wavtokenizer-40hz", other, "no such weights file")
    refused("wavtokenizer-40hz", tmp_path / "missing", "save_pretrained folder")
    # no transformers-format 75 Hz release: without checkpoint= one line says so
    with pytest.raises(CheckpointError, match="checkpoint=") as error:
        slmtok.load("wavtokenizer-75hz")
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------ X-Codec
# The reference is transformers' ``XcodecModel`` (a narrow random-weight one: a 4-filter DAC, a one-layer
# 16-d HuBERT, the published strides, 320 samples per 50 Hz frame, 8 codebooks of 1024, written by
# ``standins.write_xcodec`` with ``save_pretrained``) and its own ``encode(x, bandwidth=...)`` / ``decode``.
XC_HOP = 320
BANDWIDTHS = {1: 0.5, 2: 1.0, 3: 1.5, 4: 2.0, 8: 4.0}  # codebooks -> the bandwidth transformers takes


@pytest.fixture(scope="module")
def xc_folder(tmp_path_factory):
    return standins.write_xcodec(tmp_path_factory.mktemp("xcodec") / "tiny")


@pytest.fixture(scope="module")
def xc_upstream(xc_folder):
    from transformers import XcodecModel

    return XcodecModel.from_pretrained(str(xc_folder)).eval()


@pytest.fixture(scope="module")
def xc(xc_folder, home, tmp_path_factory):
    """slmtok's ``xcodec`` loaded through a ``file://`` card (sha256 of both files checked)."""
    files = {"config": xc_folder / "config.json", "weights": xc_folder / "model.safetensors"}
    return slmtok.load("xcodec", card=file_card(tmp_path_factory.mktemp("xcard"), "xcodec", files))


def xc_encode(model, x: torch.Tensor, k: int = 8) -> torch.Tensor:
    """transformers' codes ``[B, k, T]`` for ``x [B, 1, n]`` at the bandwidth of ``k`` codebooks."""
    with torch.inference_mode():
        return model.encode(x, bandwidth=BANDWIDTHS[k]).audio_codes


def xc_decode(model, codes: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.decode(codes).audio_values


def test_xcodec_card_and_rates(xc, xc_upstream, home):
    card = hub.get_card("xcodec")  # the published one
    assert {f.hf_repo for f in card.files} == {"hf-audio/xcodec-wavlm-more-data"}
    assert card.license == "CC-BY-4.0" and "2408.17175" in card.paper and card.family == "hybrid"
    assert card.sample_rate == 16000 and card.frame_rate == 50 and card.codebooks == 8
    cfg = xc_upstream.config
    assert xc.card.kind == "hybrid" and xc.card.semantic_codebooks == ()
    assert xc.card.sample_rate == cfg.sample_rate == 16000
    assert xc.card.frame_rate == cfg.frame_rate == 16000 / cfg.hop_length == 50
    assert xc.card.max_codebooks == cfg.num_quantizers == 8 and xc.card.n_codebooks == 8
    assert xc.card.bitrate == pytest.approx(1000 * cfg.target_bandwidths[-1])  # 4 kbps, as transformers says
    assert (home / "hub" / "xcodec-local" / "model.safetensors").is_file()


@pytest.mark.parametrize("rate", [8000, 16000, 22050])
def test_xcodec_codes_and_audio_match_transformers(xc, xc_upstream, utterances, rate):
    """The four utterances (whole frames at 16 kHz) and two cut mid-frame (their last frame's padding
    matters: transformers' frame count rounds, so T * 320 is more or less than n)."""
    for utterance in (*utterances, utterances[0][:-37], utterances[1][:-170]):
        wav = resample(utterance, 16000, rate)
        x = model_input(xc, wav, rate)  # [1, 1, n] at 16 kHz
        n = x.shape[-1]
        reference = xc_encode(xc_upstream, x)
        tokens = xc.encode(wav, rate)
        assert int(tokens.lengths[0]) == reference.shape[-1]
        assert torch.equal(tokens.codes, reference)
        assert len(reference[0, 0].unique()) > 3  # codes vary
        audio = xc.decode(tokens)
        expected = xc_decode(xc_upstream, reference)
        t = reference.shape[-1]
        assert expected.shape[-1] == t * XC_HOP
        assert int(audio.lengths[0]) == min(n, t * XC_HOP)  # cut to the input length
        torch.testing.assert_close(audio.wav, expected[..., : min(n, t * XC_HOP)], rtol=0, atol=1e-6)


@pytest.mark.parametrize("k", sorted(BANDWIDTHS))
def test_xcodec_n_codebooks_are_transformers_bandwidths(xc, xc_upstream, utterances, k):
    x = model_input(xc, utterances[1], 16000)
    tokens = xc.encode(utterances[1], 16000, n_codebooks=k)
    reference = xc_encode(xc_upstream, x, k)
    assert reference.shape[1] == k and torch.equal(tokens.codes, reference)
    n = x.shape[-1]
    torch.testing.assert_close(
        xc.decode(tokens).wav, xc_decode(xc_upstream, reference)[..., :n], rtol=0, atol=1e-6
    )
    assert xc.card.n_codebooks == 8, "n_codebooks must not mutate the tokenizer"


def test_xcodec_padded_batch_gives_each_item_its_solo_codes(xc, xc_upstream, utterances):
    items = [model_input(xc, u, 16000)[0] for u in utterances]
    lengths = torch.tensor([x.shape[-1] for x in items])
    batch = torch.zeros(len(items), 1, int(lengths.max()))
    for i, x in enumerate(items):
        batch[i, :, : x.shape[-1]] = x
    tokens = xc.encode(batch, 16000, lengths=lengths)
    audio = xc.decode(tokens)
    padded = xc_encode(xc_upstream, batch)
    changed = 0
    for i, x in enumerate(items):
        solo = xc_encode(xc_upstream, x[None])[0]
        t = solo.shape[-1]
        assert int(tokens.lengths[i]) == t
        assert torch.equal(tokens.codes[i, :, :t], solo), f"item {i}"
        changed += int((padded[i, :, :t] != solo).any())
        n = min(x.shape[-1], t * XC_HOP)
        assert int(audio.lengths[i]) == n
        torch.testing.assert_close(
            audio.wav[i, :, :n], xc_decode(xc_upstream, solo[None])[0, :, :n], rtol=0, atol=1e-6
        )
    assert changed, "transformers' padded batch no longer changes codes: the per-item route may go"


def test_xcodec_checkpoint_folder_and_bad_folders(xc, xc_folder, folders, tmp_path, utterances):
    direct = slmtok.load("xcodec", checkpoint=str(xc_folder), n_codebooks=2)
    assert direct.card.hash == xc.card.hash and direct.card.license == "unknown (local checkpoint)"
    assert torch.equal(
        direct.encode(utterances[3], 16000).codes, xc.encode(utterances[3], 16000, n_codebooks=2).codes
    )
    with pytest.raises(CheckpointError, match="'wavtokenizer' checkpoint, not a X-Codec one") as error:
        slmtok.load("xcodec", checkpoint=str(folders["40hz"]))
    assert "\n" not in str(error.value)
    other = tmp_path / "other"
    shutil.copytree(xc_folder, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "codebook_size": 512}))
    with pytest.raises(CheckpointError, match="does not match its config|cannot load") as error:
        slmtok.load("xcodec", checkpoint=str(other))
    assert "\n" not in str(error.value)
    for bad in (0, 9):
        with pytest.raises(CodesError):
            slmtok.load("xcodec", checkpoint=str(xc_folder), n_codebooks=bad)


def test_xcodec_input_shorter_than_transformers_takes_is_zero_padded(xc, xc_upstream, utterances):
    """transformers cannot encode under 80 samples (its semantic convolutions run out of input); slmtok
    encodes such an item as transformers encodes it zero-padded to 80 samples, and decodes to its length."""
    x = model_input(xc, utterances[0], 16000)[..., 4000:4050]  # 50 samples
    with pytest.raises(RuntimeError):
        xc_encode(xc_upstream, x)
    assert xc.min_samples == 80 and xc_encode(xc_upstream, x[..., :0].new_zeros(1, 1, 80)).shape[-1] == 1
    tokens = xc.encode(x, 16000)
    reference = xc_encode(xc_upstream, torch.nn.functional.pad(x, (0, 30)))
    assert torch.equal(tokens.codes, reference)
    audio = xc.decode(tokens)
    assert int(audio.lengths[0]) == 50
    torch.testing.assert_close(audio.wav, xc_decode(xc_upstream, reference)[..., :50], rtol=0, atol=1e-6)


@pytest.mark.parametrize("which", ["40hz", "75hz", "xcodec"])
def test_stacked_calls_still_give_solo_codes(toks, xc, upstream, xc_upstream, utterances, which):
    """With ``stack_batches`` (the CUDA default, here on CPU) pieces of one canonical width share a call;
    each item still gets transformers' codes for it alone (items cut mid-frame to share a width)."""
    tok, model = (xc, xc_upstream) if which == "xcodec" else (toks[which], upstream[which])
    items = [model_input(tok, u, 16000)[0, :, : 14400 - 7 * i] for i, u in enumerate(utterances[:3])]
    lengths = torch.tensor([x.shape[-1] for x in items])
    batch = torch.zeros(len(items), 1, int(lengths.max()))
    for i, x in enumerate(items):
        batch[i, :, : x.shape[-1]] = x
    tok.stack_batches = True
    try:
        tokens = tok.encode(batch, tok.card.sample_rate, lengths=lengths)
    finally:
        del tok.stack_batches
    for i, x in enumerate(items):
        with torch.inference_mode():
            solo = model.encode(x[None]).audio_codes[0]
        assert torch.equal(tokens.codes[i, :, : solo.shape[-1]], solo), f"item {i}"
