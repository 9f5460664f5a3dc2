"""``encodec-24khz`` decoded by Vocos (``vocoder="vocos"``) against the vocos package's own model.

Where the reference comes from: vocos's ``Vocos.from_hparams`` builds a tiny random-weight EnCodec-token
Vocos from a ``config.yaml`` in the published layout (vocos's own ``EncodecFeatures``, ``VocosBackbone``,
``ISTFTHead``). ``EncodecFeatures`` calls ``EncodecModel.encodec_model_24khz(pretrained=True)``, a download,
so that function is patched to return a small random EnCodec built by the ``encodec`` package (codebooks
given distinct values), whose state dict is also saved as the ``.th`` slmtok loads. The Vocos state dict,
without the EnCodec tensors (``Vocos.from_pretrained`` adds those itself), is saved as
``pytorch_model.bin``. slmtok must then give, for 1.5 / 3 / 6 / 12 / 24 kbps (2 / 4 / 8 / 16 / 32
codebooks; the config lists all five bandwidths), vocos's ``decode(codes_to_features(codes))`` on real
speech, and its codes must be the ones vocos's own ``EncodecFeatures`` computes, so the whole resynthesis
equals vocos's ``Vocos(audio, bandwidth_id=...)``.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

import slmtok
from slmtok import hub
from slmtok.audio import resample
from slmtok.errors import CodesError, SlmtokError, TokenizerMismatchError

# the conformance suite's own tests, run here on encodec-24khz + Vocos (this module's ``tok`` fixture)
from .test_conformance import (  # noqa: F401
    test_batch_equals_single,
    test_card_is_consistent,
    test_decode_batch_gives_each_item_its_own_audio,
    test_decode_refuses_codes_out_of_range,
    test_decode_refuses_other_tokenizers,
    test_decode_shapes_and_lengths,
    test_decodes_what_it_encodes_down_to_one_sample,
    test_token_file_round_trip,
    test_tokens_layout_and_lengths,
)

yaml = pytest.importorskip("yaml")
vocos = pytest.importorskip("vocos")
encodec = pytest.importorskip("encodec")

BANDWIDTHS = [1.5, 3.0, 6.0, 12.0, 24.0]
CODEBOOKS = [2, 4, 8, 16, 32]
CONFIG = {
    "feature_extractor": {
        "class_path": "vocos.feature_extractors.EncodecFeatures",
        "init_args": {"encodec_model": "encodec_24khz", "bandwidths": BANDWIDTHS, "train_codebooks": False},
    },
    "backbone": {
        "class_path": "vocos.models.VocosBackbone",
        "init_args": {
            "input_channels": 32,
            "dim": 32,
            "intermediate_dim": 48,
            "num_layers": 2,
            "adanorm_num_embeddings": len(BANDWIDTHS),
        },
    },
    "head": {
        "class_path": "vocos.heads.ISTFTHead",
        "init_args": {"dim": 32, "n_fft": 1280, "hop_length": 320, "padding": "same"},
    },
}


def upstream_encodec(seed: int):
    """A small EnCodec 24 kHz built by the encodec package (4 filters, 32-d latents), codebooks filled."""
    from encodec import modules, quantization
    from encodec.model import EncodecModel

    from slmtok.codecs.standins import init_codebooks, probe_signal

    torch.manual_seed(seed)
    common = dict(channels=1, dimension=32, n_filters=4, norm="weight_norm", causal=True, lstm=2)
    model = EncodecModel(
        modules.SEANetEncoder(**common),
        modules.SEANetDecoder(**common),
        quantization.ResidualVectorQuantizer(dimension=32, n_q=32, bins=1024),
        [1.5, 3.0, 6.0, 12.0, 24.0],
        24000,
        1,
        normalize=False,
        segment=None,
        name="encodec_24khz",
    ).eval()
    with torch.no_grad():
        frames = model.encoder(probe_signal(24000, 8, seed=seed))[0].T
    init_codebooks([layer._codebook for layer in model.quantizer.vq.layers], frames, seed)
    return model


def write_vocos(folder: Path, encodec_model, config: dict, seed: int = 0):
    """vocos's own ``Vocos.from_hparams`` (EnCodec patched in), saved in the published layout."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encodec.EncodecModel, "encodec_model_24khz", staticmethod(lambda **_: encodec_model))
        torch.manual_seed(seed)
        model = vocos.Vocos.from_hparams(str(folder / "config.yaml")).eval()
    with torch.no_grad():  # vocos starts every bandwidth's layer norm at 1 / 0: make each one differ
        for module in model.modules():
            if isinstance(module, vocos.modules.AdaLayerNorm):
                module.scale.weight.normal_(1.0, 0.3)
                module.shift.weight.normal_(0.0, 0.3)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("feature_extractor.encodec.")}
    torch.save(state, folder / "pytorch_model.bin")
    return model


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The EnCodec ``.th``, the Vocos folder, and vocos's model of it."""
    folder = tmp_path_factory.mktemp("vocos_encodec")
    codec = upstream_encodec(seed=0)
    torch.save(codec.state_dict(), folder / "encodec_24khz.th")
    model = write_vocos(folder / "vocos", codec, CONFIG)
    return folder / "encodec_24khz.th", folder / "vocos", model


