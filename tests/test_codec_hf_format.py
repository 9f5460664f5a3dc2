"""Hugging Face-format EnCodec and DAC folders (``config.json`` + ``model.safetensors``) in ``encodec-*`` / ``dac-*``.

References, never slmtok's own code:

- transformers: a random-weight ``EncodecModel`` / ``DacModel`` built by transformers from a small config
  (EnCodec at its published strides, 4 base filters, 32-d latents, 32 codebooks of 1024; DAC 16 kHz at its
  published strides, 8 / 32 channels, 12 codebooks of 1024), its codebooks given distinct random codewords
  (transformers initialises EnCodec's to zeros), saved with ``save_pretrained``; its own ``encode`` on the
  exact signal slmtok feeds its model (real speech, Asterisk prompts, converted by ``model_input``).
- the ``encodec`` / ``dac`` packages: their own models and ``encode`` (EnCodec: ``set_target_bandwidth`` +
  ``EncodecModel.encode``; DAC: ``encode(preprocess(x))``), built here from the packages' classes with the
  architecture written out in this file, holding the folder's weights under the names slmtok's mapping
  (``codecs.hf_format``) gives them: the reference is the upstream package, the key mapping is slmtok's.

Condition: torch on one thread (the shared ``one_thread`` fixture). DAC codes must be equal at every frame;
EnCodec 24 kHz codes too except at verified near-ties (its encoder runs on position-stable kernels, so that
a stream's codes are the whole input's: ``slmtok.codecs.stable``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

import slmtok
from slmtok.audio import resample
from slmtok.codecs import hf_format, standins
from slmtok.codecs.loading import CheckpointError
from slmtok.errors import SlmtokError

from . import test_codec_parity as parity
from .test_codec_parity import file_card, model_input

one_thread = parity.one_thread
utterances = parity.utterances
home = parity.home  # a private SLMTOK_HOME for the module

RATES = (8000, 16000, 22050)


def speech_like(rate: int, seconds: float) -> torch.Tensor:
    """``[1, 1, T]``: harmonics with gliding pitch and noise (to spread the codewords over real latents)."""
    g = torch.Generator().manual_seed(1)
    t = torch.arange(int(rate * seconds)) / rate
    phase = 2 * math.pi * torch.cumsum(130 + 50 * torch.sin(2 * math.pi * 0.8 * t), 0) / rate
    x = sum(torch.sin(h * phase) / h for h in range(1, 9)) * 0.2 + 0.03 * torch.randn(t.shape, generator=g)
    return x[None, None].float()


@torch.no_grad()
def gaussian_codewords(embeds: list[torch.Tensor], frames: torch.Tensor, seed: int = 0) -> None:
    """Fill each ``[bins, D]`` codebook with distinct Gaussian codewords spread like the residual of the
    ``[N, D]`` latent frames at its stage (well separated: near-ties as rare as in trained codebooks)."""
    g = torch.Generator().manual_seed(seed)
    residual = frames.clone()
    for embed in embeds:
        bins, dim = embed.shape
        mean, std = residual.mean(0), residual.std(0).clamp_min(1e-4)
        embed.copy_(mean + std * torch.randn(bins, dim, generator=g))
        residual = residual - embed[torch.cdist(residual, embed).argmin(dim=1)]


# ------------------------------------------------------------------------------------------ EnCodec
@pytest.fixture(scope="module")
def encodec_folder(tmp_path_factory):
    """transformers' ``EncodecModel`` (24 kHz, small), codebooks filled, ``save_pretrained``."""
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    model = EncodecModel(
        EncodecConfig(num_filters=4, hidden_size=32, codebook_dim=32, codebook_size=1024, num_lstm_layers=2)
    ).eval()
    with torch.no_grad():
        frames = model.encoder(speech_like(24000, 6))[0].T  # [N, D]
        books = [layer.codebook for layer in model.quantizer.layers]
        gaussian_codewords([b.embed for b in books], frames)
        for b in books:
            b.embed_avg.copy_(b.embed)
            b.cluster_size.fill_(1.0)
            b.inited.fill_(1.0)
    folder = tmp_path_factory.mktemp("encodec") / "encodec_24khz"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf_encodec(encodec_folder):
    from transformers import EncodecModel

    return EncodecModel.from_pretrained(str(encodec_folder)).eval()


