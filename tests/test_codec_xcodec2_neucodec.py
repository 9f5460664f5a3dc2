"""``xcodec2`` against Hugging Face transformers: same files, same speech -> same codes, same audio.

Every reference comes from transformers, never from slmtok: a narrow random-weight ``Xcodec2Model`` (a
one-layer 32-d Wav2Vec2-BERT, 4 base encoder filters, a one-layer 64-d decoder; the published hop of 320
samples at 16 kHz and FSQ levels 4^8 = 65536) is built by transformers, its quantizer input projection
rescaled so codes vary (``standins.write_xcodec2``; transformers' initial weights give one code for every
frame), and saved with ``save_pretrained`` (``config.json`` + ``model.safetensors``). slmtok loads that
folder through a ``file://`` hub card (fetched into a private ``SLMTOK_HOME`` cache) and with
``checkpoint=``; the reference is ``Xcodec2FeatureExtractor`` + ``Xcodec2Model.from_pretrained(folder)``
with its own ``encode`` / ``decode``, run on the exact signal slmtok feeds its model (real speech, Asterisk
prompts at 16 kHz, converted from 8, 16 or 22.05 kHz by ``slmtok.audio.prepare``), each file alone.

The condition tested, exactly: with torch on one thread (a module fixture sets it and restores it), the
codes equal transformers' at every frame (0 differing frames), also for items batched with longer ones
(where transformers' own padded batch changes codes), and the audio matches transformers' ``decode`` to
1e-6, cut to the input length.

``neucodec`` is tested the same way against ``NeuCodecFeatureExtractor`` + ``NeuCodecModel`` (the same
narrow sizes, NeuCodec's rates: 16 kHz in with a hop of 320, 24 kHz out with 480 samples per frame): codes
equal at every frame, audio at 24 kHz equal to transformers' ``decode`` to 1e-6. Below 320 samples, where
transformers' feature extractor fails, the reference is transformers on the input zero-padded to 320.
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

HOP = 320


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return standins.write_xcodec2(tmp_path_factory.mktemp("xcodec2") / "tiny")


@pytest.fixture(scope="module")
def upstream(folder):
    from transformers import Xcodec2Model

    return Xcodec2Model.from_pretrained(str(folder)).eval()


@pytest.fixture(scope="module")
def features(upstream):
    """transformers' feature extractor with the published settings (16 kHz, hop 320)."""
    from transformers import Xcodec2FeatureExtractor

    return Xcodec2FeatureExtractor(sampling_rate=16000, hop_length=320)


@pytest.fixture(scope="module")
def tok(folder, home, tmp_path_factory):
    """slmtok's ``xcodec2`` loaded through a ``file://`` card (sha256 of both files checked)."""
    files = {"config": folder / "config.json", "weights": folder / "model.safetensors"}
    return slmtok.load("xcodec2", card=file_card(tmp_path_factory.mktemp("card"), "xcodec2", files))


