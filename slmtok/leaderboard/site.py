"""``slmtok leaderboard``: bench results -> ``leaderboard.md`` and a self-contained ``index.html``.

The page has no external resource: CSS and the sorting script are inline, the Pareto plots are inline
SVG (``slmtok.leaderboard.plots``), and the audio examples are embedded as base64 Ogg Vorbis. It opens
from ``file://`` in any browser.

Given the SLM suite's results too (``slmtok probes run``), the page adds the factor profile of every
tokenizer (A content, B length, C paralinguistics, LM fitness) as a bar chart and one sortable table of
its measures, beside each tokenizer's bitrate and resynthesis scores (matched by tokenizer key).
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from slmtok.atomic import atomic_path
from slmtok.errors import OutputError, SlmtokError
from slmtok.leaderboard.markdown import (
    SLM_NOTE,
    SLM_TABLES,
    coverage,
    failures,
    files_cell,
    format_value,
    kind_of,
    markdown_tables,
    partial,
    slm_markdown,
    slm_rows,
    speaker_chance,
    stages_cell,
    subsets_of,
    table_rows,
)
from slmtok.leaderboard.plots import FAMILY_COLOURS, Point, Profile, pareto_svg, profile_svg
from slmtok.leaderboard.profile import FACTORS
from slmtok.leaderboard.results import (
    METRIC_BY_KEY,
    METRICS,
    ORIGINAL,
    SUITE_SLM,
    read_results,
    suite_of,
)

#: resynthesis columns shown beside the SLM measures when both results are given
RESYNTHESIS_COLUMNS = ("pesq_wb", "stoi", "wer", "speaker_similarity")

#: (y metric, x metric) pairs plotted per subset when the y metric has data
PLOTS = (
    ("pesq_wb", "bitrate"),
    ("stoi", "bitrate"),
    ("wer", "bitrate"),
    ("stoi", "tokens_per_second"),
    ("wer", "tokens_per_second"),
    ("speaker_similarity", "tokens_per_second"),
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:100%;
padding:0 16px;color:#222;box-sizing:border-box}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:13px}
table.board{border-collapse:collapse;font-size:13px;margin:8px 0;white-space:nowrap}
.board th,.board td{border:1px solid #ddd;padding:3px 7px;text-align:right}
.board th{background:#f4f4f6;cursor:pointer;user-select:none;position:sticky;top:0}
.board th.sorted-asc::after{content:" \\25B2"}.board th.sorted-desc::after{content:" \\25BC"}
.board td:first-child,.board th:first-child,.board td:nth-child(2){text-align:left}
.board tr.reference td{color:#555;font-style:italic}.board td.best{font-weight:700;background:#eef8ee}
.wrap{overflow-x:auto}.plots{display:flex;flex-wrap:wrap;gap:12px}
svg.pareto{background:#fff;border:1px solid #e3e3e3;font-size:11px}
svg .frame{fill:none;stroke:#999}svg .grid{stroke:#eee}svg .front{fill:none;stroke:#444;stroke-dasharray:4 3}
svg .t{font-size:13px;font-weight:600}svg .lbl{font-size:10px;fill:#333}svg .err{stroke-width:1.5}
svg.profile{background:#fff;border:1px solid #e3e3e3;font-size:11px;max-width:100%;height:auto}
svg .val{font-size:9px;fill:#333}svg .na{fill:#999}.board th.group{text-align:center;cursor:default}
.audio td{vertical-align:middle;padding:2px 8px}.audio audio{height:30px;width:260px}
.fam{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}
.note{color:#555;font-size:12px;max-width:90ch}
.board td.partial{color:#777}.fail{color:#a22}
"""