@pytest.fixture(scope="module")
def encodec_tok(encodec_folder):
    return slmtok.load("encodec-24khz", checkpoint=str(encodec_folder))


def upstream_encodec(folder):
    """The ``encodec`` package's 24 kHz model (its classes, the folder's architecture written out) holding
    the folder's weights under slmtok's mapping."""
    from encodec import modules, quantization
    from encodec.model import EncodecModel

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
    )
    state = hf_format.encodec_state_dict(load_file(str(folder / "model.safetensors")), "test")
    model.load_state_dict(state, strict=True)
    return model.eval()


def assert_transformers_codes(codes: torch.Tensor, reference: torch.Tensor, model, x: torch.Tensor) -> None:
    """slmtok's EnCodec 24 kHz codes ``[K, T]`` against transformers' for the model input ``x [1, 1, T]``:
    equal except at near-ties of transformers' own latent (slmtok's encoder runs on position-stable
    kernels, ``slmtok.codecs.stable``: other rounding; ``test_codec_parity.assert_only_near_ties``), and
    those at most 5 % of the frames (measured: up to 4 of 128 on this tiny model, whose 32-d latents put
    many codewords near each other). A wrong key mapping changes nearly every frame."""
    with torch.inference_mode():
        latent = model.encoder(x)[0]
    books = [layer.codebook.embed for layer in model.quantizer.layers]
    ties = parity.assert_only_near_ties(codes, reference, parity.euclidean_gap(latent, books, reference))
    assert ties <= 0.05 * codes.shape[-1]


@pytest.mark.usefixtures("one_thread")
def test_encodec_hf_folder_codes_equal_transformers(encodec_tok, hf_encodec, utterances):
    assert encodec_tok.card.max_codebooks == 32 and encodec_tok.card.frame_rate == 75
    seen = set()
    for i, rate in enumerate(RATES):
        wav = resample(utterances[i], 16000, rate)
        for k, bandwidth in ((2, 1.5), (8, 6.0), (32, 24.0)):
            x = model_input(encodec_tok, wav, rate)
            with torch.inference_mode():
                reference = hf_encodec.encode(x, bandwidth=bandwidth)
            codes = encodec_tok.encode(wav, rate, n_codebooks=k).codes[0]
            assert codes.shape == reference.audio_codes[0, 0].shape
            assert_transformers_codes(codes, reference.audio_codes[0, 0], hf_encodec, x)
            seen |= set(codes.flatten().tolist())
    assert len(seen) > 200  # real, varied codes (not all one codeword)
    # a padded batch gives every item the codes transformers gives it alone
    lengths = [x.numel() for x in utterances]
    tokens = encodec_tok.encode(
        slmtok.batching.pad_stack([x[None] for x in utterances]), 16000, lengths=lengths
    )
    for i, x in enumerate(utterances):
        with torch.inference_mode():
            reference = hf_encodec.encode(model_input(encodec_tok, x, 16000), bandwidth=6.0).audio_codes
        assert torch.equal(tokens.item(i), encodec_tok.encode(x, 16000).codes[0])  # batch == alone
        assert_transformers_codes(
            tokens.item(i), reference[0, 0], hf_encodec, model_input(encodec_tok, x, 16000)
        )


@pytest.mark.usefixtures("one_thread")
def test_encodec_hf_folder_codes_equal_the_encodec_package(encodec_tok, encodec_folder, utterances):
    model = upstream_encodec(encodec_folder)
    for i, rate in enumerate(RATES):
        wav = resample(utterances[i], 16000, rate)
        for k, bandwidth in ((2, 1.5), (32, 24.0)):
            model.set_target_bandwidth(bandwidth)
            x = model_input(encodec_tok, wav, rate)
            with torch.inference_mode():
                (reference, _scale), *_ = model.encode(x)
                latent = model.encoder(x)[0]
            codes = encodec_tok.encode(wav, rate, n_codebooks=k).codes
            assert codes.shape == reference.shape
            books = [layer._codebook.embed for layer in model.quantizer.vq.layers]
            ties = parity.assert_only_near_ties(
                codes[0], reference[0], parity.euclidean_gap(latent, books, reference[0])
            )
            assert ties <= 0.05 * codes.shape[-1]


