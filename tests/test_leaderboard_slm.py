"""The SLM suite's results on the leaderboard: factor scores as documented, a profile and a sortable row
for every tokenizer, merged beside a resynthesis bench, and results of version 1 still read.

References: expected factor scores are worked out by hand from the definitions in
``slmtok/leaderboard/profile.py``; the resynthesis values expected in the merged table are read straight
from the committed ``benchmarks/leaderboard/results/results.json``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import slmtok
from slmtok.cli.main import main
from slmtok.errors import SlmtokError
from slmtok.leaderboard.markdown import slm_markdown
from slmtok.leaderboard.profile import factor_scores
from slmtok.leaderboard.results import read_results, suite_of
from slmtok.leaderboard.runner import parse_specs
from slmtok.leaderboard.site import render_html, write_site
from slmtok.probes.suite import TEXT_CEILING, Suite, SuiteSettings

from .probe_fixture import write_probe_folder

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "benchmarks" / "leaderboard" / "results"
TOKENIZERS = ["mfcc-km", "random-codes"]


def _v(x, **extra):
    return {"value": x, **extra}


def test_factor_scores_follow_their_definitions():
    metrics = {
        "pnmi": _v(0.85), "pnmi_shuffled": _v(0.25),  # A: mean((0.85 - 0.25) / 0.75, 0.8, 0.6)
        "abx_within": _v(0.1), "abx_across": _v(0.2),
        "unit_rate": _v(100.0),  # B: 1 - log10(100 / 10) / 3
        "speaker_id_accuracy": _v(0.5, chance=0.25), "invariance": _v(0.4),  # C: mean(1 - .25/.75, 0.6)
        "lexical_accuracy": _v(0.75), "syntactic_accuracy": _v(0.5), "acoustic_accuracy": _v(0.4),
    }  # fmt: skip
    scores = factor_scores(metrics, phone_rate=10.0)
    assert scores == pytest.approx(
        {"score_content": 2.2 / 3, "score_length": 2 / 3, "score_paralinguistics": 19 / 30, "score_lm": 1 / 6}
    )


def test_factor_scores_clip_and_leave_out_what_was_not_measured():
    scores = factor_scores({"abx_within": _v(0.7), "unit_rate": _v(16000.0)}, phone_rate=10.0)
    assert scores == {"score_content": 0.0, "score_length": 0.0}  # worse than chance, 1600x the phone rate
    assert factor_scores({"unit_rate": _v(5.0)}, phone_rate=10.0) == {"score_length": 1.0}
    assert factor_scores({"pnmi": _v(0.6)}, phone_rate=None) == {"score_content": 0.6}  # no floor: raw PNMI
    assert factor_scores({"pnmi": _v(0.3), "pnmi_shuffled": _v(0.4)}, None) == {"score_content": 0.0}
    assert factor_scores({}, phone_rate=None) == {}


def test_committed_version_1_results_still_load():
    """A copy of the leaderboard results as committed before the SLM suite (schema version 1)."""
    summary, rows, _ = read_results(ROOT / "tests" / "data" / "leaderboard_v1")
    assert summary["version"] == 1 and suite_of(summary) == "resynthesis" and rows


def test_a_newer_results_version_is_refused(tmp_path):
    shutil.copytree(COMMITTED, tmp_path / "r", ignore=shutil.ignore_patterns("examples"))
    path = tmp_path / "r" / "results.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(SlmtokError, match="results version 99; this slmtok reads up to 2"):
        read_results(tmp_path / "r")


@pytest.fixture(scope="module")
def slm(tmp_path_factory):
    root = tmp_path_factory.mktemp("slm")
    probes = write_probe_folder(root / "probes")
    specs = parse_specs(TOKENIZERS, slmtok.list_tokenizers())
    Suite(probes, root / "results", SuiteSettings(skip_lm=True, abx_max_triplets=100)).run(specs)
    return root / "results"


def _slm_table(page: str) -> tuple[list[str], dict[str, list[str]]]:
    """Column keys and each row's cell texts (tokenizer -> cells) of the page's SLM table."""
    table = re.search(r'<table class="board" id="table-slm".*?</table>', page, re.S).group(0)
    head = table.split("</thead>")[0].split("<tr>")[-1]
    keys = re.findall(r'data-key="([\w-]+)"', head)
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("<tbody>")[1]):
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        rows[cells[0]] = cells
    return keys, rows


def test_slm_page_has_a_profile_and_a_row_per_tokenizer(slm):
    summary, rows, folder = read_results(slm)
    page = render_html(summary, rows, folder, title="slm")
    expected = [*TOKENIZERS, TEXT_CEILING]
    assert re.findall(r'<g class="tok" data-tokenizer="([^"]+)"', page) == expected
    bars = re.findall(r'<rect [^>]*class="bar" data-tokenizer="([^"]+)" data-factor="([^"]+)"', page)
    assert {(t, f) for t, f in bars} >= {(t, "A content") for t in expected}
    assert not [b for b in bars if b[1] == "LM fitness"]  # skipped: drawn as "not measured", no bar
    keys, table = _slm_table(page)
    assert list(table) == expected and keys[:4] == ["tokenizer", "kind", "stages", "bitrate"]
    assert {"pnmi", "abx_across", "unit_rate", "speaker_id_accuracy", "score_content"} <= set(keys)
    pnmi = {t: float(c[keys.index("pnmi")]) for t, c in table.items()}
    assert pnmi[TEXT_CEILING] == 1.0 and all(0 < v < 1 for t, v in pnmi.items() if t != TEXT_CEILING)
    assert "not ZeroSpeech scores" in page and 'id="resynthesis"' not in page
    data = json.loads(page.split('id="slm-data">')[1].split("</script>")[0])
    assert data == summary["aggregates"] and 'id="results-data"' not in page


def test_merged_page_shows_resynthesis_beside_the_profile(slm, tmp_path):
    md, page_path = write_site([COMMITTED, slm], tmp_path / "site", title="merged", audio=False)
    page = page_path.read_text()
    keys, table = _slm_table(page)
    assert "pesq_wb" in keys and "stoi" in keys
    committed, _, _ = read_results(COMMITTED)
    pesq = next(
        a["metrics"]["pesq_wb"]
        for a in committed["aggregates"]
        if a["tokenizer"] == "mfcc-km" and a["subset"] == "all"
    )
    assert table["mfcc-km"][keys.index("pesq_wb")].startswith(f"{pesq['value']:.2f}")
    assert table[TEXT_CEILING][keys.index("pesq_wb")] == "–"  # no resynthesis of phone strings
    assert 'id="resynthesis"' in page and 'id="table-real"' in page  # the bench's own tables stay
    text = md.read_text()
    assert (
        "## SLM fitness (synthetic probes)" in text and "## Resynthesis" in text and "#### A content" in text
    )


def test_two_slm_results_are_refused(slm, tmp_path):
    with pytest.raises(SlmtokError, match="two SLM suite results"):
        write_site([slm, slm], tmp_path / "site", title="x")


def test_leaderboard_cli_merges_and_markdown_matches(slm, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["leaderboard", str(slm), str(COMMITTED), "-o", str(site), "--no-audio"]) == 0
    summary, _, _ = read_results(slm)
    assert slm_markdown(summary) in (site / "leaderboard.md").read_text()
    assert main(["leaderboard", str(slm), str(slm), str(slm), "-o", str(site)]) == 1
    assert "give one results folder, or two" in capsys.readouterr().err


SUITE = ROOT / "benchmarks" / "results" / "slm_suite"


@pytest.mark.skipif(
    not (SUITE / "results.json").is_file(),
    reason="default SLM suite not committed yet: benchmarks/slm_suite.py",
)
def test_default_suite_table_is_the_committed_results():
    """``slm_suite.md`` (the README's table) is generated from the committed results, which cover the
    default tokenizers and every stage; the README shows it verbatim once the lead adds its block."""
    from slmtok.leaderboard.markdown import suite_report

    summary, rows, _ = read_results(SUITE)
    run = json.loads((SUITE / "benchmark.json").read_text())
    report = (SUITE / "slm_suite.md").read_text()
    assert report == suite_report(summary, rows, run), "stale: rerun python benchmarks/slm_suite.py"
    assert summary["label"] == "synthetic" and "recipe" in summary["settings"]
    ran = {a["tokenizer"]: a for a in summary["aggregates"]}
    assert {"mel-rvq", "mfcc-km", "mulaw-8bit", "random-codes", TEXT_CEILING} <= set(ran)
    assert all(a["failed"] == 0 and len(a["stages"]) == 4 for a in ran.values())
    assert run["wall_seconds"] < 3600  # the budget: the default suite in under an hour on 2 cores
    readme = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- benchmark:slm_suite:start -->\n(.*?)<!-- benchmark:slm_suite:end -->", readme, re.S
    )
    assert block, "README has no <!-- benchmark:slm_suite --> block (python -m slmtok.cli.readme fills it)"
    if block:
        assert block.group(1) == report, "README's SLM table differs from benchmarks/results/slm_suite"
