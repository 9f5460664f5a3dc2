"""LM data and training on synthetic token languages of known structure: learning, exact resume, DDP."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from slmtok.errors import OutputError, SlmtokError
from slmtok.lm.checkpoint import load_model
from slmtok.lm.data import TokenData, Utterance, split_names, write_dataset
from slmtok.lm.training import TrainConfig, learning_rate, train

SYNTHETIC = {"name": "synthetic-markov", "hash": "", "options": {}}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the tiny models here gain nothing from two, and the test box is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def markov_utterances(n_codebooks=1, states=32, count=60, frames=200, seed=0) -> list[Utterance]:
    """A first-order Markov chain over ``states`` where each state has 2 equally likely successors
    (1 bit/token); codebook q > 0 is a fixed function of codebook 0 (0 bits given it)."""
    g = torch.Generator().manual_seed(seed)
    successors = torch.stack([torch.randperm(states, generator=g)[:2] for _ in range(states)])
    maps = [torch.randperm(states, generator=g) for _ in range(n_codebooks)]
    utterances = []
    for i in range(count):
        state, chain = int(torch.randint(states, (1,), generator=g)), []
        for _ in range(frames):
            chain.append(state)
            state = int(successors[state, torch.randint(2, (1,), generator=g)])
        chain = torch.tensor(chain)
        codes = torch.stack([chain] + [maps[q][chain] for q in range(1, n_codebooks)])
        utterances.append(Utterance(f"utt{i:03d}", codes, frames / 100.0))
    return utterances


def make_data(folder, utterances, pattern="delay", sizes=None, **kwargs):
    sizes = sizes or (32,) * utterances[0].codes.shape[0]
    names = [u.name for u in utterances]
    return write_dataset(
        folder,
        names,
        utterances,
        tokenizer=SYNTHETIC,
        codebook_sizes=sizes,
        frame_rate=100.0,
        pattern=pattern,
        **kwargs,
    )


def test_tiny_lm_learns_a_markov_chain_well_below_the_unigram_entropy(tmp_path):
    utterances = markov_utterances()
    manifest = make_data(tmp_path / "data", utterances, pattern="flatten", valid_fraction=0.1)
    # the unigram baseline in the manifest is the entropy of the training counts (computed here again)
    train_names = {u.name for u in utterances} - split_names([u.name for u in utterances], 0.1)
    counts = np.bincount(
        torch.cat([u.codes[0] for u in utterances if u.name in train_names]).numpy(), minlength=32
    )
    p = (counts + 1) / (counts.sum() + 32)
    assert manifest["unigram"]["train_bits_per_token"] == pytest.approx(
        -(counts * np.log2(p)).sum() / counts.sum()
    )
    unigram_nats = manifest["unigram"]["valid_bits_per_token"] * math.log(2)
    assert unigram_nats > 2.5  # log(32) = 3.47 if the chain visited every state equally often

    result = train(
        tmp_path / "data", tmp_path / "run", model="tiny", block_size=64, batch_size=8, max_steps=80,
        warmup_steps=5, learning_rate=4e-3, eval_interval=80, save_interval=80, log_interval=40,
    )  # fmt: skip
    val = result.evaluation["val_nats_per_token"]
    assert val < 0.35 * unigram_nats  # the true conditional entropy is log 2 = 0.69 nats
    assert val > math.log(2) - 0.05  # and no model can beat it (on average) by much
    seconds = manifest["splits"]["valid"]["audio_seconds"]
    tokens = manifest["splits"]["valid"]["code_tokens"]
    assert result.evaluation["val_tokens"] == tokens  # every validation code token is scored, once
    assert result.evaluation["val_bits_per_second"] == pytest.approx(val * tokens / seconds / math.log(2))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [40, 80]
    assert all(r["tokens_per_second"] > 0 for r in rows if "loss" in r)


def test_resume_gives_bit_identical_losses_and_weights(tmp_path):
    make_data(tmp_path / "data", markov_utterances(n_codebooks=2, count=20, frames=80), pattern="delay")
    config = TrainConfig(
        model="tiny", block_size=32, batch_size=4, grad_accum=2, max_steps=12, warmup_steps=3, log_interval=1,
        eval_interval=100, save_interval=100, model_overrides={"dropout": 0.1},
    )  # fmt: skip  # dropout: the RNG state must be restored too
    straight = train(tmp_path / "data", tmp_path / "a", config)
    first = train(tmp_path / "data", tmp_path / "b", config, stop_after=5)
    assert first.step == 5
    second = train(tmp_path / "data", tmp_path / "b", config)
    assert len(straight.losses) == 12 and first.losses + second.losses == straight.losses
    model_a, step_a = load_model(tmp_path / "a")
    model_b, step_b = load_model(tmp_path / "b")
    assert step_a == step_b == 12
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    rows = {p: (tmp_path / p / "metrics.jsonl").read_text() for p in "ab"}
    assert [json.loads(r)["loss"] for r in rows["a"].splitlines() if "loss" in r] == straight.losses
    assert [json.loads(r)["loss"] for r in rows["b"].splitlines() if "loss" in r] == straight.losses

    with pytest.raises(SlmtokError, match="learning_rate"):
        train(tmp_path / "data", tmp_path / "b", config, learning_rate=0.5)
    with pytest.raises(SlmtokError, match="already holds a run"):
        train(tmp_path / "data", tmp_path / "b", config, resume=False)


def test_learning_rate_schedule():
    config = TrainConfig(learning_rate=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    lrs = [learning_rate(s, config) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.55) and all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert learning_rate(110, config) == pytest.approx(0.1)


def test_shards_round_trip_and_dtype(tmp_path):
    big = (70000, 3)  # a flattened vocabulary over 65536 ids needs uint32
    g = torch.Generator().manual_seed(1)
    utterances = [
        Utterance(f"u{i}", torch.stack([torch.randint(0, s, (n,), generator=g) for s in big]), n / 50)
        for i, n in enumerate([5, 0, 9, 13, 2, 30])
    ]
    manifest = make_data(
        tmp_path / "d", utterances, pattern="flatten", sizes=big, valid_fraction=0.34, shard_bytes=200
    )
    assert manifest["dtype"] == "uint32"
    assert len(manifest["splits"]["train"]["shards"]) > 1  # rolled over at 200 bytes
    data = TokenData(tmp_path / "d")
    by_name = {u.name: u for u in utterances}
    seen = set()
    for split in ("train", "valid"):
        stream = data.split(split)
        index = (tmp_path / "d" / f"{split}.tsv").read_text().splitlines()[1:]
        for line in index:
            name, shard, start, steps, frames, _ = line.split("\t")
            raw = torch.from_numpy(
                np.asarray(stream.shards[int(shard)][int(start) : int(start) + int(steps)], dtype=np.int64)
            )
            assert torch.equal(data.pattern.decode(raw), by_name[name].codes)
            seen.add(name)
    assert seen == {u.name for u in utterances if u.codes.shape[1]}  # the empty utterance is skipped
    assert manifest["splits"]["valid"]["utterances"] == 2
    with pytest.raises(OutputError, match="already holds"):
        make_data(tmp_path / "d", utterances, sizes=big)


def test_split_is_by_utterance_and_stable():
    names = [f"n{i}" for i in range(200)]
    held = split_names(names, 0.1, seed=3)
    assert len(held) == 20 and held == split_names(list(reversed(names)), 0.1, seed=3)
    assert held != split_names(names, 0.1, seed=4)
    assert len(split_names(names[:3], 0.01)) == 1 and split_names(names[:1], 0.5) == set()


WORKER = """
import sys, torch
torch.set_num_threads(1)
from slmtok.lm.training import train
train(sys.argv[1], sys.argv[2], model="tiny", block_size=32, batch_size=4, grad_accum=1, max_steps=4,
      warmup_steps=2, log_interval=1, eval_interval=100, save_interval=100, device="cpu")
