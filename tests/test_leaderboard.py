"""slmtok bench and leaderboard: corpus, statistics, a real small bench run, resuming, rendering, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import slmtok
from slmtok.audio import resample, write_audio
from slmtok.corpora import asterisk_prompts
from slmtok.errors import SlmtokError
from slmtok.leaderboard import results as res
from slmtok.leaderboard.corpus import load_corpus
from slmtok.leaderboard.plots import Point, pareto_front, pareto_svg
from slmtok.leaderboard.runner import JOURNAL, Bench, parse_specs
from slmtok.leaderboard.scoring import Scorer, ScoreSettings
from slmtok.leaderboard.site import write_site
from slmtok.leaderboard.stats import bootstrap_mean, bootstrap_ratio

UNAVAILABLE = "test-weights-unavailable"
METRICS = ("pesq", "stoi", "si_sdr", "mel")
MEL_RVQ = "mel-rvq:n_codebooks=2,griffin_lim_iters=8"  # fewer Griffin-Lim iterations: a faster test
SPECS = ["mulaw-8bit", MEL_RVQ, "mfcc-km", UNAVAILABLE, "no-such-codec"]


# ------------------------------------------------------------------------------------------ pieces
def test_bootstrap_mean_and_ratio():
    est = bootstrap_mean([1.0, 2.0, 3.0, 4.0, float("nan"), None])
    assert est.value == pytest.approx(2.5) and est.n == 4
    assert 1.0 <= est.low < est.value < est.high <= 4.0
    assert bootstrap_mean([1.0, 2.0, 3.0, 4.0]) == bootstrap_mean([1.0, 2.0, 3.0, 4.0])  # seeded
    same = bootstrap_mean([0.7] * 5)
    assert same.low == same.high == pytest.approx(0.7)
    assert bootstrap_mean([]) is None
    wer = bootstrap_ratio([1, 0, 3], [10, 5, 15])
    assert wer.value == pytest.approx(4 / 30) and wer.low <= wer.value <= wer.high
    assert bootstrap_ratio([1], [0]) is None


def test_pareto_front():
    points = [
        Point("a", "x", 1, 0.5),
        Point("b", "x", 2, 0.4),
        Point("c", "x", 3, 0.9),
        Point("d", "x", 3, 0.8),
    ]
    assert [p.label for p in pareto_front(points)] == ["a", "c"]
    assert [p.label for p in pareto_front(points, higher_is_better=False)] == ["a", "b"]
    svg = pareto_svg(points, title="t", x_label="kbps", y_label="STOI")
    assert svg.startswith("<svg") and svg.count('class="pt"') == 4 and 'class="front"' in svg


def test_parse_specs_expands_patterns_and_options():
    names = ["mel-rvq", "mfcc-km", "mulaw-8bit"]
    specs = parse_specs(["m*-k*", "mfcc-km:dedup=true", "mel-rvq:n_codebooks=4", "missing"], names)
    assert [s.key for s in specs] == ["mfcc-km", "mfcc-km:dedup=true", "mel-rvq:n_codebooks=4", "missing"]
    assert specs[1].options == {"dedup": True} and specs[2].options == {"n_codebooks": 4}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_specs(["mel-rvq:oops"], names)


def test_corpus_from_folders_and_manifests(tmp_path):
    (tmp_path / "real" / "sub").mkdir(parents=True)
    wav = torch.zeros(1, 1600)
    write_audio(tmp_path / "real" / "a.wav", wav, 16000)
    write_audio(tmp_path / "real" / "sub" / "b.flac", wav, 16000)
    (tmp_path / "real" / "a.txt").write_text("hello there\n")
    write_audio(tmp_path / "c.wav", wav, 22050)
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "c.wav", "text": "a b", "subset": "syn"}) + "\n")
    items = load_corpus([str(tmp_path / "real"), f"manifest={tmp_path / 'm.jsonl'}"])
    assert [i.id for i in items] == ["real/a", "real/sub/b", "manifest/c"]
    assert items[0].text == "hello there" and items[1].text is None and items[2].text == "a b"
    assert load_corpus([str(tmp_path / "m.jsonl")])[0].subset == "syn"
    with pytest.raises(SlmtokError, match="twice"):
        load_corpus([str(tmp_path / "real"), str(tmp_path / "real")])
    with pytest.raises(SlmtokError, match="no such corpus path"):
        load_corpus([str(tmp_path / "nope")])
    (tmp_path / "bad.jsonl").write_text("{}\n")
    with pytest.raises(SlmtokError, match="bad.jsonl:1"):
        load_corpus([str(tmp_path / "bad.jsonl")])


# ---------------------------------------------------------------------------------- a real bench
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list:
    """Two held-out real prompts (French talker), 2 s each: one at 16 kHz, one resampled to 22.05 kHz."""
    folder = tmp_path_factory.mktemp("corpus")
    kept = []
    for path in asterisk_prompts("fr"):
        wav, rate = slmtok.read_audio(path)
        if wav.shape[-1] >= 2 * rate:
            kept.append(wav[:, : int(2 * rate)])
        if len(kept) == 2:
            break
    write_audio(folder / "a16k.wav", kept[0], 16000)
    write_audio(folder / "b22k.wav", resample(kept[1], 16000, 22050), 22050)
    return load_corpus([f"real={folder}"])


@pytest.fixture
def unavailable_tokenizer():
    def factory(**options):
        raise OSError("weights unavailable: cannot download test.pt (no network)")

    slmtok.register_tokenizer(UNAVAILABLE, factory, exist_ok=True)
    yield
    from slmtok.registry import TOKENIZERS

    TOKENIZERS.unregister(UNAVAILABLE)


@pytest.fixture(scope="module")
def bench_dir(corpus, tmp_path_factory):
    from slmtok.registry import TOKENIZERS

    def factory(**options):
        raise OSError("weights unavailable: cannot download test.pt (no network)")

    slmtok.register_tokenizer(UNAVAILABLE, factory, exist_ok=True)
    out = tmp_path_factory.mktemp("results")
    try:
        specs = parse_specs(SPECS, slmtok.list_tokenizers())
        Bench(corpus, out, ScoreSettings(groups=METRICS), examples=1).run(specs)
    finally:
        TOKENIZERS.unregister(UNAVAILABLE)
    return out


def _aggregate(summary: dict, tokenizer: str, subset: str = "real") -> dict:
    (agg,) = [a for a in summary["aggregates"] if a["tokenizer"] == tokenizer and a["subset"] == subset]
    return agg["metrics"]


def test_identity_like_tokenizer_tops_reconstruction_and_bottoms_tokens_per_second(bench_dir):
    summary, rows, _ = res.read_results(bench_dir)
    ran = ["mulaw-8bit", MEL_RVQ, "mfcc-km"]
    metrics = {key: _aggregate(summary, key) for key in ran}
    for key, higher in (("pesq_wb", True), ("stoi", True), ("si_sdr", True), ("log_mel_distance", False)):
        values = {k: metrics[k][key]["value"] for k in ran}
        best = (max if higher else min)(values, key=values.get)
        assert best == "mulaw-8bit", (key, values)
    tps = {k: metrics[k]["tokens_per_second"]["value"] for k in ran}
    assert max(tps, key=tps.get) == "mulaw-8bit"  # the most tokens per second: the worst for an LM
    assert tps["mulaw-8bit"] == pytest.approx(16000, rel=1e-3)
    assert tps[MEL_RVQ] == pytest.approx(200, rel=0.02)
    assert metrics["mulaw-8bit"]["pesq_wb"]["value"] > 4.0 and metrics["mulaw-8bit"]["si_sdr"]["value"] > 30
    assert metrics["mulaw-8bit"]["bitrate"]["value"] == 128000
    assert metrics[MEL_RVQ]["bitrate"]["value"] == pytest.approx(2000)
    for key in ran:
        for name, est in metrics[key].items():
            if "low" in est:
                assert est["low"] - 1e-9 <= est["value"] <= est["high"] + 1e-9, (key, name, est)


def test_results_files_are_versioned_and_complete(bench_dir):
    summary, rows, _ = res.read_results(bench_dir / "results.json")
    assert summary["schema"] == "slmtok.bench" and summary["version"] == res.VERSION
    assert summary["environment"]["device"].startswith("cpu: ")
    assert summary["environment"]["packages"]["pesq"]
    assert summary["corpus"]["subsets"] == ["real"] and summary["corpus"]["files"] == 2
    by_key = {t["key"]: t for t in summary["tokenizers"]}
    assert by_key["mulaw-8bit"]["card_hash"] == slmtok.load("mulaw-8bit").card.hash
    assert by_key[MEL_RVQ]["options"] == {"n_codebooks": 2, "griffin_lim_iters": 8}
    assert by_key[UNAVAILABLE]["status"] == "unavailable"
    assert "weights unavailable" in by_key[UNAVAILABLE]["reason"]
    assert (
        by_key["no-such-codec"]["status"] == "unavailable"
        and "unknown tokenizer" in by_key["no-such-codec"]["reason"]
    )
    assert not [a for a in summary["aggregates"] if a["tokenizer"] in (UNAVAILABLE, "no-such-codec")]
    assert len(rows) == 2 * 4  # original + 3 tokenizers that ran, per file
    rates = {r["file"]: r["input_rate"] for r in rows if r["tokenizer"] == "mulaw-8bit"}
    assert rates == {"real/a16k": 16000, "real/b22k": 22050}
    for row in rows:
        assert row["status"] == "ok" and row["eval_rate"] == 16000
    mulaw = [r for r in rows if r["tokenizer"] == "mulaw-8bit"]
    assert all(abs(r["delay_ms"]) < 1 and r["encode_seconds"] > 0 for r in mulaw)
    # strict JSON: no NaN/Infinity anywhere
    json.loads((bench_dir / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    examples = [r["example"] for r in rows if r.get("example")]
    assert len(examples) == 4 and all((bench_dir / e).is_file() for e in examples)  # first file, each config


def test_rerun_reuses_finished_rows(bench_dir, corpus, monkeypatch, unavailable_tokenizer):
    before = res.read_jsonl(bench_dir / res.ROWS)
    calls = []
    monkeypatch.setattr(Scorer, "score", lambda self, *a, **k: calls.append(a) or pytest.fail("re-scored"))
    monkeypatch.setattr(Scorer, "score_original", lambda self, *a, **k: pytest.fail("re-scored original"))
    specs = parse_specs(SPECS, slmtok.list_tokenizers())
    Bench(corpus, bench_dir, ScoreSettings(groups=METRICS), examples=1).run(specs)
    assert res.read_jsonl(bench_dir / res.ROWS) == before and not calls


def test_interrupted_run_resumes_from_its_journal(bench_dir, corpus, tmp_path, monkeypatch):
    rows = res.read_jsonl(bench_dir / res.ROWS)
    keep = [r for r in rows if not (r["tokenizer"] == "mfcc-km" and r["file"] == "real/b22k")]
    assert len(keep) == len(rows) - 1
    (tmp_path / JOURNAL).write_text("".join(res.dumps_row(r) + "\n" for r in keep) + '{"key": "trunc')
    scored = []
    original = Scorer.score

    def counting(self, file_id, *args, **kwargs):
        scored.append(file_id)
        return original(self, file_id, *args, **kwargs)

    monkeypatch.setattr(Scorer, "score", counting)
    specs = parse_specs(["mulaw-8bit", MEL_RVQ, "mfcc-km"], slmtok.list_tokenizers())
    summary = Bench(corpus, tmp_path, ScoreSettings(groups=METRICS), examples=0).run(specs)
    assert scored == ["real/b22k"]
    assert not (tmp_path / JOURNAL).exists()
    assert len(res.read_jsonl(tmp_path / res.ROWS)) == len(rows)
    assert _aggregate(summary, "mfcc-km")["stoi"]["n"] == 2


def test_torn_journal_survives_a_second_kill(bench_dir, corpus, tmp_path, monkeypatch):
    """A run killed mid-row leaves a torn last journal line; the rerun is itself interrupted after one
    new row. The third run must still read every journalled row once: no row lost, none twice
    (reference: the uninterrupted run's rows in ``bench_dir``)."""
    rows = res.read_jsonl(bench_dir / res.ROWS)
    keep = [r for r in rows if r["tokenizer"] != "mfcc-km"]
    (tmp_path / JOURNAL).write_text("".join(res.dumps_row(r) + "\n" for r in keep) + '{"key": "torn')
    original, calls = Scorer.score, []

    def interrupted(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Scorer, "score", interrupted)
    specs = parse_specs(["mulaw-8bit", MEL_RVQ, "mfcc-km"], slmtok.list_tokenizers())
    with pytest.raises(KeyboardInterrupt):
        Bench(corpus, tmp_path, ScoreSettings(groups=METRICS), examples=0).run(specs)
    lines = (tmp_path / JOURNAL).read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == [r["key"] for r in keep] + [
        r["key"] for r in rows if r["tokenizer"] == "mfcc-km"
    ][:1]
    monkeypatch.setattr(Scorer, "score", original)
    Bench(corpus, tmp_path, ScoreSettings(groups=METRICS), examples=0).run(specs)
    again = res.read_jsonl(tmp_path / res.ROWS)
    assert sorted(r["key"] for r in again) == sorted(r["key"] for r in rows)


def test_bench_folder_is_locked_and_orphans_are_removed(corpus, tmp_path):
    """A second bench into a folder another process holds is refused with one line; temporary files of
    a dead writer (here under examples/) are removed by the next run."""
    from slmtok.atomic import temp_name
    from slmtok.runlock import RunLock, RunLockedError

    specs = parse_specs(["mulaw-8bit"], slmtok.list_tokenizers())
    with RunLock(tmp_path, "bench"), pytest.raises(RunLockedError, match="another bench run"):
        Bench(corpus, tmp_path, ScoreSettings(groups=("si_sdr",)), examples=0).run(specs)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "examples" / "real_a16k").mkdir(parents=True)
    orphan = (
        tmp_path
        / "examples"
        / "real_a16k"
        / temp_name("x.ogg").replace(f"-{__import__('os').getpid()}.", f"-{dead.pid}.")
    )
    orphan.write_bytes(b"half an ogg")
    Bench(corpus, tmp_path, ScoreSettings(groups=("si_sdr",)), examples=0).run(specs)
    assert not orphan.exists() and len(res.read_jsonl(tmp_path / res.ROWS)) == 4


