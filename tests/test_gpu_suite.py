"""``benchmarks/gpu_suite.py`` end to end on the CPU at smoke sizes (the CI guard that keeps the GPU suite
from rotting between GPU draws): every section runs, says it ran on the CPU, carries the fields its
target needs, and never claims a GPU figure. The references inside the suite are the upstream packages
(scikit-learn ``predict``, the codec packages per file), so the agreement figures checked here are real."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"
SECTIONS = ("env", "gpu_tests", "P1", "P2", "P6", "P5", "P8", "P3")


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SUITE), *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu-results")
    done = _run("--device", "cpu", "--smoke", "--no-ray", "--out", str(out), "--work", str(out / "work"))
    assert done.returncode == 0, done.stderr[-3000:]
    stamped = sorted(out.glob("cpu-smoke-*.json"))
    assert len(stamped) == 1 and (out / "latest-cpu-smoke.json").read_text() == stamped[0].read_text()
    return json.loads(stamped[0].read_text())


def test_every_section_ran_on_the_cpu_and_claims_no_gpu_figure(smoke):
    assert smoke["device"] == "cpu" and smoke["smoke"] is True and smoke["complete"] is True
    assert smoke["label"].startswith("CPU SMOKE RUN")
    assert set(smoke["sections"]) == set(SECTIONS)
    for name, record in smoke["sections"].items():
        assert record["status"] == "ran", (name, record.get("error"), record.get("traceback"))
        assert record["device"] == "cpu", name
        if name.startswith("P"):
            assert record["device_name"].startswith("cpu"), name
            assert record["target"]["met"] is None and "CPU" in record["target"]["not_judged"], name
    assert smoke["skipped_for_budget"] == []
    assert {row["met"] for name, row in smoke["summary"].items() if name.startswith("P")} == {None}


def test_environment_section_reports_torch_faiss_and_the_one_process_check(smoke):
    env = smoke["sections"]["env"]
    assert env["torch"] == torch.__version__ and env["torch_cuda"] == torch.version.cuda
    assert env["cuda_available"] is False
    assert {"version", "gpu_build", "num_gpus"} <= set(env["faiss"])
    assert env["coexist"]["tested"] is False and "no CUDA" in env["coexist"]["why"]


def test_gpu_tests_are_collected_and_all_skip_without_cuda(smoke):
    tests = smoke["sections"]["gpu_tests"]
    assert tests["collected"] >= 10 and tests["skipped"] == tests["collected"]
    assert tests["passed"] == tests["failure"] == tests["error"] == 0
    assert all("CUDA" in case["message"] for case in tests["cases"])


def test_kmeans_sections_have_the_figures_their_targets_need(smoke):
    p1, p2 = smoke["sections"]["P1"], smoke["sections"]["P2"]
    assert p1["faiss_device"]["faiss_ran_on"] == "cpu"
    for key in ("speedup_vs_faiss_cpu", "speedup_vs_sklearn", "inertia_ratio_device_vs_sklearn"):
        assert p1[key] > 0, key
    assert p1["sklearn_recipe"]["source"].startswith("run in this suite")
    assert "GPU only" in p1["big_fit_device_only"]["skipped"]
    assert set(p1["target"]["values"]) >= {
        "speedup_vs_faiss_cpu",
        "speedup_vs_sklearn",
        "inertia_ratio_vs_sklearn",
    }
    assert p2["speedup_per_frame"] > 0
    assert p2["agreement_with_sklearn"] >= 0.9999  # reference: scikit-learn predict on the same frames


def test_codec_section_compares_every_codec_with_its_upstream_package(smoke):
    p3 = smoke["sections"]["P3"]
    assert p3["torch_threads"] == 1
    rows = {row["tokenizer"]: row for row in p3["codecs"]}
    assert set(rows) == {"encodec-24khz", "dac-16khz", "speechtokenizer", "snac-24khz"}, p3["not_measured"]
    for name, row in rows.items():
        assert row["speedup"] > 0 and row["frames"] > 0, name
        assert row["items_with_other_shape"] == 0, name
        assert row["slmtok_stack_batches"] is False, name  # CPU: exact mode
        assert row["frames_with_different_codes"] == 0, name  # smoke: one thread, codes equal upstream's
    assert "mimi" in p3["not_measured"]


def test_lm_hubert_and_corpus_sections(smoke):
    p5, p6, p8 = (smoke["sections"][k] for k in ("P5", "P6", "P8"))
    assert p5["tokens_per_second"] > 0 and p5["mfu"] is None and p5["flops_per_token"] > 0
    assert p5["trainer"]["dtype"] == "float32"
    layers = p6["variants"][0]["layers"]
    assert p6["variants"][0]["variant"] == "hubert-base" and set(layers) == {"layer_6", "layer_9", "layer_12"}
    assert all(row["x_real_time"] > 0 for row in layers.values())
    local = p8["runs"]["local"]
    assert local["encoded"] == p8["corpus"]["files"] and local["audio_hours_per_hour"] > 0
    assert local["gpu_utilisation"]["mean_percent"] is None
    assert local["gpu_utilisation"]["source"].startswith("not measured")
    assert "ray" in p8["not_measured"]


def test_budget_stops_new_sections_and_lists_them(tmp_path):
    done = _run(
        "--device", "cpu", "--smoke", "--budget-minutes", "0.001", "--out", str(tmp_path), timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "latest-cpu-smoke.json").read_text())
    assert result["sections"]["env"]["status"] == "ran"
    assert result["skipped_for_budget"] == list(SECTIONS[1:])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    done = _run("--device", "cuda", "--out", str(tmp_path), timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "gpu_suite: error: --device cuda but torch sees no CUDA device"
    ]
    assert not list(tmp_path.iterdir())


def _common():
    spec = importlib.util.spec_from_file_location(
        "gpu_suite_common", ROOT / "benchmarks" / "gpu" / "common.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_targets_are_judged_only_for_a_full_gpu_run(tmp_path):
    common = _common()
    checks = {"speedup": (60.0, lambda v: v >= 50), "agreement": (0.99999, lambda v: v >= 0.9999)}
    gpu = common.Context("cuda", common.Sizes(), False, tmp_path, ROOT)
    assert common.target(gpu, "t", checks)["met"] is True
    assert common.target(gpu, "t", {**checks, "speedup": (49.0, lambda v: v >= 50)})["met"] is False
    assert common.target(gpu, "t", {**checks, "speedup": (None, lambda v: v >= 50)})["met"] is False
    for ctx in (common.Context("cuda", common.Sizes.smoke(), True, tmp_path, ROOT),
                common.Context("cpu", common.Sizes(), False, tmp_path, ROOT)):  # fmt: skip
        assert common.target(ctx, "t", checks)["met"] is None
