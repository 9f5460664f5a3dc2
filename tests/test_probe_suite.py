"""The SLM suite runner (``slmtok probes run`` / ``slmtok bench --suite slm``): versioned results labelled
synthetic, unavailable tokenizers and failed stages kept with their reasons, exact resume after a kill,
the text-ceiling sanity row, one-line errors.

References: the probe folder is written by hand (``tests/probe_fixture.py``) so its alignments are exact
by construction; expected rates come from its ``items.jsonl`` (counted here, not by slmtok), expected
sanity values from the definitions (the phone labels themselves have PNMI 1 and ABX error 0).
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

import slmtok
from slmtok.cli.main import main
from slmtok.errors import SlmtokError
from slmtok.leaderboard.results import VERSION, read_results, suite_of
from slmtok.leaderboard.runner import parse_specs
from slmtok.probes.suite import JOURNAL, TEXT_CEILING, WORK, Suite, SuiteSettings

from .probe_fixture import write_probe_folder

SPECS = ["mfcc-km", "random-codes", "mfcc-km:dedup=true", "no-such-tokenizer"]
SETTINGS = SuiteSettings(skip_lm=True, abx_max_triplets=200)


def _specs(patterns):
    return parse_specs(patterns, slmtok.list_tokenizers())


def _metrics(summary, key):
    return next(a for a in summary["aggregates"] if a["tokenizer"] == key)


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    return write_probe_folder(tmp_path_factory.mktemp("probes") / "p")


@pytest.fixture(scope="module")
def results(probes, tmp_path_factory):
    out = tmp_path_factory.mktemp("slm") / "results"
    Suite(probes, out, SETTINGS).run(_specs(SPECS))
    return out


def test_results_are_versioned_synthetic_and_readable(results):
    summary, rows, folder = read_results(results)
    assert summary["version"] == VERSION and suite_of(summary) == "slm" and summary["label"] == "synthetic"
    status = {t["key"]: t["status"] for t in summary["tokenizers"]}
    assert status == {**{s: "ok" for s in SPECS[:3]}, "no-such-tokenizer": "unavailable", TEXT_CEILING: "ok"}
    missing = next(t for t in summary["tokenizers"] if t["key"] == "no-such-tokenizer")
    assert missing["reason"].startswith("RegistryError: unknown tokenizer 'no-such-tokenizer'")
    assert {r["stage"] for r in rows} == {"content", "length", "paralinguistics"}  # --skip-lm
    assert not (folder / JOURNAL).exists()
    assert not (folder / WORK / "mfcc-km").exists()  # tokens of finished tokenizers are removed
    assert (folder / WORK / "mfcc-km_dedup_true").is_dir()  # kept for the retry of its failed stage


def test_text_ceiling_is_the_phone_alignment(results, probes):
    summary, _, _ = read_results(results)
    m = _metrics(summary, TEXT_CEILING)["metrics"]
    assert m["pnmi"]["value"] == pytest.approx(1.0) and m["phone_purity"]["value"] == pytest.approx(1.0)
    assert m["abx_within"]["value"] == 0 and m["abx_across"]["value"] == 0
    assert m["invariance"]["value"] == 0  # same text, same phones, whatever the voice or speed
    content = [json.loads(line) for line in (probes / "items.jsonl").read_text().splitlines()]
    content = [it for it in content if it["set"] == "content"]
    phones = sum(len(it["phone_string"].split()) for it in content)
    seconds = sum(it["seconds"] for it in content)
    assert m["unit_rate"]["value"] == pytest.approx(phones / seconds)
    assert summary["probes"]["phone_rate"] == pytest.approx(phones / seconds)
    assert m["score_content"]["value"] == pytest.approx(1.0) and m["score_length"]["value"] == pytest.approx(
        1.0
    )


def test_tokenizer_rows_hold_every_factor(results):
    summary, _, _ = read_results(results)
    m = _metrics(summary, "mfcc-km")["metrics"]
    for key in ("pnmi", "phone_purity", "cluster_purity", "abx_within", "abx_across", "unit_rate", "dedup_rate",
                "entropy_rate", "speaker_id_accuracy", "invariance", "inv_noise", "inv_voice"):  # fmt: skip
        assert key in m, key
    assert m["unit_rate"]["value"] == pytest.approx(100.0, rel=0.05)  # mfcc-km: 100 frames/s
    assert m["pnmi_shuffled"]["value"] < m["pnmi"]["value"] / 2  # its units follow the phones, not chance
    assert m["dedup_rate"]["value"] < m["unit_rate"]["value"]
    assert m["speaker_id_accuracy"]["chance"] == pytest.approx(1 / 3)  # 3 voices, 4 items each
    assert 0 <= m["abx_across"]["low"] <= m["abx_across"]["value"] <= m["abx_across"]["high"] <= 1
    assert m["bitrate"]["value"] == pytest.approx(slmtok.load("mfcc-km").card.bitrate)
    for key in ("score_content", "score_length", "score_paralinguistics"):
        assert 0 <= m[key]["value"] <= 1
    assert "score_lm" not in m  # LM fitness skipped: no score invented


def test_failed_stage_is_kept_with_its_reason(results):
    summary, _, _ = read_results(results)
    agg = _metrics(summary, "mfcc-km:dedup=true")
    assert agg["stages"] == {"content": "error", "length": "ok", "paralinguistics": "ok"}
    assert agg["failed"] == 1 and agg["files"] == 2
    assert "not one per frame" in agg["errors"][0]["error"] and agg["errors"][0]["file"] == "content"
    assert "pnmi" not in agg["metrics"] and "dedup_rate" in agg["metrics"]
    dedup, plain = agg["metrics"]["unit_rate"]["value"], _metrics(summary, "mfcc-km")["metrics"]
    assert dedup == pytest.approx(plain["dedup_rate"]["value"])  # the same units, deduplicated by the card


def test_rerun_skips_done_stages_and_retries_failed_ones(results, probes, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    messages: list[str] = []
    summary = Suite(probes, copy, SETTINGS, progress=messages.append).run(_specs(SPECS))
    stages = [m for m in messages if m.endswith((": content", ": length", ": paralinguistics"))]
    assert stages == ["mfcc-km:dedup=true: content"]  # only the failed stage is tried again
    before, _, _ = read_results(results)
    assert [a["metrics"] for a in summary["aggregates"]] == [a["metrics"] for a in before["aggregates"]]


def test_killed_run_resumes_from_its_journal_and_encoded_batches(probes, tmp_path, monkeypatch):
    from slmtok.probes import suite as suite_module

    real = suite_module.length_measures

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill between stages would leave it

    monkeypatch.setattr(suite_module, "length_measures", killed)
    out = tmp_path / "results"
    settings = SuiteSettings(skip_lm=True, abx_max_triplets=100, text_ceiling=False)
    with pytest.raises(KeyboardInterrupt):
        Suite(probes, out, settings).run(_specs(["mfcc-km"]))
    journal = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()]
    assert [r["stage"] for r in journal] == ["content"] and not (out / "results.json").exists()
    assert list((out / WORK / "mfcc-km" / "codes").glob("batch-*.safetensors"))
    monkeypatch.setattr(suite_module, "length_measures", real)
    messages: list[str] = []
    summary = Suite(probes, out, settings, progress=messages.append).run(_specs(["mfcc-km"]))
    assert not [m for m in messages if "encode batch" in m]  # the codes come from the saved batches
    assert [m.split(": ")[1] for m in messages if m.startswith("mfcc-km: ")] == ["length", "paralinguistics"]
    assert not (out / WORK).exists() and not (out / JOURNAL).exists()  # finished: nothing left over
    fresh = Suite(probes, tmp_path / "fresh", settings).run(_specs(["mfcc-km"]))
    assert _metrics(summary, "mfcc-km")["metrics"] == _metrics(fresh, "mfcc-km")["metrics"]


def test_threads_are_restored(probes, tmp_path):
    import torch

    before = torch.get_num_threads()
    seen = []
    settings = SuiteSettings(skip_lm=True, abx_max_triplets=50, text_ceiling=False)
    Suite(
        probes, tmp_path / "r", settings, threads=1, progress=lambda m: seen.append(torch.get_num_threads())
    ).run(_specs(["mfcc-km"]))
    assert set(seen) == {1} and torch.get_num_threads() == before


def test_cli_bench_suite_slm(probes, tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["bench", "--suite", "slm", "--probes", str(probes), "-t", "mfcc-km", "-o", str(out),
                 "--skip-lm", "--abx-triplets", "100"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "#### A content" in printed and "not ZeroSpeech scores" in printed
    assert suite_of(read_results(out)[0]) == "slm"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--suite", "slm", "-t", "mfcc-km", "-o", "r"], "--suite slm needs --probes"),
        (["bench", "-t", "mfcc-km", "-o", "r"], "bench needs --data"),
        (["bench", "--suite", "slm", "--probes", "nowhere", "-t", "mfcc-km", "-o", "r"], "no probe folder"),
        (["bench", "--suite", "slm", "--probes", "p", "-t", "x", "-o", "r", "--threads", "0"], "--threads"),
    ],
)
def test_cli_errors_are_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_probe_folder_without_content_is_refused(tmp_path, probes):
    from slmtok.probes import items_jsonl_bytes, load_probes, make_header, write_index

    folder = tmp_path / "p"
    shutil.copytree(probes, folder)
    items = [it for it in load_probes(folder).items if it.set != "content"]
    raw = items_jsonl_bytes(items)
    write_index(folder, make_header(items, raw, seed=0, voices=[]), raw)
    with pytest.raises(SlmtokError, match="no content items"):
        Suite(folder, tmp_path / "r")


def test_phone_rate_counts_phones_not_silence():
    from slmtok.probes.schema import ProbeItem
    from slmtok.probes.suite import phone_rate

    item = ProbeItem("a", "content", "audio/a.flac", 2.0, "v", "v", "x",
                     (("SIL", 0.0, 0.5), ("a", 0.5, 1.0), ("b", 1.0, 1.5), ("SIL", 1.5, 2.0)), None, "a b")  # fmt: skip
    assert phone_rate([item]) == 1.0 and math.isfinite(phone_rate([item]))


def test_bpe_rate_for_the_tokenizer_the_model_was_fitted_on(probes, tmp_path):
    from slmtok.bpe.fit import fit

    train = sorted(str(p) for p in (probes / "audio").glob("train-*.flac"))
    fit(train, "mfcc-km", tmp_path / "bpe", vocab_size=160, dedup=True)
    settings = SuiteSettings(
        skip_lm=True, abx_max_triplets=50, text_ceiling=False, bpe=(str(tmp_path / "bpe"),)
    )
    summary = Suite(probes, tmp_path / "r", settings).run(_specs(["mfcc-km", "random-codes"]))
    m = _metrics(summary, "mfcc-km")["metrics"]
    assert 0 < m["bpe_rate"]["value"] < m["dedup_rate"]["value"]  # merges shorten the deduplicated units
    assert "bpe_rate" not in _metrics(summary, "random-codes")["metrics"]  # fitted on another tokenizer


@pytest.fixture(scope="module")
def tiny_recipe():
    from slmtok.probes.lm_fitness import Recipe

    return Recipe(n_layer=1, n_head=2, n_embd=32, block_size=64, batch_size=4, max_steps=10, warmup_steps=2,
                  bootstrap=100)  # fmt: skip


@pytest.fixture(scope="module")
def with_lm(probes, tiny_recipe, tmp_path_factory):
    settings = SuiteSettings(abx_max_triplets=50, recipe=tiny_recipe)
    out = tmp_path_factory.mktemp("lm") / "r"
    return Suite(probes, out, settings).run(_specs(["random-codes", "mfcc-km"])), out


def test_lm_fitness_stage_with_a_tiny_recipe(with_lm):
    summary, out = with_lm
    assert summary["settings"]["recipe"]["max_steps"] == 10
    for key in ("random-codes", TEXT_CEILING):
        agg = _metrics(summary, key)
        assert agg["stages"]["lm_fitness"] == "ok", agg["errors"]
        lexical = agg["metrics"]["lexical_accuracy"]
        assert lexical["n"] == 3 and lexical["low"] <= lexical["value"] <= lexical["high"]
        assert math.isfinite(agg["metrics"]["valid_bits_per_second"]["value"])
        assert 0 <= agg["metrics"]["score_lm"]["value"] <= 1
    ceiling = _metrics(summary, TEXT_CEILING)
    assert "same text" in ceiling["not_measured"]["acoustic_accuracy"]  # no acoustic pairs to tell apart
    _, rows, _ = read_results(out)
    lm_row = next(r for r in rows if r["tokenizer"] == "random-codes" and r["stage"] == "lm_fitness")
    assert lm_row["detail"]["headline"] == "mean" and lm_row["detail"]["lexical"]["sum"]["n_pairs"] == 3


def test_cli_probes_run_takes_repeated_tokenizers(probes, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["probes", "run", str(probes), "-t", "mfcc-km", "-t", "random-codes", "-o", str(out), "--skip-lm",
            "--no-text-ceiling", "--abx-triplets", "50", "--threads", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    aggregates = json.loads(capsys.readouterr().out)
    assert [a["tokenizer"] for a in aggregates] == ["mfcc-km", "random-codes"]
    assert read_results(out)[0]["settings"]["abx_max_triplets"] == 50


def test_lm_fitness_in_worker_processes_gives_the_same_results(probes, tiny_recipe, with_lm, tmp_path):
    serial, _ = with_lm
    settings = SuiteSettings(abx_max_triplets=50, recipe=tiny_recipe, text_ceiling=False)
    messages: list[str] = []
    parallel = Suite(probes, tmp_path / "r", settings, jobs=2, progress=messages.append).run(
        _specs(["random-codes"])
    )
    assert sum("started in a worker process" in m for m in messages) == 1
    for key in ("random-codes",):
        a, b = _metrics(serial, key), _metrics(parallel, key)
        assert a["stages"] == b["stages"] and a["metrics"] == b["metrics"], key
    _, rows, _ = read_results(tmp_path / "r")
    assert all(r["compute_seconds"] > 0 for r in rows if r["stage"] == "lm_fitness")
    assert not (tmp_path / "r" / WORK).exists()