JS = r"""
(function(){
  function key(td){var v=td.getAttribute('data-value');return v===null||v===''?null:parseFloat(v);}
  document.querySelectorAll('table.board').forEach(function(table){
    var ths=table.querySelectorAll('thead tr:last-child th');  // below any column-group row
    ths.forEach(function(th,col){
      th.addEventListener('click',function(){
        var asc=!th.classList.contains('sorted-asc');
        ths.forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
        th.classList.add(asc?'sorted-asc':'sorted-desc');
        var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(a,b){
          var x=a.cells[col],y=b.cells[col],kx=key(x),ky=key(y);
          if(kx===null&&ky===null){return x.textContent.localeCompare(y.textContent)*(asc?1:-1);}
          if(kx===null){return 1;} if(ky===null){return -1;}
          return (kx-ky)*(asc?1:-1);
        });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
    table.setAttribute('data-sortable','ready');
  });
  // index.html#sort=KEY or #sort=KEY:desc sorts every table by that column on load (shareable links)
  var m=/sort=([\w-]+)(?::(asc|desc))?/.exec(location.hash);
  if(m){document.querySelectorAll('table.board th[data-key="'+m[1]+'"]').forEach(function(th){
    th.click(); if(m[2]==='desc'){th.click();}
  });}
  document.body.setAttribute('data-ready',String(document.querySelectorAll('svg.pareto circle.pt').length));
  document.body.setAttribute('data-profile',String(document.querySelectorAll('svg.profile g.tok').length));
})();
"""


def _metric_columns(rows: list[dict[str, Any]]) -> list:
    return [m for m in METRICS if any(m.key in r["metrics"] for r in rows)]


def _best(rows: list[dict[str, Any]], metric) -> float | None:
    """The best value of ``metric`` among the tokenizers whose value covers the most files (at least two
    such tokenizers); a value over fewer files is never called best."""
    full = coverage(rows, metric.key)
    values = [
        r["metrics"][metric.key]["value"]
        for r in rows
        if r["tokenizer"] != ORIGINAL
        and metric.key in r["metrics"]
        and int(r["metrics"][metric.key].get("n") or 0) == full
    ]
    if not values or not metric.better or len(values) < 2:
        return None
    return max(values) if metric.better == "higher" else min(values)


def _table(summary: dict[str, Any], subset: str) -> str:
    rows = table_rows(summary, subset)
    metrics = _metric_columns(rows)
    arrows = {"higher": " ↑", "lower": " ↓"}
    head = "".join(
        f'<th data-key="{m.key}" title="{escape(m.unit)}">{escape(m.label)}{arrows.get(m.better, "")}</th>'
        for m in metrics
    )
    out = [
        f'<div class="wrap"><table class="board" id="table-{escape(subset)}" data-subset="{escape(subset)}">',
        f'<thead><tr><th data-key="tokenizer">tokenizer</th><th data-key="kind">kind</th>'
        f'<th data-key="files" title="files scored / files">files ok</th>{head}</tr></thead><tbody>',
    ]
    best = {m.key: _best(rows, m) for m in metrics}
    for r in rows:
        kind = kind_of(summary, r["tokenizer"])
        colour = FAMILY_COLOURS.get(kind, "#333")
        cls = ' class="reference"' if r["tokenizer"] == ORIGINAL else ""
        fail = ' class="fail"' if r.get("failed") else ""
        cells = [
            f"<td>{escape(r['tokenizer'])}</td>",
            f'<td><span class="fam" style="background:{colour}"></span>{escape(kind)}</td>',
            f'<td data-value="{r["files"]}"{fail}>{files_cell(r)}</td>',
        ]
        for m in metrics:
            est = r["metrics"].get(m.key)
            if est is None:
                cells.append('<td data-value="">–</td>')
                continue
            value = est["value"] * m.scale
            tip = f"{m.label} ({m.unit}); n={est.get('n')}"
            if est.get("low") is not None:
                tip += f"; 95% CI {est['low'] * m.scale:.4g} to {est['high'] * m.scale:.4g}"
            text = format_value(m, est)
            if partial(rows, r, m.key):
                mark, text = ' class="partial"', f"{text} (n={est.get('n')})"
            elif best[m.key] is not None and est["value"] == best[m.key]:
                mark = ' class="best"'
            else:
                mark = ""
            cells.append(f'<td data-value="{value:.10g}" title="{escape(tip)}"{mark}>{escape(text)}</td>')
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _plots(summary: dict[str, Any], subset: str) -> str:
    rows = [r for r in table_rows(summary, subset) if r["tokenizer"] != ORIGINAL]
    svgs = []
    for y_key, x_key in PLOTS:
        ym, xm = METRIC_BY_KEY[y_key], METRIC_BY_KEY[x_key]
        points = []
        for r in rows:
            y, x = r["metrics"].get(y_key), r["metrics"].get(x_key)
            if not y or not x:
                continue
            points.append(
                Point(
                    r["tokenizer"],
                    kind_of(summary, r["tokenizer"]),
                    x["value"] * xm.scale,
                    y["value"] * ym.scale,
                    None if y.get("low") is None else y["low"] * ym.scale,
                    None if y.get("high") is None else y["high"] * ym.scale,
                )
            )
        if len(points) < 1:
            continue
        svgs.append(
            pareto_svg(
                points,
                title=f"{ym.label} vs {xm.label} ({subset})",
                x_label=xm.label,
                y_label=ym.label,
                higher_is_better=ym.better != "lower",
                plot_id=f"plot-{subset}-{y_key}-{x_key}",
            )
        )
    return f'<div class="plots">{"".join(svgs)}</div>' if svgs else ""


