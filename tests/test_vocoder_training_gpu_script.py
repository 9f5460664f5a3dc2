"""benchmarks/gpu/vocoder_train_gpu.py end to end on the CPU at smoke sizes (one process, then torchrun)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu" / "vocoder_train_gpu.py"


@pytest.mark.slow  # ~60 s on the shared 2-core box: four Python processes import torch
def test_the_gpu_script_runs_on_the_cpu_at_smoke_sizes(tmp_path):
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] and set(report["runs"]) == {"tiny-fp32", "tiny-fp32-ddp"}
    for name, processes in (("tiny-fp32", 1), ("tiny-fp32-ddp", 2)):
        run = report["runs"][name]
        assert run["processes"] == processes and run["precision"] == "fp32" and run["steps_per_second"] > 0
        assert run["segments_per_second"] == pytest.approx(run["steps_per_second"] * 2)
