"""The leaderboard cannot hide a failure: failed files are counted and shown with their reasons, a tokenizer
that fails on every file stays on the page, a value over fewer files is never called best, VDE stands
beside F0 error, and the page fits the window.

References: the expected counts and reasons come from the failures these tests inject themselves (a
tokenizer whose ``encode`` raises for chosen files); the expected "best" cells are worked out by hand from
the hand-written aggregates below.
"""

from __future__ import annotations

import re

import pytest

import slmtok
from slmtok.audio import write_audio
from slmtok.corpora import asterisk_prompts
from slmtok.leaderboard import results as res
from slmtok.leaderboard.corpus import load_corpus
from slmtok.leaderboard.markdown import markdown_table, markdown_tables
from slmtok.leaderboard.runner import Bench, parse_specs
from slmtok.leaderboard.scoring import ScoreSettings
from slmtok.leaderboard.site import render_html, write_site

SOMETIMES = "test-fails-on-b"
ALWAYS = "test-fails-always"


def _failing(fail_on: str | None, message: str):
    """A mulaw-8bit tokenizer whose ``encode`` raises ``message`` for inputs of ``fail_on`` samples, or
    always when ``fail_on`` is ``None``."""

    def factory(**options):
        tok = slmtok.load("mulaw-8bit", **options)
        encode = tok.encode

        def broken(wav, sample_rate=None, **kw):
            if fail_on is None or wav.shape[-1] == fail_on:
                raise RuntimeError(message)
            return encode(wav, sample_rate, **kw)

        tok.encode = broken
        return tok

    return factory


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Three real prompts of 1.0, 1.2 and 1.4 s: SOMETIMES fails on the 1.2 s one, ALWAYS on all."""
    from slmtok.registry import TOKENIZERS

    folder = tmp_path_factory.mktemp("corpus")
    waves = []
    for path in asterisk_prompts("en"):
        wav, rate = slmtok.read_audio(path)
        if wav.shape[-1] >= int(1.4 * rate) and rate == 16000:
            waves.append(wav)
        if len(waves) == 3:
            break
    for name, wav, seconds in zip("abc", waves, (1.0, 1.2, 1.4), strict=True):
        write_audio(folder / f"{name}.wav", wav[:, : int(seconds * 16000)], 16000)
    slmtok.register_tokenizer(
        SOMETIMES, _failing(int(1.2 * 16000), "boom: bad frame\nsecond line"), exist_ok=True
    )
    slmtok.register_tokenizer(ALWAYS, _failing(None, "weights mismatch"), exist_ok=True)
    out = tmp_path_factory.mktemp("results")
    said: list[str] = []
    try:
        specs = parse_specs(["mulaw-8bit", SOMETIMES, ALWAYS], slmtok.list_tokenizers())
        bench = Bench(
            load_corpus([f"real={folder}"]), out, ScoreSettings(groups=("si_sdr",)), progress=said.append
        )
        summary = bench.run(specs)
    finally:
        TOKENIZERS.unregister(SOMETIMES)
        TOKENIZERS.unregister(ALWAYS)
    assert f"{SOMETIMES}: real/b failed (RuntimeError: boom: bad frame)" in said  # said as it happens
    assert sum(f"{ALWAYS}: real/" in m and "failed (RuntimeError: weights mismatch)" in m for m in said) == 3
    return summary, out, folder


def _agg(summary, key, subset="real"):
    (agg,) = [a for a in summary["aggregates"] if a["tokenizer"] == key and a["subset"] == subset]
    return agg


def test_failed_files_are_counted_with_their_reasons(bench):
    summary, _, _ = bench
    ok, some, none = (_agg(summary, k) for k in ("mulaw-8bit", SOMETIMES, ALWAYS))
    assert (ok["files"], ok["failed"]) == (3, 0)
    assert (some["files"], some["failed"]) == (2, 1)
    assert some["errors"] == [{"file": "real/b", "error": "RuntimeError: boom: bad frame"}]
    assert some["metrics"]["si_sdr"]["n"] == 2 and some["seconds"] == pytest.approx(2.4)
    # a tokenizer that failed on every file keeps its aggregate, with no metric and every reason
    assert (none["files"], none["failed"], none["metrics"]) == (0, 3, {})
    assert {e["file"] for e in none["errors"]} == {"real/a", "real/b", "real/c"}
    assert _agg(summary, ALWAYS, "all")["failed"] == 3


def test_markdown_and_page_show_failures_and_keep_a_tokenizer_that_always_fails(bench, tmp_path):
    summary, out, data = bench
    md_path, page_path = write_site(out, tmp_path / "site", title="t")
    md, page = md_path.read_text(), page_path.read_text()
    # ids are relative to the data root: no absolute path of the data on the page or in the results
    for text in (md, page, (out / res.ROWS).read_text(), (out / res.SUMMARY).read_text()):
        assert str(data) not in text and str(data.resolve()) not in text
    table = markdown_table(summary, "real")
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "files ok" in table.splitlines()[0]
    assert "| 3/3 |" in rows["mulaw-8bit"] and "| 2/3 |" in rows[SOMETIMES] and "| 0/3 |" in rows[ALWAYS]
    assert "| 128.00 |" in rows[SOMETIMES] and " (n=2) |" in rows[SOMETIMES]  # a constant is not "partial"
    assert (
        f"- `{SOMETIMES}`: 2 ok / 1 failed" in md and "RuntimeError: boom: bad frame (1 file: real/b)" in md
    )
    assert (
        f"- `{ALWAYS}`: 0 ok / 3 failed" in md and "weights mismatch (3 files: real/a, real/b, real/c)" in md
    )
    assert "second line" not in md and "second line" not in page
    row = re.search(rf"<tr><td>{ALWAYS}</td>.*?</tr>", page)
    assert row and ">0/3<" in row.group(0)
    assert '<ul id="failed">' in page and f"<code>{ALWAYS}</code>: 0 ok / 3 failed" in page


# ---------------------------------------------------------------------------------- hand-made results
def _summary(aggregates: list[dict]) -> dict:
    return {
        "schema": res.SCHEMA,
        "version": res.VERSION,
        "corpus": {"files": 4, "subsets": ["real"], "seconds": {"real": 8.0}},
        "tokenizers": [{"key": a["tokenizer"], "kind": "acoustic", "status": "ok"} for a in aggregates],
        "aggregates": aggregates,
    }


def _row(key: str, files: int, **metrics: tuple[float, int]) -> dict:
    return {
        "tokenizer": key,
        "subset": "real",
        "files": files,
        "failed": 4 - files,
        "errors": [],
        "seconds": 2.0 * files,
        "metrics": {k: {"value": v, "n": n} for k, (v, n) in metrics.items()},
    }


def _cells(page: str, key: str) -> list[str]:
    row = re.search(rf"<tr><td>{re.escape(key)}</td>(.*?)</tr>", page).group(1)
    return re.findall(r"<td([^>]*)>([^<]*)</td>", row)


def test_a_value_over_fewer_files_is_never_highlighted_as_best():
    """x covers 2 of 4 files with the highest STOI and lowest F0 error; y and z cover all 4: y is best on
    STOI (0.8 > 0.7), z on F0 RMSE (100 < 150); x is marked (n=2) and never bold."""
    aggregates = [
        _row("x", 2, stoi=(0.99, 2), f0_rmse_cents=(10.0, 2)),
        _row("y", 4, stoi=(0.8, 4), f0_rmse_cents=(150.0, 4)),
        _row("z", 4, stoi=(0.7, 4), f0_rmse_cents=(100.0, 4)),
    ]
    page = render_html(_summary(aggregates), [], None, title="t", audio=False)
    header = re.findall(r'<th data-key="([\w-]+)"', page)
    x, y, z = (dict((text, attrs) for attrs, text in _cells(page, k)) for k in "xyz")
    assert x["0.990 (n=2)"] == ' data-value="0.99" title="STOI (0-1); n=2" class="partial"'
    assert x["10 (n=2)"].endswith('class="partial"')
    assert y["0.800"].endswith('class="best"') and "best" not in z["0.700"]
    assert z["100"].endswith('class="best"') and "best" not in y["150"]
    assert 'class="best"' not in "".join(x.values())
    assert header[:3] == ["tokenizer", "kind", "files"]
    table = markdown_table(_summary(aggregates), "real")
    assert "| x | acoustic | 2/4 | 0.990 (n=2) | 10 (n=2) |" in table


def test_voicing_decision_error_stands_beside_f0_error():
    aggregates = [_row("y", 4, f0_rmse_cents=(150.0, 4), vuv_error=(0.25, 4), f0_corr=(0.9, 4))]
    page = render_html(_summary(aggregates), [], None, title="t", audio=False)
    keys = re.findall(r'<th data-key="([\w-]+)"', page)
    assert keys[keys.index("f0_rmse_cents") + 1] == "vuv_error"
    head = markdown_table(_summary(aggregates), "real").splitlines()[0]
    assert "F0 RMSE ↓ | VDE ↓" in head
    assert "| 0.250 |" in markdown_table(_summary(aggregates), "real")
    assert "voiced in both" in markdown_tables(_summary(aggregates))


def test_the_page_fits_the_window():
    page = render_html(_summary([_row("y", 4, stoi=(0.8, 4))]), [], None, title="t", audio=False)
    css = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert not re.search(r"(?<![-\w])(min-)?width:\s*\d{4,}px", css), "no fixed page width"
    body = re.search(r"body\{([^}]*)\}", css).group(1)
    assert "max-width:100%" in body and 'name="viewport"' in page
    assert ".wrap{overflow-x:auto}" in css  # wide tables scroll inside the page, not the window


def test_an_error_row_never_counts_as_a_scored_file():
    rows = [
        {"tokenizer": "t", "subset": "s", "file": "s/a", "seconds": 1.0, "status": "ok", "si_sdr": 10.0},
        {"tokenizer": "t", "subset": "s", "file": "s/b", "seconds": 3.0, "status": "error", "error": "E: x"},
    ]
    aggregates = res.aggregate(rows, {}, {})
    assert sorted(a["subset"] for a in aggregates) == ["all", "s"]
    for a in aggregates:
        assert (a["files"], a["failed"], a["seconds"]) == (1, 1, 1.0)
        assert a["metrics"]["si_sdr"] == {"value": 10.0, "low": 10.0, "high": 10.0, "n": 1}
        assert a["errors"] == [{"file": "s/b", "error": "E: x"}]