def _audio(summary: dict[str, Any], rows: list[dict[str, Any]], folder: Path) -> str:
    examples: dict[str, list[dict[str, Any]]] = {}
    order = [t["key"] for t in summary.get("tokenizers", [])]
    for r in rows:
        if r.get("example") and (folder / r["example"]).is_file():
            examples.setdefault(r["file"], []).append(r)
    if not examples:
        return ""
    out = ["<h2>Audio examples</h2>"]
    for file_id, members in examples.items():
        members.sort(key=lambda r: order.index(r["tokenizer"]) if r["tokenizer"] in order else -1)
        out.append(f'<h3>{escape(file_id)}</h3><table class="audio">')
        for r in members:
            data = base64.b64encode((folder / r["example"]).read_bytes()).decode("ascii")
            text = f" — “{escape(r['hypothesis'])}”" if r.get("hypothesis") else ""
            out.append(
                f'<tr><td>{escape(r["tokenizer"])}</td><td><audio controls preload="none" '
                f'src="data:audio/ogg;base64,{data}"></audio></td><td class="note">{text}</td></tr>'
            )
        out.append("</table>")
    return "".join(out)


def render_html(
    summary: dict[str, Any] | None,
    rows: list[dict[str, Any]],
    folder: Path | None,
    *,
    title: str,
    audio: bool = True,
    slm: dict[str, Any] | None = None,
) -> str:
    """The whole page as one HTML string: a resynthesis bench's ``summary`` (its ``rows`` and results
    ``folder`` for the audio), and/or the SLM suite's summary ``slm`` (``summary`` may be the SLM one).
    Their aggregates are embedded as JSON: ``#results-data`` (the bench's) and ``#slm-data``."""
    if summary is not None and suite_of(summary) == SUITE_SLM:
        summary, slm = None, summary
    head = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>",
    ]
    body = _resynthesis_html(summary, rows, folder, audio) if summary is not None else []
    if slm is not None:
        heading = ['<h2 id="resynthesis">Resynthesis</h2>'] if body else []
        body = _slm_html(slm, summary) + heading + body
    data = [("results-data", summary), ("slm-data", slm)]
    scripts = [
        f'<script type="application/json" id="{name}">'
        + json.dumps(value.get("aggregates", [])).replace("</", "<\\/")
        + "</script>"
        for name, value in data
        if value is not None
    ]
    return "".join(head + body + scripts + [f"<script>{JS}</script></body></html>"])


