"""The README is the front door: its commands run, its table matches the registry, CI runs its test
command, and its numbers are the latest benchmark results."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def block(tag: str) -> str:
    match = re.search(rf"<!-- readme-test: {tag} -->\s*```bash\n(.*?)\n```", README, re.S)
    assert match, f"README has no '{tag}' command block"
    return match.group(1)


def between(tag: str) -> str:
    match = re.search(rf"<!-- {tag}:start -->\n(.*?)<!-- {tag}:end -->", README, re.S)
    assert match, f"README has no {tag} section"
    return match.group(1)


def test_main_command_runs(tmp_path):
    """The install line is left out (the suite runs installed); the rest runs as written."""
    lines = [ln.split("#")[0].strip() for ln in block("main").splitlines()]
    commands = [ln.removeprefix("pip install . && ") for ln in lines if ln.startswith("pip install .")]
    assert len(commands) == 1 and commands[0].startswith("slmtok encode")
    subprocess.run(["bash", "-c", commands[0]], cwd=tmp_path, check=True, capture_output=True)
    info = sf.info(tmp_path / "speech.wav")
    assert info.samplerate == 16000 and info.duration > 1.0
    assert (tmp_path / "speech.slmtok").stat().st_size > 1000


def test_ci_runs_the_readme_test_command():
    command = block("tests").strip()
    assert "pytest" in command and "python -m pytest" not in command
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme-test: tests" in ci, ".ci/run must take its command from the README"


def test_tokenizer_table_is_generated_from_the_registry():
    from slmtok.cli.table import markdown_table, tokenizer_rows

    assert between("tokenizers") == markdown_table(tokenizer_rows()), (
        "README tokenizer table is stale: python -m slmtok.cli.readme"
    )


def test_benchmark_numbers_are_the_committed_results():
    results = (ROOT / "benchmarks" / "results" / "embedded_baselines.md").read_text()
    assert between("benchmark:embedded_baselines") == results, "README numbers differ from benchmarks/results"


def _results(name: str) -> dict:
    import json

    return json.loads((ROOT / "benchmarks" / "results" / name).read_text())


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_kmeans_figures_are_the_committed_results():
    """The README's k-means-with-CLI-defaults figures are those of kmeans_cli_defaults.json."""
    r = _results("kmeans_cli_defaults.json")
    readme = _flat(README)
    assert r["data"]["kind"] == "real speech" and r["k"] == 100
    expected = (
        f"fits in {r['slmtok']['seconds']:.1f} s what the fairseq scikit-learn recipe fits in "
        f"{r['sklearn']['seconds']:.1f} s ({r['speedup_vs_sklearn']:.1f}x), with "
        f"{-r['inertia_vs_sklearn_percent']:.2f} % lower inertia"
    )
    assert expected in readme
    assert f"{r['data']['frames']:,} frames" in readme and f"{r['data']['files']} Asterisk" in readme


def test_fuzz_and_kill_figures_are_the_committed_results():
    """The token-file fuzz counts and the SIGKILL counts in the README are those of their results files."""
    fuzz = _results("tokenfile_fuzz.json")
    readme = _flat(README)
    assert fuzz["anything_else"] == 0 and fuzz["tracebacks"] == 0
    assert (
        f"mutates real token files {fuzz['cases']:,} ways: {fuzz['one_line_errors']:,} one-line errors, "
        f"{fuzz['decoded']:,} decodes, 0 tracebacks" in readme
    )
    kill = _results("kill_resume.json")
    kills = {row["kills"] for row in kill["results"]}
    assert kill["all_clean"] and len(kills) == 1
    assert {row["command"] for row in kill["results"]} == {"encode", "encode-corpus", "lm-train", "bench"}
    for key in ("lost", "duplicated", "mismatched", "orphaned_temps", "model_ne_checkpoint", "failed_reruns"):
        assert all(row[key] == 0 for row in kill["results"]), key
    assert f"({kills.pop()} kills each" in readme and kill["command"].removeprefix("benchmarks/") in readme


def test_streaming_figures_are_the_committed_results():
    """The README's Mimi streaming figures are the 1-thread carried row (and the estimated recompute rows)
    of benchmarks/results/streaming.json."""
    import json

    rows = json.loads((ROOT / "benchmarks" / "results" / "streaming.json").read_text())["rows"]
    carried = next(r for r in rows if (r["tokenizer"], r["engine"], r["threads"]) == ("mimi", "carried", 1))
    readme = _flat(README)
    verdict = "keeps up" if carried["keeps_up"] else "does not keep up"
    assert f"Mimi carried {verdict} with real time on one core" in readme
    assert (
        f"median chunk latency {carried['latency_median_ms']:.0f} ms, p95 {carried['latency_p95_ms']:.0f} ms"
        in readme
    )
    assert f"{carried['cpu_real_time_factor']:.2f} CPU seconds per audio second" in readme
    for name, figure in (("mimi", "72 (Mimi)"), ("encodec-24khz", "67 (EnCodec)")):
        row = next(r for r in rows if (r["tokenizer"], r["engine"], r["threads"]) == (name, "recompute", 1))
        assert row["estimated"] and figure.startswith(f"{row['real_time_factor']:.0f} ") and figure in readme
