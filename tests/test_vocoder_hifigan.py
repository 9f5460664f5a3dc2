"""Unit and mel HiFi-GAN: official checkpoint layouts load and run; batching, durations, conditioning."""

from __future__ import annotations

import json

import pytest
import torch

from slmtok.errors import SlmtokError
from slmtok.registry import VOCODERS
from slmtok.tokenizers.semantic.standins import write_unit_vocoder
from slmtok.vocoders.hifigan import PRESETS, Generator
from slmtok.vocoders.mel_hifigan import MelHiFiGAN, MelSpectrogram
from slmtok.vocoders.unit_hifigan import CodeGenerator, UnitHiFiGAN, UnitVocoderConfig

#: speech-resynthesis examples/speech_to_speech_translation/configs/hubert100_dw1.0.json, the config of
#: fairseq's hubert_base_100_lj unit vocoder (training-only keys left out)
HUBERT100 = {
    "resblock": "1",
    "upsample_rates": [5, 4, 4, 2, 2],
    "upsample_kernel_sizes": [11, 8, 8, 4, 4],
    "upsample_initial_channel": 512,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "num_embeddings": 100,
    "embedding_dim": 128,
    "model_in_dim": 128,
    "segment_size": 8960,
    "code_hop_size": 320,
    "f0": False,
    "dur_prediction_weight": 1.0,
    "dur_predictor_params": {
        "encoder_embed_dim": 128,
        "var_pred_hidden_dim": 128,
        "var_pred_kernel_size": 3,
        "var_pred_dropout": 0.5,
    },
    "sampling_rate": 16000,
}


def test_official_parameter_names_and_shapes():
    """Names and shapes of the official g_00500000 state dict: CodeGenerator(Generator) of
    speech-resynthesis/fairseq, weight-normed convolutions (weight_g, weight_v, bias)."""
    state = CodeGenerator(UnitVocoderConfig.from_dict(HUBERT100)).state_dict()
    assert len(state) == 3 + 5 * 3 + 15 * 6 * 3 + 3 + 1 + 10
    expected = {
        "conv_pre.weight_v": (512, 128, 7),
        "conv_pre.weight_g": (512, 1, 1),
        "ups.0.weight_v": (512, 256, 11),
        "ups.4.weight_v": (32, 16, 4),
        "resblocks.0.convs1.0.weight_v": (256, 256, 3),
        "resblocks.2.convs1.2.weight_v": (256, 256, 11),
        "resblocks.14.convs2.2.weight_v": (16, 16, 11),
        "resblocks.14.convs2.2.bias": (16,),
        "conv_post.weight_v": (1, 16, 7),
        "dict.weight": (100, 128),
        "dur_predictor.conv1.0.weight": (128, 128, 3),
        "dur_predictor.ln1.weight": (128,),
        "dur_predictor.conv2.0.bias": (128,),
        "dur_predictor.ln2.bias": (128,),
        "dur_predictor.proj.weight": (1, 128),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert not any("spkr" in k or "style" in k for k in state)


def test_hifigan_presets_match_the_paper():
    """Generator sizes of Kong et al. (2020), table 1: V1 13.92M, V2 0.92M, V3 1.46M parameters."""
    for name, millions in (("v1", 13.92), ("v2", 0.92), ("v3", 1.46)):
        generator = Generator(PRESETS[name])
        generator.remove_weight_norm()
        assert sum(p.numel() for p in generator.parameters()) / 1e6 == pytest.approx(millions, abs=0.01)


@pytest.fixture(scope="module")
def vocoder_dir(tmp_path_factory):
    return write_unit_vocoder(tmp_path_factory.mktemp("voc"), 100, channels=64)


@pytest.fixture(scope="module")
def vocoder(vocoder_dir):
    return UnitHiFiGAN.load(vocoder_dir)


def test_official_checkpoint_loads_and_runs(vocoder_dir, vocoder):
    assert (vocoder_dir / "g_00000000").is_file() and vocoder.num_units == 100
    assert vocoder.hop_length == 320 and vocoder.frame_rate == 50 and vocoder.has_duration_predictor
    names = [n for n, _ in vocoder.model.named_parameters()]
    assert not any(n.endswith(("weight_g", "weight_v")) for n in names), "weight norm not removed"
    units = torch.randint(0, 100, (1, 40))
    wav, lengths = vocoder(units, torch.tensor([40]))
    assert wav.shape == (1, 1, 40 * 320) and lengths.tolist() == [12800]
    assert float(wav.abs().max()) <= 1.0 and float(wav.abs().max()) > 0
    # the same weights with weight norm still in place give the same audio
    raw = torch.load(vocoder_dir / "g_00000000", weights_only=True)["generator"]
    config = UnitVocoderConfig.from_dict(json.loads((vocoder_dir / "config.json").read_text()))
    reference = CodeGenerator(config)
    reference.load_state_dict(raw)
    with torch.no_grad():
        torch.testing.assert_close(reference.eval()(units), wav, atol=1e-5, rtol=1e-4)


def test_batch_equals_single_and_padding_is_silent(vocoder):
    torch.manual_seed(0)
    units = torch.randint(0, 100, (3, 30))
    lengths = torch.tensor([30, 11, 23])
    units[1, 11:] = -1
    wav, samples = vocoder(units, lengths)
    assert samples.tolist() == [9600, 3520, 7360]
    for i in range(3):
        alone, _ = vocoder(units[i : i + 1, : lengths[i]], lengths[i : i + 1])
        torch.testing.assert_close(wav[i, :, : samples[i]], alone[0], atol=1e-5, rtol=0)
        assert (wav[i, :, samples[i] :] == 0).all()


def test_durations_expand_units(vocoder):
    units = torch.tensor([[5, 7, 9, 7]])
    durations = torch.tensor([[3, 1, 4, 2]])
    expanded = torch.tensor([[5, 5, 5, 7, 9, 9, 9, 9, 7, 7]])
    a, la = vocoder(units, torch.tensor([4]), durations=durations)
    b, lb = vocoder(expanded, torch.tensor([10]))
    assert la.tolist() == lb.tolist() == [3200]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    predicted = vocoder.model.predict_durations(units, torch.tensor([4]))
    assert (predicted >= 1).all()
    c, lc = vocoder(units, torch.tensor([4]), predict_durations=True)
    assert int(lc[0]) == int(predicted.sum()) * 320


def test_speaker_embedding(tmp_path):
    folder = write_unit_vocoder(tmp_path, 50, channels=32, speakers=4)
    vocoder = UnitHiFiGAN.load(folder)
    assert vocoder.config.multispkr and vocoder.model.spkr.weight.shape == (4, 32)
    units = torch.randint(0, 50, (1, 20))
    a, _ = vocoder(units, torch.tensor([20]), speaker=0)
    b, _ = vocoder(units, torch.tensor([20]), speaker=3)
    assert not torch.allclose(a, b)


def test_bad_checkpoints_are_refused(vocoder_dir, tmp_path):
    config = json.loads((vocoder_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_embeddings": 200}))
    (tmp_path / "g_00000000").write_bytes((vocoder_dir / "g_00000000").read_bytes())
    with pytest.raises(SlmtokError, match="dict.weight|parameter"):
        UnitHiFiGAN.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "f0": True}))
    with pytest.raises(SlmtokError, match="F0"):
        UnitHiFiGAN.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "code_hop_size": 160}))
    with pytest.raises(SlmtokError, match="code_hop_size"):
        UnitHiFiGAN.load(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(SlmtokError, match="config.json"):
        UnitHiFiGAN.load(tmp_path / "g_00000000")
    torch.save({"generator": {"x": "not a tensor"}}, tmp_path / "g_00000001")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SlmtokError, match="no generator state dict|cannot read"):
        UnitHiFiGAN.load(tmp_path / "g_00000001")