def _resynthesis_html(
    summary: dict[str, Any], rows: list[dict[str, Any]], folder: Path | None, audio: bool
) -> list[str]:
    """The resynthesis bench's sections: a table and plots per subset, failures, back-ends, audio."""
    env, corpus = summary.get("environment", {}), summary.get("corpus", {})
    seconds = corpus.get("seconds", {})
    parts = [
        f'<p class="meta">{corpus.get("files", 0)} files in subsets '
        + ", ".join(f"{escape(s)} ({seconds.get(s, 0) / 60:.1f} min)" for s in corpus.get("subsets", []))
        + f"; metrics at {summary.get('settings', {}).get('eval_rate', 16000)} Hz against the original. "
        f"Device: {escape(str(env.get('device', '?')))}. Created {escape(str(env.get('created', '')))}; "
        f"slmtok {escape(str(env.get('packages', {}).get('slmtok', '?')))}.</p>",
    ]
    for subset in subsets_of(summary):
        if not table_rows(summary, subset):
            continue
        parts.append(f'<h2 id="subset-{escape(subset)}">{escape(subset)}</h2>')
        parts.append(_table(summary, subset))
        if subset != "all":
            parts.append(_plots(summary, subset))
    failed = failures(summary)
    if failed:
        parts.append('<h2>Failed files</h2><ul id="failed">')
        for key, ok, n_failed, reasons in failed:
            parts.append(f"<li><code>{escape(key)}</code>: {ok} ok / {n_failed} failed<ul>")
            parts.extend(
                f"<li>{escape(reason)} ({len(files)}: {escape(', '.join(files))})</li>"
                for reason, files in reasons.items()
            )
            parts.append("</ul></li>")
        parts.append("</ul>")
    missing = [t for t in summary.get("tokenizers", []) if t.get("status") != "ok"]
    if missing:
        parts.append('<h2>Not run</h2><ul id="unavailable">')
        parts.extend(
            f"<li><code>{escape(t['key'])}</code>: {escape(t.get('reason', ''))}</li>" for t in missing
        )
        parts.append("</ul>")
    backends = summary.get("backends", {})
    if backends:
        parts.append("<h2>Metric back-ends</h2><ul>")
        for group, b in backends.items():
            state = (
                f"{b.get('version', '')}, model {b.get('model', '')}"
                if b.get("available")
                else ("unavailable: " + b.get("reason", ""))
            )
            parts.append(f"<li>{escape(group)}: {escape(state)}</li>")
        parts.append("</ul>")
    if audio and folder is not None:
        parts.append(_audio(summary, rows, folder))
    parts.append(
        '<p class="note">Values: mean over files ± the larger half of a 95 % percentile-bootstrap interval '
        "(files resampled); WER/CER, tokens/s and real-time factors are ratios of sums. Files ok: files scored "
        "of the subset's files (failures are listed below and left out of the means). Bold: best tokenizer per "
        "column among those whose value covers the most files; (n=N): a value over fewer files, never bold. "
        "F0 RMSE and correlation use only frames voiced in both signals: read them with VDE (voicing decision "
        "error). Dashed line: Pareto front (no other tokenizer is both cheaper and better). "
        "Peak MB is the memory added during encode or decode (sampled RSS on CPU). Click a header to sort (or link to <code>#sort=stoi:desc</code>).</p>"
    )
    return parts