def upstream_encode(model, features, x: torch.Tensor) -> torch.Tensor:
    """transformers' codes ``[1, 1, T]`` for one signal ``x [n]`` at 16 kHz (feature extractor + encode)."""
    inputs = features(x.numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        return model.encode(inputs["input_values"], inputs["input_features"]).audio_codes


def upstream_decode(model, codes: torch.Tensor) -> torch.Tensor:
    """transformers' audio ``[B, 1, T * 320]`` for ``codes [B, 1, T]``."""
    with torch.inference_mode():
        return model.decode(codes).audio_values


def differing_frames(ours: torch.Tensor, theirs: torch.Tensor) -> list[int]:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return (ours != theirs).any(dim=0).nonzero().flatten().tolist()


def test_card_and_rates(tok, upstream, home):
    card = hub.get_card("xcodec2")  # the published one
    assert {f.hf_repo for f in card.files} == {"HKUSTAudio/xcodec2-hf"}
    assert {f.filename for f in card.files} == {"config.json", "model.safetensors"}
    assert {f.revision for f in card.files} == {""}  # no public source gives a commit: unpinned
    assert card.license == "CC-BY-NC-4.0" and "non-commercial" in card.title and "2502.04128" in card.paper
    assert card.sample_rate == 16000 and card.frame_rate == 50 and card.codebooks == 1
    assert card.codebook_size == 4**8
    # the loaded card's rates come from the checkpoint's config (transformers' own properties)
    assert tok.card.sample_rate == upstream.config.sampling_rate == 16000
    assert tok.card.frame_rate == upstream.config.sampling_rate / upstream.config.hop_length == 50
    assert tok.card.n_codebooks == tok.card.max_codebooks == 1
    assert tok.card.codebook_sizes == (math.prod(upstream.config.quantization_levels),) == (65536,)
    assert tok.card.bitrate == pytest.approx(50 * 16)
    assert (home / "hub" / "xcodec2-local" / "model.safetensors").is_file()


@pytest.mark.parametrize("rate", [8000, 16000, 22050])
def test_codes_and_audio_match_transformers(tok, upstream, features, utterances, rate):
    for utterance in utterances[1:3]:
        wav = resample(utterance, 16000, rate)
        x = model_input(tok, wav, rate)[0, 0]  # [n] at 16 kHz
        n = x.shape[-1]
        reference = upstream_encode(upstream, features, x)
        tokens = tok.encode(wav, rate)
        assert int(tokens.lengths[0]) == reference.shape[-1] == n // HOP + 1
        assert differing_frames(tokens.codes[0], reference[0]) == []
        assert len(set(reference.flatten().tolist())) > 1, "the stand-in gives one code for every frame"
        assert int(tokens.extras["samples"].sum()) == n
        audio = tok.decode(tokens)
        expected = upstream_decode(upstream, reference)  # whole frames
        assert expected.shape[-1] == reference.shape[-1] * HOP
        assert int(audio.lengths[0]) == n  # cut to the input length
        torch.testing.assert_close(audio.wav, expected[..., :n], rtol=0, atol=1e-6)
        bare = tok.decode(type(tokens)(tokens.codes, tokens.lengths, tokens.frame_rate, tokens.tokenizer))
        torch.testing.assert_close(bare.wav, expected, rtol=0, atol=1e-6)  # no extras: T * 320


def test_padded_batch_gives_each_item_its_solo_codes(tok, upstream, features, utterances):
    """Lengths 35200, 27200, 20800, 14400 samples: each item gets the codes transformers gives it alone,
    although transformers' own padded batch (feature extractor on the list) changes them."""
    items = [model_input(tok, u, 16000)[0, 0] for u in utterances]  # [n_i]
    lengths = torch.tensor([x.shape[-1] for x in items])
    batch = torch.zeros(len(items), 1, int(lengths.max()))
    for i, x in enumerate(items):
        batch[i, 0, : x.shape[-1]] = x
    tokens = tok.encode(batch, 16000, lengths=lengths)
    audio = tok.decode(tokens)
    inputs = features([x.numpy() for x in items], sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():  # what transformers gives for the padded batch
        padded = upstream.encode(
            inputs["input_values"],
            inputs["input_features"],
            padding_mask=inputs["padding_mask"],
            input_features_mask=inputs["input_features_mask"],
        ).audio_codes
    changed = 0
    for i, x in enumerate(items):
        solo = upstream_encode(upstream, features, x)[0]
        t = solo.shape[-1]
        assert int(tokens.lengths[i]) == t
        assert differing_frames(tokens.codes[i, :, :t], solo) == [], f"item {i}"
        assert (tokens.codes[i, :, t:] < 0).all()
        changed += len(differing_frames(padded[i, :, :t], solo))
        n = x.shape[-1]
        assert int(audio.lengths[i]) == n
        expected = upstream_decode(upstream, solo[None])[0, :, :n]
        torch.testing.assert_close(audio.wav[i, :, :n], expected, rtol=0, atol=1e-6)
        assert (audio.wav[i, :, n:] == 0).all()
    assert changed, "transformers' padded batch no longer changes codes: the per-item route may go"


@pytest.mark.parametrize("n", [1, 160, 319, 320, 321])
def test_short_inputs_match_transformers(tok, upstream, features, utterances, n):
    """Frame counts at the hop's edges (``n // 320 + 1``, transformers' feature extractor's padding)."""
    x = utterances[0][:n]
    reference = upstream_encode(upstream, features, x)
    tokens = tok.encode(x, 16000)
    assert differing_frames(tokens.codes[0], reference[0]) == []
    audio = tok.decode(tokens)
    assert int(audio.lengths[0]) == n
    torch.testing.assert_close(audio.wav, upstream_decode(upstream, reference)[..., :n], rtol=0, atol=1e-6)


def test_one_codebook_only(tok, folder, utterances):
    assert tok.encode(utterances[3], 16000, n_codebooks=1).codes.shape[1] == 1
    for bad in (0, 2):
        with pytest.raises(CodesError, match="out of range"):
            tok.encode(utterances[3], 16000, n_codebooks=bad)
    with pytest.raises(CodesError, match="must be 1"):
        slmtok.load("xcodec2", checkpoint=str(folder), n_codebooks=2)


def test_checkpoint_folder_equals_card_and_bad_folders_are_refused(tok, folder, tmp_path, utterances):
    direct = slmtok.load("xcodec2", checkpoint=str(folder))
    assert direct.card.hash == tok.card.hash and len(direct.card.hash) == 64
    assert direct.card.license == "unknown (local checkpoint)"
    assert torch.equal(direct.encode(utterances[3], 16000).codes, tok.encode(utterances[3], 16000).codes)

    def refused(path, match):
        with pytest.raises(CheckpointError, match=match) as error:
            slmtok.load("xcodec2", checkpoint=str(path))
        assert isinstance(error.value, SlmtokError) and "\n" not in str(error.value)

    # a save_pretrained folder of another model type (transformers' own Mimi)
    refused(standins.write_mimi(tmp_path / "mimi"), "'mimi' checkpoint, not an X-Codec2 one")
    # an X-Codec2 config whose weights do not fill the model (a wider decoder than the weights)
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
    refused(other, "does not match its config")
    (other / "config.json").write_text("[1, 2]")
    refused(other, "not a transformers config")
    (other / "model.safetensors").unlink()
    refused(other, "no such weights file")
    refused(tmp_path / "missing", "save_pretrained folder")


def test_cli_refuses_a_wrong_folder_in_one_line(tmp_path, utterances):
    """``slmtok encode -t xcodec2 --checkpoint <a Mimi folder>``: ``slmtok: error: ...``, exit 1."""
    import subprocess

    wav = tmp_path / "a.wav"
    slmtok.write_audio(wav, utterances[3][None], 16000)
    mimi = standins.write_mimi(tmp_path / "mimi")
    result = subprocess.run(
        [
            "slmtok",
            "encode",
            str(wav),
            "-t",
            "xcodec2",
            "--checkpoint",
            str(mimi),
            "-o",
            str(tmp_path / "a.slmtok"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slmtok: error:") and "not an X-Codec2 one" in lines[0]


# ------------------------------------------------------------------------------------------ NeuCodec
NEU_HOP, NEU_OUT_HOP = 320, 480  # input samples per frame at 16 kHz, decoded samples per frame at 24 kHz


@pytest.fixture(scope="module")
def neu_folder(tmp_path_factory):
    return standins.write_neucodec(tmp_path_factory.mktemp("neucodec") / "tiny")


@pytest.fixture(scope="module")
def neu_upstream(neu_folder):
    from transformers import NeuCodecModel

    return NeuCodecModel.from_pretrained(str(neu_folder)).eval()


@pytest.fixture(scope="module")
def neu_features():
    """transformers' NeuCodec feature extractor with the published settings (16 kHz, hop 320)."""
    from transformers import NeuCodecFeatureExtractor

    return NeuCodecFeatureExtractor(sampling_rate=16000, hop_length=320)


@pytest.fixture(scope="module")
def neu(neu_folder, home, tmp_path_factory):
    """slmtok's ``neucodec`` loaded through a ``file://`` card (sha256 of both files checked)."""
    files = {"config": neu_folder / "config.json", "weights": neu_folder / "model.safetensors"}
    return slmtok.load("neucodec", card=file_card(tmp_path_factory.mktemp("card"), "neucodec", files))


def test_neucodec_card_and_two_rates(neu, neu_upstream, home):
    card = hub.get_card("neucodec")  # the published one
    assert {f.hf_repo for f in card.files} == {"neuphonic/neucodec"}
    assert {f.filename for f in card.files} == {"config.json", "model.safetensors"}
    assert {f.revision for f in card.files} == {""}  # no public source gives a commit: unpinned
    assert card.license == "Apache-2.0" and "2509.09550" in card.paper
    assert card.sample_rate == 16000 and card.extra["output_sample_rate"] == 24000
    assert card.frame_rate == 50 and card.codebooks == 1 and card.codebook_size == 4**8
    # the loaded card's rates come from the checkpoint's config (transformers' own properties)
    config = neu_upstream.config
    assert neu.card.sample_rate == config.input_sampling_rate == 16000
    assert neu.card.output_sample_rate == config.output_sampling_rate == 24000
    assert neu.card.frame_rate == 16000 / config.encoder_hop_length == 50
    assert config.hop_length == NEU_OUT_HOP  # transformers' decoder hop, at 24 kHz
    assert neu.card.codebook_sizes == (math.prod(config.quantization_levels),) == (65536,)
    assert neu.card.bitrate == pytest.approx(50 * 16)
    assert neu.card.to_dict()["output_sample_rate"] == 24000
    assert (home / "hub" / "neucodec-local" / "model.safetensors").is_file()


@pytest.mark.parametrize("rate", [8000, 16000, 22050])
def test_neucodec_codes_and_24khz_audio_match_transformers(neu, neu_upstream, neu_features, utterances, rate):
    for utterance in utterances[1:3]:
        wav = resample(utterance, 16000, rate)
        x = model_input(neu, wav, rate)[0, 0]  # [n] at 16 kHz
        n = x.shape[-1]
        reference = upstream_encode(neu_upstream, neu_features, x)
        tokens = neu.encode(wav, rate)
        assert int(tokens.lengths[0]) == reference.shape[-1] == n // NEU_HOP
        assert differing_frames(tokens.codes[0], reference[0]) == []
        assert len(set(reference.flatten().tolist())) > 1, "the stand-in gives one code for every frame"
        audio = neu.decode(tokens)
        expected = upstream_decode(neu_upstream, reference)  # whole frames at 24 kHz
        assert expected.shape[-1] == reference.shape[-1] * NEU_OUT_HOP
        assert audio.sample_rate == 24000 and int(audio.lengths[0]) == expected.shape[-1]
        torch.testing.assert_close(audio.wav, expected, rtol=0, atol=1e-6)


def test_neucodec_padded_batch_gives_each_item_its_solo_codes(neu, neu_upstream, neu_features, utterances):
    items = [model_input(neu, u, 16000)[0, 0] for u in utterances]  # [n_i]
    lengths = torch.tensor([x.shape[-1] for x in items])
    batch = torch.zeros(len(items), 1, int(lengths.max()))
    for i, x in enumerate(items):
        batch[i, 0, : x.shape[-1]] = x
    tokens = neu.encode(batch, 16000, lengths=lengths)
    audio = neu.decode(tokens)
    inputs = neu_features([x.numpy() for x in items], sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():  # what transformers gives for the padded batch
        padded = neu_upstream.encode(
            inputs["input_values"],
            inputs["input_features"],
            padding_mask=inputs["padding_mask"],
            input_features_mask=inputs["input_features_mask"],
        ).audio_codes
    changed = 0
    for i, x in enumerate(items):
        solo = upstream_encode(neu_upstream, neu_features, x)[0]
        t = solo.shape[-1]
        assert int(tokens.lengths[i]) == t
        assert differing_frames(tokens.codes[i, :, :t], solo) == [], f"item {i}"
        assert (tokens.codes[i, :, t:] < 0).all()
        changed += len(differing_frames(padded[i, :, :t], solo))
        m = t * NEU_OUT_HOP
        assert int(audio.lengths[i]) == m
        expected = upstream_decode(neu_upstream, solo[None])[0]
        torch.testing.assert_close(audio.wav[i, :, :m], expected, rtol=0, atol=1e-6)
        assert (audio.wav[i, :, m:] == 0).all()
    assert changed, "transformers' padded batch no longer changes codes: the per-item route may go"


@pytest.mark.parametrize("n", [320, 321, 639, 640, 955])
def test_neucodec_frame_counts_match_transformers(neu, neu_upstream, neu_features, utterances, n):
    """``n // 320`` frames (the acoustic branch's extra frame is dropped by transformers' encode)."""
    x = utterances[0][:n]
    reference = upstream_encode(neu_upstream, neu_features, x)
    tokens = neu.encode(x, 16000)
    assert int(tokens.lengths[0]) == n // NEU_HOP
    assert differing_frames(tokens.codes[0], reference[0]) == []
    audio = neu.decode(tokens)
    torch.testing.assert_close(audio.wav, upstream_decode(neu_upstream, reference), rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [1, 160, 319])
def test_neucodec_input_under_one_hop_is_padded_to_one_frame(neu, neu_upstream, neu_features, utterances, n):
    """transformers' feature extractor refuses under 320 samples (its 400-sample fbank window does not
    fit); slmtok gives the codes transformers gives the input zero-padded to 320 samples (one frame), and
    decodes them to the input's duration at 24 kHz (``ceil(1.5 n)`` samples)."""
    x = utterances[0][:n]
    with pytest.raises(AssertionError, match="window size"):
        neu_features(x.numpy(), sampling_rate=16000, return_tensors="pt")
    padded = torch.nn.functional.pad(x, (0, NEU_HOP - n))
    reference = upstream_encode(neu_upstream, neu_features, padded)
    assert reference.shape[-1] == 1
    tokens = neu.encode(x, 16000)
    assert int(tokens.lengths[0]) == 1 and int(tokens.extras["samples"].sum()) == n
    assert differing_frames(tokens.codes[0], reference[0]) == []
    audio = neu.decode(tokens)
    m = math.ceil(n * 24000 / 16000)
    assert audio.sample_rate == 24000 and int(audio.lengths[0]) == m == audio.wav.shape[-1]
    torch.testing.assert_close(
        audio.wav, upstream_decode(neu_upstream, reference)[..., :m], rtol=0, atol=1e-6
    )


def test_neucodec_refuses_other_folders_and_codebook_counts(neu, neu_folder, folder, tmp_path):
    direct = slmtok.load("neucodec", checkpoint=str(neu_folder))
    assert direct.card.hash == neu.card.hash and direct.card.license == "unknown (local checkpoint)"
    with pytest.raises(CodesError, match="must be 1"):
        slmtok.load("neucodec", checkpoint=str(neu_folder), n_codebooks=2)
    for name, path, match in (
        ("neucodec", folder, "'xcodec2' checkpoint, not a NeuCodec one"),  # X-Codec2's own folder
        ("xcodec2", neu_folder, "'neucodec' checkpoint, not an X-Codec2 one"),
    ):
        with pytest.raises(CheckpointError, match=match) as error:
            slmtok.load(name, checkpoint=str(path))
        assert "\n" not in str(error.value)
    other = tmp_path / "other"  # a NeuCodec config whose weights do not fill the model
    shutil.copytree(neu_folder, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
    with pytest.raises(CheckpointError, match="does not match its config"):
        slmtok.load("neucodec", checkpoint=str(other))


def test_info_shows_both_rates_without_downloading(tmp_path):
    """``slmtok info neucodec --json`` from the hub card (nothing cached): 16 kHz in, 24 kHz out."""
    import os
    import subprocess

    env = {**os.environ, "SLMTOK_HOME": str(tmp_path / "home"), "SLMTOK_OFFLINE": "1"}
    result = subprocess.run(
        ["slmtok", "info", "neucodec", "--json"], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    card = json.loads(result.stdout)
    assert (card["sample_rate"], card["output_sample_rate"], card["frame_rate"]) == (16000, 24000, 50)
    assert card["license"] == "Apache-2.0" and card["weights_cached"] is False
