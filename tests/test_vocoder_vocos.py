"""The ``vocos`` vocoder against the vocos package's own forward.

Where the reference comes from: ``vocos.Vocos.from_hparams`` builds a tiny random-weight mel Vocos from a
``config.yaml`` in the published layout (vocos's own ``MelSpectrogramFeatures``, ``VocosBackbone``,
``ISTFTHead``); its ``state_dict`` is saved as ``pytorch_model.bin``. slmtok's ``vocos`` (by ``checkpoint=``
and through a ``file://`` hub card) must give ``Vocos.decode(Vocos.feature_extractor(wav))`` on real speech:
same package code, same weights, so the audio is equal (``atol=1e-6``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slmtok import hub
from slmtok.audio import resample
from slmtok.errors import SlmtokError
from slmtok.registry import VOCODERS

yaml = pytest.importorskip("yaml")
vocos = pytest.importorskip("vocos")

CONFIG = {
    "feature_extractor": {
        "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
        "init_args": {
            "sample_rate": 24000,
            "n_fft": 1024,
            "hop_length": 256,
            "n_mels": 100,
            "padding": "center",
        },
    },
    "backbone": {
        "class_path": "vocos.models.VocosBackbone",
        "init_args": {"input_channels": 100, "dim": 32, "intermediate_dim": 48, "num_layers": 2},
    },
    "head": {
        "class_path": "vocos.heads.ISTFTHead",
        "init_args": {"dim": 32, "n_fft": 1024, "hop_length": 256, "padding": "same"},
    },
}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A random-weight Vocos in the published layout, and the vocos package's model of it."""
    folder = tmp_path_factory.mktemp("vocos")
    (folder / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    torch.manual_seed(0)
    model = vocos.Vocos.from_hparams(str(folder / "config.yaml")).eval()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder, model


@pytest.fixture(scope="module")
def speech_24k(speech_16k):
    return resample(speech_16k, 16000, 24000)


def upstream(model, wav: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.decode(model.feature_extractor(wav[None]))[0]


def test_audio_equals_the_vocos_package(published, speech_24k):
    folder, model = published
    voc = VOCODERS.create("vocos", checkpoint=folder)
    assert (voc.sample_rate, voc.hop_length, voc.num_mels) == (24000, 256, 100)
    mel = voc.mel(speech_24k[None])
    wav, lengths = voc(mel)
    theirs = upstream(model, speech_24k)
    assert int(lengths[0]) == mel.shape[-1] * 256 == theirs.numel()
    torch.testing.assert_close(wav[0, 0], theirs, atol=1e-6, rtol=0)


def test_batch_gives_each_item_its_solo_audio(published, speech_24k):
    folder, model = published
    voc = VOCODERS.create("vocos", checkpoint=folder)
    short = speech_24k[:9000]
    mel_long, mel_short = voc.mel(speech_24k[None]), voc.mel(short[None])
    batch = torch.zeros(2, 100, mel_long.shape[-1])
    batch[0], batch[1, :, : mel_short.shape[-1]] = mel_long[0], mel_short[0]
    wav, lengths = voc(batch, torch.tensor([mel_long.shape[-1], mel_short.shape[-1]]))
    torch.testing.assert_close(wav[1, 0, : int(lengths[1])], upstream(model, short), atol=1e-6, rtol=0)
    torch.testing.assert_close(wav[0, 0], upstream(model, speech_24k), atol=1e-6, rtol=0)
    assert not wav[1, 0, int(lengths[1]) :].any()


def test_loads_through_a_file_card(published, speech_24k, tmp_path, monkeypatch):
    folder, model = published
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    lines = ['name = "vocos-local"', 'title = "t"', 'family = "vocoder"', 'license = "test"']
    lines += ['source = "https://example.org"', "sample_rate = 24000"]
    for role, name in (("config", "config.yaml"), ("weights", "pytorch_model.bin")):
        path = folder / name
        lines += ["[[files]]", f'filename = "{name}"', f'url = "{path.as_uri()}"']
        lines += [f'sha256 = "{hub.sha256_file(path)}"', f'role = "{role}"']
    card = tmp_path / "vocos-local.toml"
    card.write_text("\n".join(lines) + "\n")
    voc = VOCODERS.create("vocos", card=str(card))
    assert Path(voc.source) == tmp_path / "home" / "hub" / "vocos-local"
    wav, _ = voc(voc.mel(speech_24k[None]))
    torch.testing.assert_close(wav[0, 0], upstream(model, speech_24k), atol=1e-6, rtol=0)


@pytest.mark.parametrize("class_path", ["os.system", "builtins.eval", "vocos"])
def test_config_naming_a_class_outside_vocos_is_refused(published, tmp_path, class_path):
    folder, _ = published
    bad = {**CONFIG, "backbone": {"class_path": class_path, "init_args": {"command": "touch PWNED"}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad))
    (tmp_path / "pytorch_model.bin").write_bytes((folder / "pytorch_model.bin").read_bytes())
    with pytest.raises(SlmtokError, match="not a class of vocos"):
        VOCODERS.create("vocos", checkpoint=tmp_path)
    assert not Path("PWNED").exists()


def test_card_and_bad_weights(published, tmp_path):
    card = hub.get_card("vocos-mel-24khz")
    assert {f.hf_repo for f in card.files} == {"charactr/vocos-mel-24khz"} and card.license == "MIT"
    folder, _ = published
    (tmp_path / "config.yaml").write_text((folder / "config.yaml").read_text())
    torch.save({"not": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(SlmtokError, match="cannot load Vocos weights"):
        VOCODERS.create("vocos", checkpoint=tmp_path)
