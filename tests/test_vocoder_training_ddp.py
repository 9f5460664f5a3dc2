"""Vocoder training under torchrun: 2 CPU processes (gloo) take the steps of 1 process with the whole
batch, and a process killed mid-step resumes to exactly the weights of the run that was never killed."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from slmtok.vocoders.training.data import UnitCorpus
from slmtok.vocoders.training.trainer import TrainConfig, VocoderTrainer, vocoder_config

HOP = 160
CONFIG = TrainConfig(
    size="tiny", disc_width=0.0625, segment_seconds=0.06, batch_size=4, steps=4, checkpoint_every=1,
    validate_every=1000, log_every=1, seed=7, n_fft=256, hop_size=64, win_size=256, num_mels=40,
    tensorboard=False,
)  # fmt: skip
# no dropout in the duration predictor: its masks depend on the rows a process holds
MODEL = vocoder_config("tiny", num_units=12, hop=HOP, sample_rate=16000, duration_predictor=True)
MODEL["dur_predictor_params"]["var_pred_dropout"] = 0.0

WORKER = """
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
import torch.distributed as dist
from slmtok.vocoders.training.data import UnitCorpus
from slmtok.vocoders.training.distributed import setup
from slmtok.vocoders.training.trainer import TrainConfig, VocoderTrainer

corpus_path, out, config, model = sys.argv[1:5]
place = setup("cpu")
trainer = VocoderTrainer(Path(out), UnitCorpus.load(Path(corpus_path), {}), TrainConfig(**json.loads(config)),
                         json.loads(model), validation=[3], placement=place)
kill_after = int(os.environ.get("KILL_AFTER_STEP", "0"))
if kill_after and place.rank == 1:  # SIGKILL in the middle of the next step, after the DDP forward began
    def die(module, inputs):
        if trainer.step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    trainer.mpd.register_forward_pre_hook(die)
trainer.load_checkpoint()
trainer.run()
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def setup_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    gen = torch.Generator().manual_seed(0)
    units, audio = [], []
    for n in (60, 45, 80, 30):
        u = torch.randint(0, 12, (n,), generator=gen).repeat_interleave(2)[:n]
        units.append(u)
        audio.append(torch.sin(torch.arange(n * HOP) * (0.02 + 0.01 * u.repeat_interleave(HOP))) * 0.3)
    corpus = UnitCorpus([f"item{i}" for i in range(4)], units, audio, HOP, 16000)
    corpus.save(root / "corpus.safetensors", {})
    (root / "worker.py").write_text(textwrap.dedent(WORKER))
    return root, corpus


def _torchrun(root, out, env=None):
    import os

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = [str(root / "worker.py"), str(root / "corpus.safetensors"), str(out)]
    return subprocess.run(
        [*command, *args, json.dumps(dataclasses.asdict(CONFIG)), json.dumps(MODEL)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def _weights(folder):
    from safetensors.torch import load_file

    latest = json.loads((folder / "latest.json").read_text())["checkpoint"]
    return load_file(str(folder / "checkpoints" / latest / "models.safetensors"))


def _train_rows(folder):
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "mel" in r]


@pytest.fixture(scope="module")
def straight(setup_files):
    root, _ = setup_files
    done = _torchrun(root, root / "straight")
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "straight"


@pytest.mark.slow  # ~40 s on the shared 2-core box: each torchrun starts three Python processes
def test_two_processes_take_the_steps_of_one_with_the_whole_batch(setup_files, straight, tmp_path):
    root, corpus = setup_files
    one = VocoderTrainer(tmp_path, corpus, CONFIG, MODEL, validation=[3])
    initial = {k: v.clone() for k, v in one.generator.state_dict().items()}
    one.run()
    ddp, single = _weights(straight), _weights(tmp_path)
    state = json.loads((straight / "checkpoints" / "step_00000004" / "state.json").read_text())
    assert state["placement"] == {"world_size": 2, "device_type": "cpu", "precision": "fp32"}
    # The float summation order differs (two halves, then the all-reduce): the last bits of the weights
    # (~4e-7 seen). A wrong shard, a lost gradient average or another batch moves them by ~lr (2e-4) a step.
    moved = max(float((single[f"generator.{k}"] - v).abs().max()) for k, v in initial.items())
    assert moved > 4e-4  # 4 steps of AdamW at lr 2e-4
    for name, value in single.items():
        assert torch.allclose(ddp[name], value, rtol=0, atol=2e-3 * moved), name
    for mine, theirs in zip(_train_rows(straight), _train_rows(tmp_path), strict=True):
        for key in ("d", "g", "mel", "fm", "adv", "dur"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), (mine["step"], key)


@pytest.mark.slow  # ~40 s: two more torchrun launches
def test_a_killed_process_group_resumes_exactly(setup_files, straight, tmp_path):
    root, _ = setup_files
    killed = _torchrun(root, tmp_path, env={"KILL_AFTER_STEP": "2"})
    assert killed.returncode != 0
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 2
    resumed = _torchrun(root, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = _weights(straight), _weights(tmp_path)
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        assert torch.equal(got[name], value), f"{name} differs after the resumed run"
    rows = _train_rows(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["mel"] for r in rows] == [r["mel"] for r in _train_rows(straight)]
