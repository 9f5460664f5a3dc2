"""Markdown rendering of bench results: one table per subset, unavailable tokenizers with reasons; the
SLM suite's results as one table per factor (``slm_markdown``)."""

from __future__ import annotations

from typing import Any

from slmtok.leaderboard.results import INVARIANCE_VARIANTS, METRIC_BY_KEY, ORIGINAL, Metric

#: columns of the Markdown tables (those with no value in any row are dropped)
COLUMNS = (
    "bitrate",
    "tokens_per_second",
    "entropy_bitrate",
    "pesq_wb",
    "stoi",
    "estoi",
    "si_sdr",
    "log_mel_distance",
    "mcd",
    "f0_rmse_cents",
    "vuv_error",
    "wer",
    "speaker_similarity",
    "dnsmos_ovrl",
    "visqol",
    "encode_rtf",
    "decode_rtf",
)


def format_value(metric: Metric, estimate: dict[str, Any] | None, ci: bool = True) -> str:
    """``value`` in display units, with ``±`` the larger half of the 95 % interval when it has one."""
    if not estimate or estimate.get("value") is None:
        return "–"
    value = estimate["value"] * metric.scale
    text = f"{value:.{metric.digits}f}"
    low, high = estimate.get("low"), estimate.get("high")
    if ci and low is not None and high is not None and estimate.get("n", 0) > 1:
        half = max(value - low * metric.scale, high * metric.scale - value)
        if round(half, metric.digits) > 0:
            text += f" ±{half:.{metric.digits}f}"
    return text


def subsets_of(summary: dict[str, Any]) -> list[str]:
    """Subsets in the corpus order, then ``"all"`` when there are several."""
    subsets = list(summary.get("corpus", {}).get("subsets", []))
    return subsets + (["all"] if len(subsets) > 1 else [])


def table_rows(summary: dict[str, Any], subset: str) -> list[dict[str, Any]]:
    """Aggregates of one subset: the original first, then the tokenizers in bench order."""
    order = [t["key"] for t in summary.get("tokenizers", [])]
    rows = [a for a in summary.get("aggregates", []) if a["subset"] == subset]
    return sorted(rows, key=lambda a: order.index(a["tokenizer"]) if a["tokenizer"] in order else len(order))


def files_cell(row: dict[str, Any]) -> str:
    """``"ok/total"`` files of an aggregate (``"3/3"``; ``"0/3"`` when every file failed)."""
    return f"{row['files']}/{row['files'] + row.get('failed', 0)}"


def coverage(rows: list[dict[str, Any]], key: str) -> int:
    """The most files any row's ``key`` metric covers (its ``n``); 0 when no row has it."""
    return max((int(r["metrics"][key].get("n") or 0) for r in rows if key in r["metrics"]), default=0)


def partial(rows: list[dict[str, Any]], row: dict[str, Any], key: str) -> bool:
    """Whether ``row``'s ``key`` metric covers fewer files than another row's (so it is not comparable);
    never for a per-tokenizer constant (nominal bitrate, parameters)."""
    est = row["metrics"].get(key)
    return (
        METRIC_BY_KEY[key].how != "card" and est is not None and int(est.get("n") or 0) < coverage(rows, key)
    )


def failures(summary: dict[str, Any]) -> list[tuple[str, int, int, dict[str, list[str]]]]:
    """Tokenizers with failed files: ``(key, n ok, n failed, {reason: [file ids]})``, in bench order."""
    out = []
    for agg in table_rows(summary, "all"):
        if agg.get("failed"):
            reasons: dict[str, list[str]] = {}
            for e in agg.get("errors", []):
                reasons.setdefault(e["error"], []).append(e["file"])
            out.append((agg["tokenizer"], agg["files"], agg["failed"], reasons))
    return out


def kind_of(summary: dict[str, Any], key: str) -> str:
    for t in summary.get("tokenizers", []):
        if t["key"] == key:
            return t.get("kind", "")
    return ""