def test_encodec_classic_weight_norm_names_and_card_load_the_same(
    encodec_tok, encodec_folder, home, tmp_path, utterances
):
    """Older transformers files name weight norm ``weight_g`` / ``weight_v``; a hub card listing a
    ``config`` file is read as a Hugging Face folder (fetched into the cache, sha256 checked)."""
    old = tmp_path / "old"
    old.mkdir()
    state = load_file(str(encodec_folder / "model.safetensors"))
    renamed = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in state.items()
    }
    assert renamed != state
    save_file(renamed, str(old / "model.safetensors"))
    (old / "config.json").write_text((encodec_folder / "config.json").read_text())
    expected = encodec_tok.encode(utterances[0], 16000).codes
    assert torch.equal(
        slmtok.load("encodec-24khz", checkpoint=str(old)).encode(utterances[0], 16000).codes, expected
    )
    files = {"config": encodec_folder / "config.json", "weights": encodec_folder / "model.safetensors"}
    card = file_card(tmp_path, "encodec-24khz", files)
    from_card = slmtok.load("encodec-24khz", card=card)
    assert from_card.card.source == (encodec_folder / "model.safetensors").as_uri()
    assert from_card.card.hash == encodec_tok.card.hash
    assert torch.equal(from_card.encode(utterances[0], 16000).codes, expected)


@pytest.mark.usefixtures("one_thread")
def test_encodec_48khz_hf_folder_equals_transformers_and_the_encodec_package(tmp_path, utterances):
    """48 kHz (stereo, time group norm, 1 s segments every 0.99 s): codes equal the ``encodec`` package's
    ``encode`` for the whole input, and transformers' on the full segments (transformers pads the last
    segment to a full one, the package does not: that segment is not compared with transformers)."""
    from encodec import modules, quantization
    from encodec.model import EncodecModel as PackageModel
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    config = EncodecConfig(
        sampling_rate=48000,
        audio_channels=2,
        normalize=True,
        chunk_length_s=1.0,
        overlap=0.01,
        norm_type="time_group_norm",
        use_causal_conv=False,
        target_bandwidths=[3.0, 6.0, 12.0, 24.0],
        num_filters=4,
        hidden_size=32,
        codebook_dim=32,
        codebook_size=1024,
        num_lstm_layers=2,
    )
    hf = EncodecModel(config).eval()
    with torch.no_grad():
        x = speech_like(48000, 1).expand(1, 2, -1)
        frames = hf.encoder(x / x.mean(dim=1, keepdim=True).pow(2).mean().sqrt())[0].T
        books = [layer.codebook for layer in hf.quantizer.layers]
        gaussian_codewords([b.embed for b in books], frames)
        for b in books:
            b.embed_avg.copy_(b.embed)
            b.cluster_size.fill_(1.0)
            b.inited.fill_(1.0)
    hf.save_pretrained(tmp_path / "encodec_48khz")
    tok = slmtok.load("encodec-48khz", checkpoint=str(tmp_path / "encodec_48khz"))
    common = dict(channels=2, dimension=32, n_filters=4, norm="time_group_norm", causal=False, lstm=2)
    package = PackageModel(
        modules.SEANetEncoder(**common),
        modules.SEANetDecoder(**common),
        quantization.ResidualVectorQuantizer(dimension=32, n_q=16, bins=1024),
        [3.0, 6.0, 12.0, 24.0],
        48000,
        2,
        normalize=True,
        segment=1.0,
    ).eval()
    state = load_file(str(tmp_path / "encodec_48khz" / "model.safetensors"))
    package.load_state_dict(hf_format.encodec_state_dict(state, "test"), strict=True)
    package.set_target_bandwidth(12.0)
    wav = utterances[0]  # 2.2 s: segments at 0, 0.99 and 1.98 s, the last one partial
    signal = model_input(tok, wav, 16000)
    codes = tok.encode(wav, 16000, n_codebooks=8).codes[0]
    with torch.inference_mode():
        expected = torch.cat([c for c, _ in package.encode(signal)], dim=-1)[0]
        reference = torch.cat(list(hf.encode(signal, bandwidth=12.0).audio_codes), dim=-1)[0]
    assert codes.shape == expected.shape and codes.shape[-1] > 300
    assert torch.equal(codes, expected)
    assert torch.equal(codes[:, :300], reference[:, :300])