def test_leaderboard_renders_markdown_and_a_self_contained_page(bench_dir, tmp_path):
    md, page = write_site(bench_dir, tmp_path / "site", title="test board")
    text = md.read_text()
    assert "| tokenizer | kind | files ok | kbps | tokens/s |" in text
    assert "| mulaw-8bit | baseline | 2/2 | 128.00 | 16000 |" in text
    assert f"`{UNAVAILABLE}`: OSError: weights unavailable" in text
    html = page.read_text()
    outside = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in outside and "https://" not in outside  # nothing loaded from elsewhere
    assert html.count('<table class="board"') == 1
    assert html.count("<svg") >= 3 and html.count('class="pt"') >= 9
    assert html.count('src="data:audio/ogg;base64,') == 4
    data = json.loads(html.split('id="results-data">')[1].split("</script>")[0])
    assert data == res.read_results(bench_dir)[0]["aggregates"]


def test_leaderboard_refuses_what_is_not_a_result(tmp_path):
    with pytest.raises(SlmtokError, match="no results.json"):
        write_site(tmp_path, tmp_path / "site", title="x")
    (tmp_path / "results.json").write_text(json.dumps({"schema": "slmtok.bench", "version": 99}))
    with pytest.raises(SlmtokError, match="version 99"):
        write_site(tmp_path, tmp_path / "site", title="x")


