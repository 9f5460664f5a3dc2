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