# ------------------------------------------------------------------------------------------ DAC
DAC_CONFIG = dict(
    encoder_hidden_size=8,
    downsampling_ratios=[2, 4, 5, 8],
    decoder_hidden_size=32,
    upsampling_ratios=[8, 5, 4, 2],
    hidden_size=128,
    n_codebooks=12,
    codebook_size=1024,
    codebook_dim=8,
    sampling_rate=16000,
)


@pytest.fixture(scope="module")
def dac_folders(tmp_path_factory):
    """transformers' ``DacModel`` (16 kHz, small), codebooks filled; saved twice: as it is (plain
    weights) and after ``apply_weight_norm`` (``parametrizations`` tensors)."""
    from transformers import DacConfig, DacModel

    torch.manual_seed(0)
    model = DacModel(DacConfig(**DAC_CONFIG)).eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for q in model.quantizer.quantizers:
            q.codebook.weight.copy_(torch.randn(q.codebook.weight.shape, generator=g))
    root = tmp_path_factory.mktemp("dac")
    model.save_pretrained(root / "plain")
    model.apply_weight_norm()
    model.save_pretrained(root / "normed")
    return root / "plain", root / "normed", model


@pytest.mark.usefixtures("one_thread")
def test_dac_hf_folder_codes_equal_transformers_and_the_dac_package(dac_folders, utterances):
    import dac
    from transformers import DacModel

    plain, normed, _ = dac_folders
    hf = DacModel.from_pretrained(str(plain)).eval()
    tok = slmtok.load("dac-16khz", checkpoint=str(plain))
    assert tok.card.max_codebooks == 12 and tok.card.frame_rate == 50
    upstream = dac.DAC(
        encoder_dim=8,
        encoder_rates=[2, 4, 5, 8],
        latent_dim=128,
        decoder_dim=32,
        decoder_rates=[8, 5, 4, 2],
        n_codebooks=12,
        codebook_size=1024,
        codebook_dim=8,
        sample_rate=16000,
    ).eval()
    for module in upstream.modules():  # the folder holds plain weights: drop the package's weight norm
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
    kwargs = {"encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2]}
    upstream.load_state_dict(
        hf_format.dac_state_dict(load_file(str(plain / "model.safetensors")), kwargs, "test"), strict=True
    )
    seen = set()
    for i, rate in enumerate(RATES):
        wav = resample(utterances[i], 16000, rate)
        x = model_input(tok, wav, rate)
        for k in (1, 5, 12):
            codes = tok.encode(wav, rate, n_codebooks=k).codes
            with torch.inference_mode():
                reference = hf.encode(x, n_quantizers=k).audio_codes
                _, package, *_ = upstream.encode(upstream.preprocess(x, 16000), n_quantizers=k)
            assert torch.equal(codes, reference[:, :k])
            assert torch.equal(codes, package[:, :k])
            seen |= set(codes.flatten().tolist())
    assert len(seen) > 200


@pytest.mark.usefixtures("one_thread")
def test_dac_weight_normed_folders_in_both_namings_load_exactly(dac_folders, tmp_path, utterances):
    """A folder written after ``apply_weight_norm`` (``parametrizations.weight.original0/1``), and the same
    tensors named ``weight_g`` / ``weight_v``, give the codes of transformers' weight-normed model."""
    _, normed, model = dac_folders
    state = load_file(str(normed / "model.safetensors"))
    assert any(k.endswith("original0") for k in state)
    old = tmp_path / "old"
    old.mkdir()
    save_file(
        {
            k.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            ): v
            for k, v in state.items()
        },
        str(old / "model.safetensors"),
    )
    (old / "config.json").write_text((normed / "config.json").read_text())
    x = utterances[1]
    with torch.inference_mode():
        reference = model.encode(x[None, None], n_quantizers=12).audio_codes  # 16 kHz: the signal as is
    for folder in (normed, old):
        assert torch.equal(slmtok.load("dac-16khz", checkpoint=str(folder)).encode(x, 16000).codes, reference)