# ------------------------------------------------------------------------------------------- CLI
def test_cli_bench_and_leaderboard(corpus, tmp_path, capsys):
    from slmtok.cli.main import main

    data = str(corpus[0].path)
    out = tmp_path / "res"
    code = main(["bench", "-t", "mulaw-8bit", "nope", "-d", data, "-o", str(out), "--metrics", "stoi,si_sdr"])
    captured = capsys.readouterr()
    assert code == 0
    assert (
        "| mulaw-8bit | baseline | 1/1 | 128.00 |" in captured.out and "`nope`: RegistryError" in captured.out
    )
    assert main(["leaderboard", str(out), "-o", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "leaderboard.md").is_file()
    assert main(["bench", "-t", "mulaw-8bit", "-d", data, "-o", str(out), "--metrics", "stoi,bogus"]) == 1
    assert "unknown metric group 'bogus'" in capsys.readouterr().err
    assert main(["bench", "-t", "mulaw-8bit", "-d", str(tmp_path / "none"), "-o", str(out)]) == 1
    assert "no such corpus path" in capsys.readouterr().err


def test_help_imports_no_heavy_module():
    code = (
        "import sys; from slmtok.cli.main import build_parser; p = build_parser(); "
        "p.parse_args(['bench', '-t', 'x', '-d', 'y', '-o', 'z']); "
        "print(sorted(m for m in ('torch', 'numpy', 'pesq', 'faster_whisper') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_scorer_reports_missing_back_ends_with_reasons(tmp_path):
    scorer = Scorer(ScoreSettings(groups=("stoi", "wer"), whisper_model=str(tmp_path / "missing")))
    status = scorer.status["wer"]
    assert not status.available and status.reason
    x = np.sin(np.arange(16000) / 7.0)
    row = scorer.score("f", x, x, "some words")
    assert row["stoi"] == pytest.approx(1.0) and "wer_errors" not in row
    with pytest.raises(ValueError, match="unknown metric group"):
        Scorer(ScoreSettings(groups=("nope",)))


def test_bench_journal_symlink_is_refused(corpus, tmp_path):
    """A symlink planted at RESULTS/rows.partial.jsonl is refused with one line, its target unwritten."""
    from slmtok.errors import OutputError

    victim = tmp_path / "victim.jsonl"
    victim.write_text('{"keep": "me"}\n')
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / JOURNAL).symlink_to(victim)
    specs = parse_specs(["mulaw-8bit"], slmtok.list_tokenizers())
    with pytest.raises(OutputError, match="symlink"):
        Bench(corpus, tmp_path / "out", ScoreSettings(groups=("si_sdr",)), examples=0).run(specs)
    assert victim.read_text() == '{"keep": "me"}\n'


def test_rows_are_keyed_on_the_decoder_as_well_as_the_card():
    """mel-rvq's decoders share a card hash (same tokens) but not audio: a resumed bench must not reuse
    Griffin-Lim rows for the neural decoder, so the row identity includes ``decoder_hash``."""
    from slmtok.leaderboard.runner import _identity

    neural = slmtok.load("mel-rvq")
    classic = slmtok.load("mel-rvq", decoder="griffin-lim")
    assert neural.card.hash == classic.card.hash
    assert _identity(neural) != _identity(classic)
    assert _identity(slmtok.load("mulaw-8bit")) == slmtok.load("mulaw-8bit").card.hash
