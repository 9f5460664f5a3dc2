"""Markdown rendering of bench results: one table per subset, unavailable tokenizers with reasons."""

from __future__ import annotations

from typing import Any

from slmtok.leaderboard.results import METRIC_BY_KEY, ORIGINAL, Metric

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