"""


@pytest.mark.slow  # ~35 s on the shared 2-core box: three Python processes import torch
def test_ddp_with_two_processes_matches_gradient_accumulation(tmp_path):
    """torchrun, 2 CPU processes (gloo), 1 micro-batch each == 1 process, 2 micro-batches: same data,
    same averaged gradients, so the same losses up to float summation order."""
    make_data(tmp_path / "data", markov_utterances(count=12, frames=60), pattern="parallel")
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, str(script), str(tmp_path / "data"), str(tmp_path / "ddp")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ddp = [json.loads(r) for r in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    single = train(
        tmp_path / "data", tmp_path / "one", model="tiny", block_size=32, batch_size=4, grad_accum=2, max_steps=4,
        warmup_steps=2, log_interval=1, eval_interval=100, save_interval=100, device="cpu",
    )  # fmt: skip
    ddp_losses = [r["loss"] for r in ddp if "loss" in r]
    assert ddp_losses == pytest.approx(single.losses, rel=1e-5)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ddp" / "checkpoint.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["info"])["world_size"] == 2


def test_library_functions_are_not_hidden_by_their_modules():
    import slmtok.lm
    from slmtok.lm import data, generation, training

    assert slmtok.lm.train is training.train and slmtok.lm.generate is generation.generate
    assert slmtok.lm.prepare is data.prepare


# ------------------------------------------------------------------------ durability of run folders
DURABLE = dict(
    model="tiny", block_size=32, batch_size=2, max_steps=6, warmup_steps=2, log_interval=1,
    eval_interval=100, eval_steps=32, save_interval=3, device="cpu",
)  # fmt: skip


@pytest.fixture
def small_data(tmp_path):
    make_data(tmp_path / "data", markov_utterances(count=8, frames=60), pattern="parallel")
    return tmp_path / "data"


def file_tensors(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, read with the safetensors package itself."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118


def assert_model_is_checkpoint(run) -> None:
    model, meta = file_tensors(run / "model.safetensors")
    checkpoint, cmeta = file_tensors(run / "checkpoint.safetensors")
    assert meta["step"] == cmeta["step"]
    assert sorted(model) == sorted(k[6:] for k in checkpoint if k.startswith("model."))
    for name, value in model.items():
        assert torch.equal(value, checkpoint[f"model.{name}"]), name


@pytest.mark.parametrize("left", ["missing", "stale"])
def test_kill_between_final_checkpoint_and_model_is_repaired(small_data, tmp_path, monkeypatch, left):
    """Killed after the last checkpoint but before the model file (simulated by failing ``save_model``
    at the last step): the rerun rewrites ``model.safetensors`` from the checkpoint instead of
    reporting "trained to step 6" over a missing or step-3 model."""
    from slmtok.lm import checkpoint

    real = checkpoint.save_model

    def dies_at_the_end(run, model, step):
        if step == DURABLE["max_steps"]:
            if left == "missing":
                (run / "model.safetensors").unlink()
            raise SystemExit("killed")
        real(run, model, step)

    monkeypatch.setattr(checkpoint, "save_model", dies_at_the_end)
    with pytest.raises(SystemExit):
        train(small_data, tmp_path / "run", **DURABLE)
    monkeypatch.setattr(checkpoint, "save_model", real)
    assert file_tensors(tmp_path / "run" / "checkpoint.safetensors")[1]["step"] == "6"
    assert (tmp_path / "run" / "model.safetensors").exists() == (left == "stale")
    result = train(small_data, tmp_path / "run", **DURABLE)
    assert result.step == 6
    assert_model_is_checkpoint(tmp_path / "run")
    assert load_model(tmp_path / "run")[1] == 6


def test_metrics_symlink_is_refused(small_data, tmp_path):
    """A symlink planted at RUN/metrics.jsonl is refused with one line; its target is not written."""
    victim = tmp_path / "victim.txt"
    victim.write_text('{"keep": "me"}\n')
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(OutputError, match="symlink") as caught:
        train(small_data, tmp_path / "run", **DURABLE)
    assert "\n" not in str(caught.value)
    assert victim.read_text() == '{"keep": "me"}\n'


def test_torn_last_metrics_row_does_not_block_resume(small_data, tmp_path):
    """A kill mid-row leaves a torn last line in metrics.jsonl: the resumed run drops it and writes the
    same rows as a run that never stopped (reference: that uninterrupted run)."""
    straight = train(small_data, tmp_path / "a", **DURABLE)
    train(small_data, tmp_path / "b", **DURABLE, stop_after=3)
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 2.3')
    train(small_data, tmp_path / "b", **DURABLE)
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows if "loss" in r] == straight.losses
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]


def rewrite_info(path, **changes) -> None:
    """Edit the ``info`` JSON in a checkpoint's metadata (as another environment would have written)."""
    from safetensors.torch import save_file

    tensors, meta = file_tensors(path)
    meta["info"] = json.dumps({**json.loads(meta["info"]), **changes})
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"world_size": 2}, r"written by 2 process\(es\), this run has 1"),
        ({"device_type": "cuda", "precision": "bf16-autocast"}, "trained on cuda in bf16-autocast, this run is on cpu in fp32"),
    ],
)  # fmt: skip
def test_resume_refuses_another_world_size_or_device(small_data, tmp_path, changes, message):
    train(small_data, tmp_path / "run", **DURABLE, stop_after=3)
    rewrite_info(tmp_path / "run" / "checkpoint.safetensors", **changes)
    with pytest.raises(SlmtokError, match=message) as caught:
        train(small_data, tmp_path / "run", **DURABLE)
    assert "\n" not in str(caught.value)