def test_dac_card_with_config_loads_the_folder(dac_folders, home, tmp_path, utterances):
    plain, _, _ = dac_folders
    files = {"config": plain / "config.json", "weights": plain / "model.safetensors"}
    tok = slmtok.load("dac-16khz", card=file_card(tmp_path, "dac-16khz", files))
    direct = slmtok.load("dac-16khz", checkpoint=str(plain))
    assert tok.card.hash == direct.card.hash
    assert torch.equal(tok.encode(utterances[3], 16000).codes, direct.encode(utterances[3], 16000).codes)


# ------------------------------------------------------------------------------------------ refusals
def test_folders_of_another_model_or_architecture_are_one_line_errors(tmp_path, encodec_folder, dac_folders):
    def refused(name, folder, match):
        with pytest.raises(CheckpointError, match=match) as error:
            slmtok.load(name, checkpoint=str(folder))
        assert isinstance(error.value, SlmtokError) and "\n" not in str(error.value)

    mimi = standins.write_mimi(tmp_path / "mimi")
    plain, _, _ = dac_folders
    refused("encodec-24khz", mimi, "'mimi' checkpoint, not a Hugging Face EnCodec one")
    refused("dac-16khz", mimi, "'mimi' checkpoint, not a Hugging Face DAC one")
    refused("encodec-24khz", plain, "'dac' checkpoint, not a Hugging Face EnCodec one")
    refused("dac-16khz", encodec_folder, "'encodec' checkpoint, not a Hugging Face DAC one")
    refused("encodec-48khz", encodec_folder, "not encodec-48khz: config sampling_rate is 24000")
    refused("dac-24khz", plain, "16000 Hz DAC, not dac-24khz")
    # an EnCodec the encodec package cannot build (two residual layers per block)
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((encodec_folder / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "num_residual_layers": 2}))
    (other / "model.safetensors").write_bytes((encodec_folder / "model.safetensors").read_bytes())
    refused("encodec-24khz", other, "config num_residual_layers is 2")
    # weights that are not the config's model, or not safetensors at all
    (other / "config.json").write_text(json.dumps(config))
    state = load_file(str(encodec_folder / "model.safetensors"))
    save_file({**state, "encoder.layers.99.extra.weight": torch.zeros(1)}, str(other / "model.safetensors"))
    refused("encodec-24khz", other, "no place in the upstream model: encoder.layers.99.extra.weight")
    save_file(
        {k: v for k, v in state.items() if "quantizer.layers.3." not in k}, str(other / "model.safetensors")
    )
    refused("encodec-24khz", other, "does not fit the encodec package's model")
    (other / "model.safetensors").write_bytes(b"not safetensors")
    refused("encodec-24khz", other, "cannot read weights")
    (other / "model.safetensors").unlink()
    refused("encodec-24khz", other, "no such weights file")


def test_cli_names_a_wrong_folder_in_one_line(tmp_path, capsys):
    """``slmtok info encodec-24khz -O checkpoint=<a Mimi folder>``: exit 1, one ``slmtok: error:`` line."""
    from slmtok.cli.main import main

    mimi = standins.write_mimi(tmp_path / "mimi")
    capsys.readouterr()
    rc = main(["info", "encodec-24khz", "-O", f"checkpoint={mimi}"])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err.startswith("slmtok: error:") and "\n" not in err
    assert "'mimi' checkpoint, not a Hugging Face EnCodec one" in err
