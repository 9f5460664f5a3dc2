"""SIGKILL proof, CI-sized: ``slmtok encode``, ``encode-corpus``, ``lm train`` and ``bench`` are each killed
twice at random moments (SIGKILL to the whole process group) and rerun; the outputs must equal an
uninterrupted run's: nothing lost, nothing twice, no temporary file left, the LM's model file equal to its
checkpoint (and both equal to the uninterrupted run's, bit for bit).

The reference is the uninterrupted run of the same command; outputs are read with the ``safetensors``
package and ``json`` directly, not with slmtok's readers. The harness is ``benchmarks/kill_resume.py``
(run it with ``--kills N`` for more kills)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_resume.py"


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("slmtok_kill_resume_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def inputs(harness, tmp_path_factory):
    work = tmp_path_factory.mktemp("kill")
    audio, data = harness.make_inputs(work, files=4)
    return work, harness.scenarios(audio, data)


@pytest.mark.parametrize("command", ["encode", "encode-corpus", "lm-train", "bench"])
def test_sigkill_then_rerun_loses_and_duplicates_nothing(harness, inputs, command):
    import random

    work, table = inputs
    counts = harness.run_command(table[command], work, kills=2, per_trial=2, rng=random.Random(command))
    assert counts.kills == 2, counts  # the kills happened (not after the process had finished)
    assert counts.reruns == counts.trials == 1 and counts.failed_reruns == 0, counts.notes
    assert (counts.lost, counts.duplicated, counts.mismatched) == (0, 0, 0), counts
    assert counts.orphaned_temps == 0, counts
    assert counts.model_ne_checkpoint == 0, counts


KILLED_AT_FINAL_SAVE = """
import os, sys, time
from slmtok.lm import checkpoint

real = checkpoint.save_model

def slow_at_the_end(run, model, step):
    if step == int(os.environ["STEPS"]):
        print("checkpoint written, model next", flush=True)
        time.sleep(120)  # SIGKILL arrives here
    real(run, model, step)

checkpoint.save_model = slow_at_the_end
from slmtok.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_between_final_checkpoint_and_model(harness, inputs, tmp_path):
    """A real SIGKILL after the last checkpoint is written and before the model file is: the rerun of
    ``slmtok lm train`` exits 0 and leaves ``model.safetensors`` equal to the checkpoint's weights (the
    old code printed "trained to step N" over the model of the previous save)."""
    import os
    import signal
    import subprocess

    work, table = inputs
    argv = table["lm-train"].argv(tmp_path / "run")
    steps = argv[argv.index("--steps") + 1]
    script = tmp_path / "killed.py"
    script.write_text(KILLED_AT_FINAL_SAVE)
    child = subprocess.Popen(
        [sys.executable, str(script), *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "STEPS": steps},
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "checkpoint written, model next"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    model, meta = harness.tensors(tmp_path / "run" / "model.safetensors")
    checkpoint, cmeta = harness.tensors(tmp_path / "run" / "checkpoint.safetensors")
    assert cmeta["step"] == steps and meta["step"] != steps  # the kill left the model one save behind
    done = subprocess.run([sys.executable, "-m", "slmtok.cli.main", *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"trained to step {steps}" in done.stdout
    model, meta = harness.tensors(tmp_path / "run" / "model.safetensors")
    assert meta["step"] == steps
    for name, value in model.items():
        assert torch.equal(value, checkpoint[f"model.{name}"]), name


def test_encode_removes_temporaries_of_a_killed_encode(harness, inputs, tmp_path):
    """``slmtok encode`` removes the temporary token files a killed run left beside its planned outputs
    (writer PID gone), and leaves other files alone."""
    import os
    import subprocess

    from slmtok.atomic import temp_name

    work, table = inputs
    audio = work / "audio"
    first = sorted(audio.glob("*.wav"))[0]
    out = tmp_path / "tokens"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = out / temp_name(f"{first.stem}.slmtok").replace(f"-{os.getpid()}.", f"-{dead.pid}.")
    orphan.write_bytes(b"half a token file")
    (out / "notes.txt").write_text("mine")
    assert harness.run_in_process(["encode", str(audio), "-o", str(out), "-t", "mel-rvq"]) == 0
    assert not orphan.exists() and (out / "notes.txt").exists()
    assert not harness.temps(out)
