"""Vocoder training placement and logs: batch rows per process, bf16 autocast, devices, TensorBoard
scalars, metrics rows across a kill, resume refused under another placement."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from slmtok.errors import SlmtokError
from slmtok.vocoders.training import losses
from slmtok.vocoders.training.data import UnitCorpus, draw_batch
from slmtok.vocoders.training.distributed import Placement, resolve_device
from slmtok.vocoders.training.trainer import TrainConfig, VocoderTrainer, vocoder_config

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
    validate_every=2, log_every=1, seed=7, n_fft=256, hop_size=64, win_size=256, num_mels=40,
)  # fmt: skip


def _trainer(out, corpus, config=CONFIG, placement=None):
    model = vocoder_config(config.size, num_units=12, hop=HOP, sample_rate=16000, duration_predictor=True)
    return VocoderTrainer(out, corpus, config, model, validation=[3], placement=placement)


def test_the_rows_of_every_process_make_the_one_batch(corpus):
    units, audio = draw_batch(corpus, [0, 1, 2], 10, 6, seed=3, step=4)
    parts = [draw_batch(corpus, [0, 1, 2], 10, 6, seed=3, step=4, rows=range(r, 6, 3)) for r in range(3)]
    for rank, (u, a) in enumerate(parts):
        assert torch.equal(u, units[rank::3]) and torch.equal(a, audio[rank::3])
    assert not torch.equal(parts[0][1], parts[1][1])


def test_bf16_autocasts_the_networks_and_keeps_fp32_weights(corpus, tmp_path):
    fp32 = _trainer(tmp_path / "a", corpus).train_step()
    trainer = _trainer(tmp_path / "b", corpus, placement=Placement(precision="bf16"))
    bf16 = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(v)) for v in bf16.values())
    assert bf16["mel"] != fp32["mel"] and bf16["mel"] == pytest.approx(fp32["mel"], rel=0.05)
    dtypes = {p.dtype for m in (trainer.generator, trainer.mpd, trainer.msd) for p in m.parameters()}
    assert dtypes == {torch.float32}
    moments = {v.dtype for s in trainer.opt_g.state.values() for v in s.values() if v.dim()}
    assert moments == {torch.float32}
    half = [torch.full((2, 3), 0.3, dtype=torch.bfloat16)]
    assert losses.discriminator_loss(half, half).dtype == torch.float32
    assert losses.generator_loss(half).dtype == torch.float32
    assert losses.feature_matching_loss([half], [half]).dtype == torch.float32


def test_devices_resolve_or_say_why(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(SlmtokError, match="no CUDA GPU is usable here; use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(SlmtokError, match="unknown device"):
        resolve_device("gpu0")


def test_cli_device_cuda_without_a_gpu_is_one_line(tmp_path, monkeypatch, capsys):
    from slmtok.cli.main import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(
        ["vocoder", "train", "-t", "missing-bundle", "x.wav", "-o", str(tmp_path / "v"), "--device", "cuda"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "no CUDA GPU is usable here" in err[0], err
    assert not (tmp_path / "v").exists()  # refused before any work


def test_batch_must_split_over_the_processes(corpus, tmp_path):
    config = dataclasses.replace(CONFIG, batch_size=3)
    with pytest.raises(SlmtokError, match="does not split over 2 processes"):
        _trainer(tmp_path, corpus, config, placement=Placement(world=2))


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_scalars_reach_tensorboard_and_metrics_and_survive_a_kill(corpus, tmp_path):
    straight = _trainer(tmp_path / "a", corpus)
    straight.run()
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "mel" in r]
    assert [r["step"] for r in train] == [1, 2] and all(r["steps_per_second"] > 0 for r in train)
    assert [r["step"] for r in rows if "mel_l1" in r] == [2, 2]  # every validate_every, and at the end
    events = _events(tmp_path / "a" / "tensorboard")
    assert {
        "train/mel",
        "train/d",
        "train/g",
        "train/lr",
        "train/steps_per_second",
        "validation/mel_l1",
    } <= set(events)
    assert [s for s, _ in events["train/mel"]] == [1, 2]
    assert [v for _, v in events["train/mel"]] == pytest.approx([r["mel"] for r in train], rel=1e-6)

    # killed after the checkpoint of step 1, with the row of step 2 and half a row written
    killed = _trainer(tmp_path / "b", corpus)
    killed.run(stop_after=1)
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 2, "mel": 9.0}) + '\n{"step": 2, "me')
    resumed = _trainer(tmp_path / "b", corpus)
    assert resumed.load_checkpoint() and resumed.step == 1
    resumed.run()
    again = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in again if "mel" in r] == [1, 2]
    for mine, theirs in zip([r for r in again if "mel" in r], train, strict=True):
        assert {k: mine[k] for k in ("d", "g", "mel", "fm", "adv", "dur", "lr")} == {
            k: theirs[k] for k in ("d", "g", "mel", "fm", "adv", "dur", "lr")
        }


def test_resume_is_refused_under_another_placement(corpus, tmp_path):
    _trainer(tmp_path, corpus).run(stop_after=1)
    with pytest.raises(SlmtokError, match=r"trained by 1 process\(es\) on cpu in fp32, this run is .* bf16"):
        _trainer(tmp_path, corpus, placement=Placement(precision="bf16")).load_checkpoint()


@pytest.mark.gpu
def test_two_bf16_steps_on_a_gpu(corpus, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    trainer = _trainer(tmp_path, corpus, placement=Placement(device=torch.device("cuda"), precision="bf16"))
    summary = trainer.run()
    assert summary["step"] == 2 and torch.isfinite(torch.tensor(summary["mel"]))
    assert json.loads((tmp_path / "checkpoints" / "step_00000002" / "state.json").read_text())[
        "placement"
    ] == {
        "world_size": 1,
        "device_type": "cuda",
        "precision": "bf16",
    }