def test_registry_builds_vocoders(vocoder_dir):
    vocoder = VOCODERS.create("hifigan-unit", checkpoint=vocoder_dir)
    assert vocoder.num_units == 100
    assert VOCODERS.create("hifigan", preset="v2").sample_rate == 22050


def test_mel_hifigan_checkpoint(tmp_path):
    """jik876/hifi-gan layout: generator_v3 = {"generator": state_dict} beside config_v3's config.json."""
    config = {
        "resblock": "2",
        "upsample_rates": [8, 8, 4],
        "upsample_kernel_sizes": [16, 16, 8],
        "upsample_initial_channel": 256,
        "resblock_kernel_sizes": [3, 5, 7],
        "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]],
        "segment_size": 8192,
        "num_mels": 80,
        "n_fft": 1024,
        "hop_size": 256,
        "win_size": 1024,
        "sampling_rate": 22050,
        "fmin": 0,
        "fmax": 8000,
        "fmax_for_loss": None,
    }
    generator = Generator(PRESETS["v3"])
    torch.save({"generator": generator.state_dict()}, tmp_path / "generator_v3")
    (tmp_path / "config.json").write_text(json.dumps(config))
    vocoder = MelHiFiGAN.load(tmp_path / "generator_v3")
    wav = torch.randn(2, 22050) * 0.1
    mel = vocoder.mel(wav)
    assert mel.shape == (2, 80, 22050 // 256)
    audio, lengths = vocoder(mel, torch.tensor([86, 40]))
    assert audio.shape == (2, 1, 86 * 256) and lengths.tolist() == [86 * 256, 40 * 256]
    with torch.no_grad():
        torch.testing.assert_close(generator.eval()(mel[:1]), audio[:1], atol=1e-5, rtol=1e-4)


def test_mel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    import numpy as np

    from slmtok.vocoders.mel_hifigan import MelConfig

    wav = torch.randn(1, 22050) * 0.1
    ours = MelSpectrogram(MelConfig())(wav)[0]
    basis = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0, fmax=8000)
    x = np.pad(wav[0].numpy(), (384, 384), mode="reflect")
    spec = np.abs(librosa.stft(x, n_fft=1024, hop_length=256, win_length=1024, center=False))
    reference = np.log(np.clip(basis @ spec, 1e-5, None))
    np.testing.assert_allclose(ours.numpy(), reference, atol=2e-3)