@pytest.fixture(scope="module")
def tok(published):
    """encodec-24khz decoded by Vocos (a local folder): the conformance tests above run on it."""
    th, folder, _ = published
    return slmtok.load("encodec-24khz", checkpoint=str(th), vocoder=str(folder))


@pytest.fixture(scope="module")
def speech_24k(speech_16k):
    return resample(speech_16k, 16000, 24000)


@pytest.fixture
def one_thread():
    """The reference on one torch thread, as slmtok's pool threads (EnCodec's codes are bit-exact then)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("n_codebooks", CODEBOOKS)
def test_resynthesis_equals_the_vocos_package(published, tok, speech_24k, one_thread, n_codebooks):
    _, _, model = published
    bandwidth_id = torch.tensor([CODEBOOKS.index(n_codebooks)])
    tokens = tok.encode(speech_24k, 24000, n_codebooks=n_codebooks)
    ours = tok.decode(tokens)
    with torch.inference_mode():
        features = model.feature_extractor
        features.encodec.set_target_bandwidth(BANDWIDTHS[CODEBOOKS.index(n_codebooks)])
        assert torch.equal(tokens.codes[0], features.get_encodec_codes(speech_24k[None])[:, 0])
        decoded = model.decode(model.codes_to_features(tokens.codes[0]), bandwidth_id=bandwidth_id)[0]
        copy_synthesis = model(speech_24k[None], bandwidth_id=bandwidth_id)[0]
    n = int(tokens.lengths[0])
    assert int(ours.lengths[0]) == n * 320 == decoded.numel() and ours.sample_rate == 24000
    torch.testing.assert_close(ours.wav[0, 0], decoded, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.wav[0, 0], copy_synthesis, atol=1e-6, rtol=0)


def test_batch_gives_each_item_the_vocos_audio_of_it_alone(published, tok, speech_24k):
    _, _, model = published
    lengths = [speech_24k.numel(), 9000, 321]
    wav = torch.zeros(3, 1, lengths[0])
    for i, n in enumerate(lengths):
        wav[i, 0, :n] = speech_24k[:n]
    tokens = tok.encode(wav, 24000, lengths=lengths)
    audio = tok.decode(tokens)
    for i in range(3):
        n = int(tokens.lengths[i])
        with torch.inference_mode():
            alone = model.decode(
                model.codes_to_features(tokens.codes[i, :, :n]), bandwidth_id=torch.tensor([2])
            )
        assert int(audio.lengths[i]) == n * 320
        torch.testing.assert_close(audio.wav[i, 0, : n * 320], alone[0], atol=1e-6, rtol=0)
        assert not audio.wav[i, 0, n * 320 :].any()


def test_same_codes_other_hash_and_plain_tokens_decode(published, tok, speech_24k):
    th, _, _ = published
    plain = slmtok.load("encodec-24khz", checkpoint=str(th))
    assert tok.card.hash != plain.card.hash and tok.codec_hash == plain.card.hash
    assert "Vocos" in tok.card.description and tok.card.frame_rate == plain.card.frame_rate == 75
    ours, theirs = tok.encode(speech_24k, 24000), plain.encode(speech_24k, 24000)
    assert torch.equal(ours.codes, theirs.codes)
    assert ours.tokenizer.hash == tok.card.hash and theirs.tokenizer.hash == plain.card.hash
    assert torch.equal(tok.decode(theirs).wav, tok.decode(ours).wav)  # plain tokens decode with Vocos
    assert not torch.equal(plain.decode(theirs).wav, tok.decode(ours).wav)
    with pytest.raises(TokenizerMismatchError, match="vocoder="):
        plain.decode(ours)
    assert plain.causal and not tok.causal
    with pytest.raises(SlmtokError, match="cannot stream"):
        tok.streaming()


def test_published_card_name_decodes_and_token_files_find_it_again(
    published, speech_24k, tmp_path, monkeypatch
):
    """``vocoder="vocos"`` reads the ``vocos-encodec-24khz`` card's files from the cache (put there by
    hand: no network), and a token file made with it rebuilds the same tokenizer by itself."""
    th, folder, model = published
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    for var in ("SLMTOK_OFFLINE", "HF_HUB_OFFLINE", "SLMTOK_CARDS"):
        monkeypatch.delenv(var, raising=False)
    card = hub.get_card("vocos-encodec-24khz")
    assert {f.hf_repo for f in card.files} == {"charactr/vocos-encodec-24khz"} and card.license == "MIT"
    for role, name in (("config", "config.yaml"), ("weights", "pytorch_model.bin")):
        target = hub.cache_path(card, role)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hub.RecordedChecksumWarning)  # first use records the sha256
        tok = slmtok.load("encodec-24khz", checkpoint=str(th), vocoder="vocos")
    local = slmtok.load("encodec-24khz", checkpoint=str(th), vocoder=str(folder))
    assert tok.card.hash == local.card.hash  # the same weights, from the card or a folder
    tokens = tok.encode(speech_24k, 24000, n_codebooks=4)
    assert tokens.tokenizer.options["vocoder"] == "vocos"
    path = slmtok.save_tokens(tmp_path / "x.slmtok", tokens, card=tok.card.to_dict())
    rebuilt = slmtok.load_for(slmtok.load_tokens(path))
    assert rebuilt.card.hash == tok.card.hash and rebuilt.vocoder is not None
    with torch.inference_mode():
        theirs = model.decode(model.codes_to_features(tokens.codes[0]), bandwidth_id=torch.tensor([1]))[0]
    torch.testing.assert_close(rebuilt.decode(tokens).wav[0, 0], theirs, atol=1e-6, rtol=0)


def test_codebook_counts_without_a_bandwidth_are_refused(published, tok, speech_24k, tmp_path):
    th, folder, _ = published
    three = tok.encode(speech_24k, 24000, n_codebooks=3)
    with pytest.raises(CodesError, match="not 3") as error:
        tok.decode(three)
    assert "2 (1.5 kbps)" in str(error.value) and "\n" not in str(error.value)
    # the published config: 1.5-12 kbps only, so 32 codebooks (24 kbps) have no bandwidth
    shutil.copytree(folder, tmp_path / "published")
    four = {**CONFIG, "feature_extractor": {"class_path": CONFIG["feature_extractor"]["class_path"]}}
    (tmp_path / "published" / "config.yaml").write_text(yaml.safe_dump(four))
    published_tok = slmtok.load("encodec-24khz", checkpoint=str(th), vocoder=str(tmp_path / "published"))
    assert published_tok.vocoder.bandwidths == (1.5, 3.0, 6.0, 12.0)  # vocos's EncodecFeatures defaults
    with pytest.raises(CodesError, match="not 32"):
        published_tok.decode(published_tok.encode(speech_24k, 24000, n_codebooks=32))
    assert published_tok.decode(published_tok.encode(speech_24k, 24000, n_codebooks=16)).wav.abs().max() > 0


def test_vocos_of_other_encodec_weights_is_refused(published, tmp_path):
    th, _, _ = published
    write_vocos(tmp_path / "other", upstream_encodec(seed=1), CONFIG)
    with pytest.raises(SlmtokError, match="other EnCodec codebooks"):
        slmtok.load("encodec-24khz", checkpoint=str(th), vocoder=str(tmp_path / "other"))


def test_bad_vocoder_options_are_one_line(published, tmp_path):
    th, folder, _ = published
    with pytest.raises(SlmtokError, match="'vocos' or a Vocos folder"):
        slmtok.load("encodec-24khz", checkpoint=str(th), vocoder=str(tmp_path / "missing"))
    with pytest.raises(SlmtokError, match="encodec-24khz codes only"):
        slmtok.load("encodec-48khz", vocoder="vocos")
    mel = {**CONFIG, "feature_extractor": {"class_path": "vocos.feature_extractors.MelSpectrogramFeatures"}}
    for name, config in (("mel", mel), ("evil", {**CONFIG, "head": {"class_path": "os.system"}})):
        shutil.copytree(folder, tmp_path / name)
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SlmtokError, match="not the EnCodec-token Vocos"):
        slmtok.load("encodec-24khz", checkpoint=str(th), vocoder=str(tmp_path / "mel"))
    with pytest.raises(SlmtokError, match="not a class of vocos"):
        slmtok.load("encodec-24khz", checkpoint=str(th), vocoder=str(tmp_path / "evil"))
    torch.save({"backbone.x": torch.zeros(1)}, tmp_path / "mel" / "pytorch_model.bin")
    (tmp_path / "mel" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    with pytest.raises(SlmtokError, match="cannot load Vocos weights"):
        slmtok.load("encodec-24khz", checkpoint=str(th), vocoder=str(tmp_path / "mel"))