def test_each_rank_gets_its_own_rng_state_back(tmp_path):
    """Rank r's generator state is saved and restored for rank r (reference: torch's own generators,
    advanced differently per rank)."""
    from slmtok.lm.checkpoint import load_checkpoint, save_checkpoint
    from slmtok.lm.model import ModelConfig, SpeechLM

    model = SpeechLM(ModelConfig.preset("tiny").with_vocab((8,)))
    optimizer = torch.optim.AdamW(model.parameters())
    states = []
    for rank in range(3):
        torch.manual_seed(100 + rank)
        states.append({"torch": torch.get_rng_state()})
    tmp_path.mkdir(exist_ok=True)
    save_checkpoint(tmp_path, model, optimizer, 1, {"world_size": 3}, states)
    for rank in (2, 0, 1):
        torch.manual_seed(0)
        load_checkpoint(tmp_path, model, optimizer, rank=rank)
        expected = torch.Generator().manual_seed(100 + rank)
        assert torch.equal(torch.rand(5), torch.rand(5, generator=expected)), rank


def test_no_host_sync_per_step(small_data, tmp_path, monkeypatch):
    """Training steps read nothing back from the device: the number of tensor-to-Python conversions made
    by slmtok's code does not grow with the number of steps between log lines (on a GPU each one is a
    host sync). Conversions inside torch (e.g. AdamW's CPU step counter) are not counted."""
    import os as _os

    package = _os.path.dirname(_os.path.dirname(__import__("slmtok").__file__))
    counts = {"n": 0}

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(package + _os.sep + "slmtok"):
                counts["n"] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    seen = []
    for steps in (4, 12):
        counts["n"] = 0
        options = {**DURABLE, "max_steps": steps, "log_interval": 100, "save_interval": 100}
        train(small_data, tmp_path / f"run{steps}", **options)
        seen.append(counts["n"])
    assert seen[0] == seen[1], f"conversions grow with steps: {seen}"


