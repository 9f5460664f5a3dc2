"""Unit HiFi-GAN training: a few steps of a tiny model, exact resume, export, CLI with registration."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from slmtok.vocoders.training.data import UnitCorpus, draw_batch
from slmtok.vocoders.training.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from slmtok.vocoders.training.trainer import TrainConfig, VocoderTrainer, upsampling, vocoder_config
from slmtok.vocoders.unit_hifigan import UnitHiFiGAN

HOP = 160


@pytest.fixture(scope="module")
def corpus():
    gen = torch.Generator().manual_seed(0)
    units, audio = [], []
    for n in (60, 45, 80, 30):
        u = torch.randint(0, 12, (n,), generator=gen).repeat_interleave(2)[:n]
        units.append(u)
        audio.append(torch.sin(torch.arange(n * HOP) * (0.02 + 0.01 * u.repeat_interleave(HOP))) * 0.3)
    return UnitCorpus([f"item{i}" for i in range(4)], units, audio, HOP, 16000)


CONFIG = TrainConfig(
    size="tiny", disc_width=0.0625, segment_seconds=0.06, batch_size=2, steps=2, checkpoint_every=1,
    validate_every=1000, log_every=1, seed=7, n_fft=256, hop_size=64, win_size=256, num_mels=40,
)  # fmt: skip


def _trainer(out, corpus, config=CONFIG):
    model = vocoder_config(config.size, num_units=12, hop=HOP, sample_rate=16000, duration_predictor=True)
    return VocoderTrainer(out, corpus, config, model, validation=[3], meta={"tokenizer": "test"})


def test_upsampling_factors():
    assert upsampling(320) == ([5, 4, 4, 2, 2], [11, 8, 8, 4, 4])  # the published unit vocoders
    assert upsampling(160) == ([5, 4, 4, 2], [11, 8, 8, 4])
    with pytest.raises(ValueError):
        upsampling(7 * 32)


def test_batches_are_seeded_by_step(corpus):
    a = draw_batch(corpus, [0, 1, 2], 10, 3, seed=1, step=5)
    b = draw_batch(corpus, [0, 1, 2], 10, 3, seed=1, step=5)
    c = draw_batch(corpus, [0, 1, 2], 10, 3, seed=1, step=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    assert a[0].shape == (3, 10) and a[1].shape == (3, 1, 10 * HOP)


def test_discriminator_outputs():
    x = torch.randn(2, 1, 1600)
    logits, features = MultiPeriodDiscriminator(0.0625)(x)
    assert len(logits) == 5 and all(len(f) == 6 for f in features)
    logits, features = MultiScaleDiscriminator(0.0625)(x)
    assert len(logits) == 3 and all(len(f) == 8 for f in features)


def test_steps_are_finite_and_resume_is_exact(corpus, tmp_path):
    straight = _trainer(tmp_path / "a", corpus)
    history = [straight.train_step() for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    assert history[-1]["d"] > 0 and history[-1]["fm"] > 0 and history[-1]["dur"] > 0

    first = _trainer(tmp_path / "b", corpus)
    first.run(stop_after=1)  # ends with a checkpoint at step 1
    assert json.loads((tmp_path / "b" / "latest.json").read_text())["step"] == 1
    resumed = _trainer(tmp_path / "b", corpus)
    assert resumed.load_checkpoint() and resumed.step == 1
    resumed.run()
    assert resumed.step == 2
    for (name, p), q in zip(
        straight.generator.state_dict().items(), resumed.generator.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), f"{name} differs after resume"
    for p, q in zip(straight.mpd.state_dict().values(), resumed.mpd.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_mel_only_warmup(corpus, tmp_path):
    config = dataclasses.replace(CONFIG, adversarial_start=1)
    trainer = _trainer(tmp_path, corpus, config)
    first, second = (trainer.train_step() for _ in range(2))
    assert first["d"] == 0 and first["adv"] == 0 and first["mel"] > 0 and second["d"] > 0


def test_export_is_a_unit_vocoder(corpus, tmp_path):
    trainer = _trainer(tmp_path, corpus)
    summary = trainer.run()
    assert summary["step"] == 2 and summary["validation_mel_l1"] > 0
    assert (tmp_path / "samples" / "step_00000002" / "item3.wav").is_file()
    vocoder = UnitHiFiGAN.load(tmp_path)
    assert vocoder.num_units == 12 and vocoder.hop_length == HOP
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["slmtok"]["tokenizer"] == "test" and config["slmtok"]["step"] == 2
    wav, lengths = vocoder(corpus.units[0][None], torch.tensor([60]))
    assert wav.shape == (1, 1, 60 * HOP)


def test_cli_trains_and_registers_with_the_bundle(tmp_path, monkeypatch, capsys):
    """kmeans bundle (MFCC, no vocoder) -> slmtok vocoder train -> the bundle decodes with it."""
    import slmtok
    from slmtok.cli.main import main
    from slmtok.corpora import asterisk_prompts
    from slmtok.tokenizers.semantic.standins import write_mfcc_bundle

    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    bundle = write_mfcc_bundle(tmp_path / "bundle", k=16, files=6, vocoder=False)
    tok = slmtok.load("semantic-bundle", bundle=str(bundle))
    wav, rate = slmtok.read_audio(asterisk_prompts("en")[3])
    with pytest.raises(slmtok.SlmtokError, match="no unit vocoder"):
        tok.decode(tok.encode(wav, rate))
    corpus = [str(p) for p in asterisk_prompts("en")[:5]]
    args = ["vocoder", "train", "-t", str(bundle), *corpus, "-o", str(tmp_path / "voc"), "--size", "tiny",
            "--steps", "1", "--batch-size", "2", "--segment-seconds", "0.06", "--disc-width", "0.0625",
            "--validation-files", "1", "--json"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 1 and summary["tokenizer"] == "semantic-bundle"
    assert main([*args[:-1], "--steps", "2", "--json"]) == 0  # resumes from step 1
    assert json.loads(capsys.readouterr().out)["step"] == 2
    tok = slmtok.load("semantic-bundle", bundle=str(bundle))  # now with the trained vocoder
    audio = tok.decode(tok.encode(wav, rate))
    assert audio.sample_rate == 16000 and abs(audio.durations[0] - wav.shape[-1] / rate) < 0.03
