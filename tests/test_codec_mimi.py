"""``mimi`` against Hugging Face transformers: same files, same speech -> same codes, same audio.

Every reference comes from transformers, never from slmtok: a narrow random-weight ``MimiModel`` (one
transformer layer, 32-d latents, the published strides: 1920 samples per 12.5 Hz frame, 32 codebooks of
2048, one semantic) is built by transformers, its codebooks given distinct random codewords
(``standins.init_mimi_codebooks``; transformers initialises them to zeros), and saved with
``save_pretrained`` (``config.json`` + ``model.safetensors``). slmtok loads that folder through a
``file://`` hub card (fetched into a private ``SLMTOK_HOME`` cache) and with ``checkpoint=``; the
reference is ``MimiModel.from_pretrained(folder)`` with its own ``encode(x, num_quantizers=k)`` and
``decode(codes)``, run on the exact signal slmtok feeds its model (real speech, Asterisk prompts at
16 kHz, converted from 8, 16 or 22.05 kHz to 24 kHz by ``slmtok.audio.prepare``), each file alone.

The condition tested, exactly: with torch on one thread (a module fixture sets it and restores it), the
codes equal transformers' at every frame (0 differing frames), including the last, partial frame of
items batched with longer ones, and the audio matches transformers' ``decode`` to 1e-6, cut to the
input length. With torch on two threads slmtok (whose pieces always run on one intra-op thread) still
gives transformers' one-thread codes.
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

HOP = 1920


@pytest.fixture(scope="module")
def mimi_folder(tmp_path_factory):
    return standins.write_mimi(tmp_path_factory.mktemp("mimi") / "tiny")


@pytest.fixture(scope="module")
def upstream(mimi_folder):
    from transformers import MimiModel

    return MimiModel.from_pretrained(str(mimi_folder)).eval()


@pytest.fixture(scope="module")
def tok(mimi_folder, home, tmp_path_factory):
    """slmtok's ``mimi`` loaded through a ``file://`` card (sha256 of both files checked)."""
    files = {"config": mimi_folder / "config.json", "weights": mimi_folder / "model.safetensors"}
    return slmtok.load("mimi", card=file_card(tmp_path_factory.mktemp("card"), "mimi", files))


def upstream_encode(model, x: torch.Tensor, k: int = 8) -> torch.Tensor:
    """transformers' codes ``[B, k, T]`` for ``x [B, 1, n]``."""
    with torch.inference_mode():
        return model.encode(x, num_quantizers=k).audio_codes


def upstream_decode(model, codes: torch.Tensor) -> torch.Tensor:
    """transformers' audio ``[B, 1, T * 1920]`` for ``codes [B, K, T]``."""
    with torch.inference_mode():
        return model.decode(codes).audio_values


def differing_frames(ours: torch.Tensor, theirs: torch.Tensor) -> list[int]:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return (ours != theirs).any(dim=0).nonzero().flatten().tolist()


def test_card_and_rates(tok, upstream, home):
    card = hub.get_card("mimi")  # the published one
    assert {f.hf_repo for f in card.files} == {"kyutai/mimi"}
    assert {f.filename for f in card.files} == {"config.json", "model.safetensors"}
    assert card.license == "CC-BY-4.0" and "2410.00037" in card.paper
    assert card.sample_rate == 24000 and card.frame_rate == 12.5 and card.codebooks == 32
    # the loaded card's rates come from the checkpoint's config (transformers' own properties)
    assert tok.card.sample_rate == upstream.config.sampling_rate == 24000
    assert tok.card.frame_rate == upstream.config.frame_rate == 12.5
    assert tok.card.n_codebooks == 8 and tok.card.max_codebooks == upstream.config.num_quantizers == 32
    assert tok.card.semantic_codebooks == (0,)
    assert tok.card.bitrate == pytest.approx(8 * 12.5 * math.log2(upstream.config.codebook_size))
    assert (home / "hub" / "mimi-local" / "model.safetensors").is_file()


@pytest.mark.parametrize("rate", [8000, 16000, 22050])
def test_codes_and_audio_match_transformers(tok, upstream, utterances, rate):
    for utterance in utterances:
        wav = resample(utterance, 16000, rate)
        x = model_input(tok, wav, rate)  # [1, 1, n] at 24 kHz
        n = x.shape[-1]
        reference = upstream_encode(upstream, x)
        tokens = tok.encode(wav, rate)
        assert int(tokens.lengths[0]) == reference.shape[-1] == math.ceil(n / HOP)
        assert differing_frames(tokens.codes[0], reference[0]) == []
        assert int(tokens.extras["samples"].sum()) == n
        audio = tok.decode(tokens)
        expected = upstream_decode(upstream, reference)  # whole frames
        assert expected.shape[-1] == reference.shape[-1] * HOP
        assert int(audio.lengths[0]) == n  # cut to the input length
        torch.testing.assert_close(audio.wav, expected[..., :n], rtol=0, atol=1e-6)
        bare = tok.decode(type(tokens)(tokens.codes, tokens.lengths, tokens.frame_rate, tokens.tokenizer))
        torch.testing.assert_close(bare.wav, expected, rtol=0, atol=1e-6)  # no extras: T * 1920