def markdown_table(summary: dict[str, Any], subset: str, columns: tuple[str, ...] = COLUMNS) -> str:
    """One subset's table: tokenizer, kind, files scored / files, then every column that has a value.

    A value that covers fewer files than the same column in another row is marked ``(n=N)``."""
    rows = table_rows(summary, subset)
    metrics = [METRIC_BY_KEY[c] for c in columns if any(c in r["metrics"] for r in rows)]
    better = {"higher": " ↑", "lower": " ↓"}
    head = ["tokenizer", "kind", "files ok", *(f"{m.label}{better.get(m.better, '')}" for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = f"*{r['tokenizer']}*" if r["tokenizer"] == ORIGINAL else r["tokenizer"]
        cells = [name, kind_of(summary, r["tokenizer"]), files_cell(r)]
        for m in metrics:
            text = format_value(m, r["metrics"].get(m.key))
            if partial(rows, r, m.key):
                text += f" (n={r['metrics'][m.key].get('n')})"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_tables(summary: dict[str, Any]) -> str:
    """The whole Markdown report: a table per subset, unavailable tokenizers, metric back-ends, machine."""
    env = summary.get("environment", {})
    corpus = summary.get("corpus", {})
    out = []
    for subset in subsets_of(summary):
        rows = table_rows(summary, subset)
        if not rows:
            continue
        files = max((r["files"] + r.get("failed", 0) for r in rows), default=0)
        seconds = max((r["seconds"] for r in rows), default=0.0)
        out.append(f"### {subset}: {files} files, {seconds / 60:.1f} min\n\n")
        out.append(markdown_table(summary, subset) + "\n")
    failed = failures(summary)
    if failed:
        out.append("Failed files (not in the aggregates above):\n\n")
        for key, ok, n_failed, reasons in failed:
            out.append(f"- `{key}`: {ok} ok / {n_failed} failed\n")
            out.extend(
                f"  - {reason} ({len(files)} file{'s' * (len(files) > 1)}: {', '.join(files)})\n"
                for reason, files in reasons.items()
            )
        out.append("\n")
    missing = [t for t in summary.get("tokenizers", []) if t.get("status") != "ok"]
    if missing:
        out.append("Not run (cannot load here):\n\n")
        out.extend(f"- `{t['key']}`: {t.get('reason', 'unknown reason')}\n" for t in missing)
        out.append("\n")
    off = [(g, b) for g, b in summary.get("backends", {}).items() if not b.get("available")]
    if off:
        out.append("Metrics not computed:\n\n")
        out.extend(f"- {g}: {b.get('reason', '')}\n" for g, b in off)
        out.append("\n")
    out.append(
        f"Mean ±95 % bootstrap interval over the files scored (WER, tokens/s and RTF are ratios of sums); "
        f"(n=N): the value covers only N files. F0 RMSE and correlation use frames voiced in both "
        f"signals; VDE is the fraction of frames whose voicing differs. "
        f"Metrics at {summary.get('settings', {}).get('eval_rate', 16000)} Hz against the original; "
        f"*original* rows score the unprocessed audio. Device: {env.get('device', '?')}; "
        f"{env.get('created', '')}; corpus fingerprint {corpus.get('fingerprint', '')[:12]}.\n"
    )
    return "".join(out)


#: the SLM suite's tables: (title, columns)
SLM_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Profile", ("bitrate", "score_content", "score_length", "score_paralinguistics", "score_lm")),
    ("A content", ("pnmi", "pnmi_shuffled", "phone_purity", "cluster_purity", "abx_within", "abx_across")),
    (
        "B length",
        ("unit_rate", "dedup_rate", "bpe_rate", "unigram_entropy", "entropy_rate", "bigram_entropy_rate"),
    ),
    ("C paralinguistics", ("speaker_id_accuracy", "invariance", *INVARIANCE_VARIANTS.values())),
    ("LM fitness", ("lexical_accuracy", "syntactic_accuracy", "acoustic_accuracy", "valid_bits_per_second")),
)
SLM_NOTE = (
    "Synthetic probes (espeak-ng speech with exact phone alignments): these are not ZeroSpeech scores. "
    "Measures A-C use codebook 0 of multi-codebook tokenizers. Profile scores run from 0 (worst) to 1 "
    "(best): A = mean of PNMI above its shuffled floor ((PNMI - floor)/(1 - floor)), 1-2xABX within and "
    "1-2xABX across; B = 1 - log10(units/s / phones/s)/3; "
    "C = mean of 1-(speaker ID - chance)/(1 - chance) and 1 - invariance distance; LM = mean over pair "
    "sets of 2x(accuracy - 0.5); each clipped to [0, 1]. *text-ceiling*: the phone alignment itself "
    "(A, C: one phone label per 10 ms frame; B, LM: the phone strings)."
)


def slm_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The SLM suite's aggregates, in run order (the text ceiling last)."""
    return table_rows(summary, summary.get("corpus", {}).get("subsets", ["synthetic"])[0])


def stages_cell(row: dict[str, Any]) -> str:
    """``"ok/total"`` stages of an SLM aggregate."""
    return f"{row['files']}/{row['files'] + row.get('failed', 0)}"


def slm_table(summary: dict[str, Any], columns: tuple[str, ...]) -> str:
    """One factor's table of the SLM suite: tokenizer, kind, then every column that has a value."""
    rows = slm_rows(summary)
    metrics = [METRIC_BY_KEY[c] for c in columns if any(c in r["metrics"] for r in rows)]
    if not metrics:
        return ""
    better = {"higher": " ↑", "lower": " ↓"}
    head = ["tokenizer", "kind", *(f"{m.label}{better.get(m.better, '')}" for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["tokenizer"], kind_of(summary, r["tokenizer"])]
        cells += [format_value(m, r["metrics"].get(m.key)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def speaker_chance(summary: dict[str, Any]) -> float | None:
    """The chance level of the speaker-ID classifier (the same for every tokenizer: same items)."""
    for r in slm_rows(summary):
        chance = r["metrics"].get("speaker_id_accuracy", {}).get("chance")
        if chance is not None:
            return float(chance)
    return None


def slm_markdown(summary: dict[str, Any]) -> str:
    """The SLM suite's Markdown report: a table per factor, failed stages, tokenizers not run, notes."""
    env, probes = summary.get("environment", {}), summary.get("probes", {})
    seconds = summary.get("corpus", {}).get("seconds", {})
    out = []
    for title, columns in SLM_TABLES:
        table = slm_table(summary, columns)
        if table:
            out.append(f"#### {title}\n\n{table}\n")
    failed = [r for r in slm_rows(summary) if r.get("failed")]
    if failed:
        out.append("Failed stages (left out above):\n\n")
        out.extend(f"- `{r['tokenizer']}` {e['file']}: {e['error']}\n" for r in failed for e in r["errors"])
        out.append("\n")
    gaps = [
        (r["tokenizer"], k, why) for r in slm_rows(summary) for k, why in r.get("not_measured", {}).items()
    ]
    if gaps:
        out.append("Not measured:\n\n")
        out.extend(
            f"- `{t}` {METRIC_BY_KEY[k].label if k in METRIC_BY_KEY else k}: {why}\n" for t, k, why in gaps
        )
        out.append("\n")
    missing = [t for t in summary.get("tokenizers", []) if t.get("status") != "ok"]
    if missing:
        out.append("Not run (cannot load here):\n\n")
        out.extend(f"- `{t['key']}`: {t.get('reason', 'unknown reason')}\n" for t in missing)
        out.append("\n")
    chance = speaker_chance(summary)
    sets = probes.get("sets", {})
    out.append(
        f"{SLM_NOTE} Speaker-ID chance: {chance * 100:.1f} %. " if chance is not None else f"{SLM_NOTE} "
    )
    out.append(
        f"Probe set: seed {probes.get('seed')}, {probes.get('voices')} voices, "
        + ", ".join(f"{k} {v}" for k, v in sets.items())
        + f" items; content {sum(seconds.values()) / 60:.1f} min at {probes.get('phone_rate', 0):.1f} "
        f"phones/s; fingerprint {str(probes.get('fingerprint', ''))[:12]}; espeak-ng "
        f"{probes.get('espeak_ng') or '?'}. Mean ±95 % interval where the measure has one. "
        f"Device: {env.get('device', '?')}; {env.get('created', '')}.\n"
    )
    return "".join(out)


def stage_minutes(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Compute minutes per tokenizer of an SLM run (its rows' stage times summed, in run order)."""
    out: dict[str, float] = {}
    for r in rows:
        out[r["tokenizer"]] = out.get(r["tokenizer"], 0.0) + float(r.get("compute_seconds") or 0.0) / 60
    return out


def suite_report(summary: dict[str, Any], rows: list[dict[str, Any]], run: dict[str, Any]) -> str:
    """The default SLM suite's Markdown (``benchmarks/slm_suite.py``): the command, its wall time and
    machine, the cost per tokenizer, then ``slm_markdown``. ``run``: ``{"command", "wall_seconds",
    "machine"}`` as the benchmark recorded them."""
    minutes = ", ".join(f"{k} {v:.1f}" for k, v in stage_minutes(rows).items())
    bpe = (
        f"BPE tokens/s: `{run['bpe_command']}` ({run.get('bpe_seconds', 0) / 60:.1f} min).\n\n"
        if run.get("bpe_command")
        else ""
    )
    return (
        f"`{run['command']}`: {run['wall_seconds'] / 60:.1f} min wall on {run['machine']} "
        f"(minutes per row: {minutes}).\n\n" + bpe + slm_markdown(summary)
    )