def _resynthesis_by_tokenizer(summary: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Each tokenizer's resynthesis metrics over the whole corpus (subset ``all``, or the only one)."""
    if summary is None:
        return {}
    subsets = subsets_of(summary)
    if not subsets:
        return {}
    return {r["tokenizer"]: r["metrics"] for r in table_rows(summary, subsets[-1])}


def _slm_table(slm: dict[str, Any], resynthesis: dict[str, dict[str, Any]]) -> str:
    """One sortable table: tokenizer, kind, stages, bitrate, resynthesis columns (when merged), the
    profile scores and every measure, with a header row naming the column groups."""
    rows = slm_rows(slm)
    groups: list[tuple[str, list[Any]]] = []
    resyn = [METRIC_BY_KEY[k] for k in RESYNTHESIS_COLUMNS if any(k in m for m in resynthesis.values())]
    for title, columns in SLM_TABLES:
        metrics = [METRIC_BY_KEY[c] for c in columns if any(c in r["metrics"] for r in rows)]
        if title == "Profile" and resyn:
            groups.append(("bitrate", metrics[:1]))
            groups.append(("resynthesis", resyn))
            groups.append(("profile", metrics[1:]))
        elif metrics:
            groups.append((title, metrics))
    groups = [(t, ms) for t, ms in groups if ms]
    arrows = {"higher": " ↑", "lower": " ↓"}
    top = '<tr><th class="group" colspan="3"></th>' + "".join(
        f'<th class="group" colspan="{len(ms)}">{escape(t)}</th>' for t, ms in groups
    )
    head = "".join(
        f'<th data-key="{m.key}" title="{escape(m.unit)}">{escape(m.label)}{arrows.get(m.better, "")}</th>'
        for _, ms in groups
        for m in ms
    )
    out = [
        '<div class="wrap"><table class="board" id="table-slm" data-subset="slm">',
        f'<thead>{top}</tr><tr><th data-key="tokenizer">tokenizer</th><th data-key="kind">kind</th>'
        f'<th data-key="stages" title="stages done / stages">stages ok</th>{head}</tr></thead><tbody>',
    ]
    for r in rows:
        kind = kind_of(slm, r["tokenizer"])
        colour = FAMILY_COLOURS.get(kind, "#333")
        cls = ' class="reference"' if kind == "reference" else ""
        fail = ' class="fail"' if r.get("failed") else ""
        cells = [
            f"<td>{escape(r['tokenizer'])}</td>",
            f'<td><span class="fam" style="background:{colour}"></span>{escape(kind)}</td>',
            f'<td data-value="{r["files"]}"{fail}>{stages_cell(r)}</td>',
        ]
        for group, ms in groups:
            source = resynthesis.get(r["tokenizer"], {}) if group == "resynthesis" else r["metrics"]
            for m in ms:
                est = source.get(m.key)
                if est is None or est.get("value") is None:
                    cells.append('<td data-value="">–</td>')
                    continue
                tip = f"{m.label} ({m.unit})"
                if est.get("low") is not None:
                    tip += f"; 95% CI {est['low'] * m.scale:.4g} to {est['high'] * m.scale:.4g}"
                if est.get("chance") is not None:
                    tip += f"; chance {est['chance'] * m.scale:.4g}"
                cells.append(
                    f'<td data-value="{est["value"] * m.scale:.10g}" title="{escape(tip)}">'
                    f"{escape(format_value(m, est))}</td>"
                )
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _slm_html(slm: dict[str, Any], resynthesis: dict[str, Any] | None) -> list[str]:
    """The SLM suite's section: meta line, factor profile chart, the sortable table, failures, notes."""
    env, probes = slm.get("environment", {}), slm.get("probes", {})
    minutes = sum(slm.get("corpus", {}).get("seconds", {}).values()) / 60
    rows = slm_rows(slm)
    profiles = [
        Profile(
            r["tokenizer"],
            kind_of(slm, r["tokenizer"]),
            tuple(
                None if r["metrics"].get(k, {}).get("value") is None else float(r["metrics"][k]["value"])
                for k, _ in FACTORS
            ),
        )
        for r in rows
    ]
    parts = [
        '<h2 id="slm">SLM fitness profile (synthetic probes)</h2>',
        f'<p class="meta">Probe set {escape(str(probes.get("fingerprint", ""))[:12])} (seed '
        f"{escape(str(probes.get('seed')))}, {escape(str(probes.get('voices')))} voices, content "
        f"{minutes:.1f} min); label: synthetic, not ZeroSpeech scores. Device: "
        f"{escape(str(env.get('device', '?')))}. Created {escape(str(env.get('created', '')))}.</p>",
        '<div class="plots">'
        + profile_svg(
            profiles,
            tuple(label for _, label in FACTORS),
            title="factor profile (1 = best)",
            plot_id="profile-slm",
        )
        + "</div>",
        _slm_table(slm, _resynthesis_by_tokenizer(resynthesis)),
    ]
    failed = [r for r in rows if r.get("failed")]
    if failed:
        parts.append('<h3>Failed stages</h3><ul id="slm-failed">')
        parts.extend(
            f"<li><code>{escape(r['tokenizer'])}</code> {escape(e['file'])}: {escape(e['error'])}</li>"
            for r in failed
            for e in r["errors"]
        )
        parts.append("</ul>")
    missing = [t for t in slm.get("tokenizers", []) if t.get("status") != "ok"]
    if missing:
        parts.append('<h3>Not run</h3><ul id="slm-unavailable">')
        parts.extend(
            f"<li><code>{escape(t['key'])}</code>: {escape(t.get('reason', ''))}</li>" for t in missing
        )
        parts.append("</ul>")
    chance = speaker_chance(slm)
    note = SLM_NOTE + (f" Speaker-ID chance: {chance * 100:.1f} %." if chance is not None else "")
    if resynthesis is not None:
        note += " Resynthesis columns: the resynthesis bench over its whole corpus, same tokenizer key."
    parts.append(f'<p class="note">{escape(note)} Click a header to sort.</p>')
    return parts


def read_inputs(
    results: str | Path | list[str | Path],
) -> tuple[tuple[dict[str, Any], list[dict[str, Any]], Path] | None, dict[str, Any] | None]:
    """Read one or two results folders: a resynthesis bench and/or the SLM suite (at most one of each);
    returns ``(resynthesis (summary, rows, folder) or None, SLM summary or None)``."""
    paths = [results] if isinstance(results, (str, Path)) else list(results)
    resynthesis, slm = None, None
    for path in paths:
        summary, rows, folder = read_results(path)
        if suite_of(summary) == SUITE_SLM:
            if slm is not None:
                raise SlmtokError(f"two SLM suite results given ({path}): merge one SLM and one resynthesis")
            slm = summary
        else:
            if resynthesis is not None:
                raise SlmtokError(
                    f"two resynthesis results given ({path}): merge one SLM and one resynthesis"
                )
            resynthesis = (summary, rows, folder)
    return resynthesis, slm


def write_site(
    results: str | Path | list[str | Path], out: Path, *, title: str, audio: bool = True
) -> list[Path]:
    """Render ``results`` (a results folder, or a resynthesis and an SLM suite folder to merge) into
    ``out``: ``leaderboard.md`` and ``index.html``; returns both paths."""
    resynthesis, slm = read_inputs(results)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {out}: {error.strerror}") from None
    md, page = out / "leaderboard.md", out / "index.html"
    text = f"# {title}\n\n"
    if slm is not None:
        text += "## SLM fitness (synthetic probes)\n\n" + slm_markdown(slm) + "\n"
    if resynthesis is not None:
        text += ("## Resynthesis\n\n" if slm is not None else "") + markdown_tables(resynthesis[0])
    with atomic_path(md) as tmp:
        tmp.write_text(text, encoding="utf-8")
    summary, rows, folder = resynthesis if resynthesis is not None else (None, [], None)
    with atomic_path(page) as tmp:
        tmp.write_text(
            render_html(summary, rows, folder, title=title, audio=audio, slm=slm), encoding="utf-8"
        )
    return [md, page]