def test_padded_batch_gives_each_item_its_solo_codes(tok, upstream, utterances):
    """Lengths 52800, 40800, 31200, 21600 samples at 24 kHz: 27.5, 21.25, 16.25 and 11.25 frames."""
    items = [model_input(tok, u, 16000)[0] for u in utterances]  # [1, n_i]
    lengths = torch.tensor([x.shape[-1] for x in items])
    assert all(int(n) % HOP for n in lengths)
    batch = torch.zeros(len(items), 1, int(lengths.max()))
    for i, x in enumerate(items):
        batch[i, :, : x.shape[-1]] = x
    tokens = tok.encode(batch, 24000, lengths=lengths, n_codebooks=32)
    audio = tok.decode(tokens)
    with torch.inference_mode():  # what transformers gives for the padded batch (padding_mask ignored)
        mask = (torch.arange(batch.shape[-1])[None, None, :] < lengths[:, None, None]).long()
        padded = upstream.encode(batch, padding_mask=mask, num_quantizers=32).audio_codes
    changed = 0
    for i, x in enumerate(items):
        solo = upstream_encode(upstream, x[None], 32)[0]
        t = solo.shape[-1]
        assert int(tokens.lengths[i]) == t
        assert differing_frames(tokens.codes[i, :, :t], solo) == [], f"item {i}"
        assert (tokens.codes[i, :, t:] < 0).all()
        changed += int((padded[i, :, t - 1] != solo[:, t - 1]).any())
        n = x.shape[-1]
        assert int(audio.lengths[i]) == n
        expected = upstream_decode(upstream, solo[None])[0, :, :n]
        torch.testing.assert_close(audio.wav[i, :, :n], expected, rtol=0, atol=1e-6)
        assert (audio.wav[i, :, n:] == 0).all()
    assert changed, "transformers' padded batch no longer changes a last frame: the per-item route may go"


@pytest.mark.parametrize("k", [1, 8, 32])
def test_n_codebooks_per_call(tok, upstream, utterances, k):
    x = model_input(tok, utterances[1], 16000)
    tokens = tok.encode(utterances[1], 16000, n_codebooks=k)
    reference = upstream_encode(upstream, x, k)
    assert tokens.codes.shape[1] == k
    assert differing_frames(tokens.codes[0], reference[0]) == []
    torch.testing.assert_close(
        tok.decode(tokens).wav, upstream_decode(upstream, reference)[..., : x.shape[-1]], rtol=0, atol=1e-6
    )
    assert tok.card.n_codebooks == 8, "n_codebooks must not mutate the tokenizer"
    for bad in (0, 33):
        with pytest.raises(CodesError, match="out of range"):
            tok.encode(utterances[1], 16000, n_codebooks=bad)


def test_on_two_threads_codes_still_equal_transformers_on_one(tok, upstream, utterances):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = model_input(tok, utterances[0], 16000)
        tokens = tok.encode(utterances[0], 16000)
    finally:
        torch.set_num_threads(before)
    assert differing_frames(tokens.codes[0], upstream_encode(upstream, x)[0]) == []


def test_checkpoint_folder_equals_card_and_bad_folders_are_refused(tok, mimi_folder, tmp_path, utterances):
    direct = slmtok.load("mimi", checkpoint=str(mimi_folder), n_codebooks=4)
    assert direct.card.hash == tok.card.hash and len(direct.card.hash) == 64
    assert direct.card.license == "unknown (local checkpoint)"
    assert torch.equal(
        direct.encode(utterances[3], 16000).codes, tok.encode(utterances[3], 16000, n_codebooks=4).codes
    )

    def refused(folder, match):
        with pytest.raises(CheckpointError, match=match) as error:
            slmtok.load("mimi", checkpoint=str(folder))
        assert isinstance(error.value, SlmtokError) and "\n" not in str(error.value)

    # a save_pretrained folder of another model type (transformers' own EnCodec)
    from transformers import EncodecConfig, EncodecModel

    EncodecModel(EncodecConfig(num_filters=4, hidden_size=16, codebook_dim=16)).save_pretrained(
        tmp_path / "encodec"
    )
    refused(tmp_path / "encodec", "'encodec' checkpoint, not a Mimi one")
    # a Mimi config whose weights do not fill the model (16 codebooks in the config, 32 in the weights)
    other = tmp_path / "other"
    shutil.copytree(mimi_folder, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "num_quantizers": 16}))
    refused(other, "does not match its config")
    (other / "model.safetensors").unlink()
    refused(other, "no such weights file")
    refused(tmp_path / "missing", "save_pretrained folder")