def test_orphaned_temps_removed_and_run_locked(small_data, tmp_path):
    """A temporary checkpoint left by a killed writer is removed by the next run; while another process
    holds the run folder, a second ``train`` is refused with one line."""
    from slmtok.atomic import temp_name
    from slmtok.runlock import RunLock, RunLockedError

    run = tmp_path / "run"
    train(small_data, run, **DURABLE, stop_after=3)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = run / temp_name("checkpoint.safetensors").replace(
        f"-{__import__('os').getpid()}.", f"-{dead.pid}."
    )
    orphan.write_bytes(b"half a checkpoint")
    with RunLock(run, "lm train"), pytest.raises(RunLockedError, match="another lm train run"):
        train(small_data, run, **DURABLE)
    assert orphan.exists()
    train(small_data, run, **DURABLE)
    assert not orphan.exists()
    assert_model_is_checkpoint(run)


def test_prepare_removes_temporaries_of_a_killed_prepare(tmp_path):
    """A killed ``lm prepare`` leaves a temporary shard (its writer's PID is gone): the rerun removes it."""
    import os

    from slmtok.atomic import temp_name

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "data").mkdir()
    orphan = tmp_path / "data" / temp_name("train-00000.bin").replace(f"-{os.getpid()}.", f"-{dead.pid}.")
    orphan.write_bytes(b"half a shard")
    make_data(tmp_path / "data", markov_utterances(count=4, frames=40))
    assert not orphan.exists()
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]
