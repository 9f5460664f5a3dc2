"""``slmtok encode-corpus`` restarts: from another working directory, with failed inputs fixed or retried,
with a changed shard size (refused), with a local ``--checkpoint`` (compared by sha256), and with the
input formats of ``slmtok.input_formats`` (a WebDataset tar).

References: the audio is made by espeak-ng and read with soundfile; sha256 with hashlib; plan files are
read as plain JSON.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import slmtok
from slmtok.cli.main import main

TOKENIZER = "mfcc-km"
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture
def data(tmp_path) -> Path:
    """``tmp/a/data``: four espeak-ng utterances and one broken file."""
    root = tmp_path / "a" / "data"
    root.mkdir(parents=True)
    for i in range(4):
        subprocess.run(["espeak-ng", "-w", str(root / f"u{i}.wav"), f"Corpus item {i}."], check=True)
    (root / "zz_broken.wav").write_bytes(b"RIFF not a wave file" * 10)
    return root


def corpus(capsys, monkeypatch, cwd: Path, *args) -> tuple[int, dict | None, str]:
    """Run ``encode-corpus ... --json`` in ``cwd``: exit code, summary (or None), stderr."""
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    rc = main(["encode-corpus", *map(str, args), "-t", TOKENIZER, "--json"])
    captured = capsys.readouterr()
    try:
        summary = json.loads(captured.out)
    except ValueError:
        summary = None
    return rc, summary, captured.err


def plan_paths(out: Path) -> list[str]:
    plan = json.loads((out / "plan.json").read_text())
    return [item["path"] for shard in plan["shards"] for item in shard]


def test_resume_from_another_folder(tmp_path, capsys, monkeypatch, data):
    """Old code stored ``data/u0.wav`` (relative to the first run's folder): a restart from elsewhere was
    refused as 'other inputs', or failed every remaining item."""
    rc, summary, err = corpus(capsys, monkeypatch, tmp_path / "a", "data", "-o", "out", "--shard-size", "2")
    out = tmp_path / "a" / "out"
    assert rc == 3 and summary["encoded"] == 4 and summary["failures"] == 1, err
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in plan_paths(out))
    (out / "shards" / "shard-00001.safetensors").unlink()  # a run killed before this shard
    (tmp_path / "b").mkdir()
    rc, summary, err = corpus(capsys, monkeypatch, tmp_path / "b", data, "-o", out, "--shard-size", "2")
    assert rc == 3, err
    assert summary["shards_this_run"] == 1 and summary["encoded"] == 4 and summary["failures"] == 1
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["id"] for f in failures] == ["zz_broken"]


def test_a_changed_shard_size_is_refused(tmp_path, capsys, monkeypatch, data):
    corpus(capsys, monkeypatch, tmp_path / "a", "data", "-o", "out", "--shard-size", "2")
    rc, _, err = corpus(capsys, monkeypatch, tmp_path / "a", "data", "-o", "out", "--shard-size", "3")
    assert rc == 1 and err.count("\n") == 1 and "--shard-size 2 -> 3" in err, err


def test_failed_inputs_are_retried(tmp_path, capsys, monkeypatch, data):
    """A broken input replaced by a readable one is encoded on the next run (by default); a file still
    unreadable is left alone unless --retry-failed."""
    run = ("data", "-o", "out", "--shard-size", "2")
    rc, summary, _ = corpus(capsys, monkeypatch, tmp_path / "a", *run)
    assert rc == 3 and summary["failures"] == 1
    rc, summary, _ = corpus(capsys, monkeypatch, tmp_path / "a", *run)
    assert rc == 3 and summary["shards_this_run"] == 0  # still broken: nothing to do
    rc, summary, err = corpus(capsys, monkeypatch, tmp_path / "a", *run, "--retry-failed")
    assert rc == 3 and summary["shards_this_run"] == 1 and summary["failures"] == 1
    assert "--retry-failed" in err
    subprocess.run(["espeak-ng", "-w", str(data / "zz_broken.wav"), "Fixed now."], check=True)
    rc, summary, err = corpus(capsys, monkeypatch, tmp_path / "a", *run)
    assert rc == 0, err
    assert summary["shards_this_run"] == 1 and summary["failures"] == 0 and summary["encoded"] == 5
    index = [json.loads(line) for line in (tmp_path / "a" / "out" / "index.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in index) == ["u0", "u1", "u2", "u3", "zz_broken"]
    # an input that was encoded changing on disk is still refused (its tokens would be stale)
    subprocess.run(["espeak-ng", "-w", str(data / "u0.wav"), "Another text entirely."], check=True)
    rc, _, err = corpus(capsys, monkeypatch, tmp_path / "a", *run)
    assert rc == 1 and "inputs" in err, err


def test_checkpoint_is_recorded_by_sha256(tmp_path, capsys, monkeypatch, data):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from slmtok.tokenizers.baselines.weights import default_weights

    weights = tmp_path / "a" / "w.safetensors"
    shutil.copy(default_weights(TOKENIZER), weights)
    args = ("data", "-o", "out", "--shard-size", "2", "--checkpoint", "w.safetensors")
    rc, summary, err = corpus(capsys, monkeypatch, tmp_path / "a", *args)
    assert rc == 3 and summary["encoded"] == 4, err
    request = json.loads((tmp_path / "a" / "out" / "plan.json").read_text())["request"]
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert request["weights"] == [["checkpoint", None, sha]]
    # the same bytes elsewhere, from another folder: the same run
    (tmp_path / "b").mkdir()
    shutil.copy(weights, tmp_path / "b" / "copy.safetensors")
    rc, summary, err = corpus(capsys, monkeypatch, tmp_path / "b", data, "-o", tmp_path / "a" / "out",
                              "--shard-size", "2", "--checkpoint", "copy.safetensors")  # fmt: skip
    assert rc == 3 and summary["shards_this_run"] == 0, err
    # the corpus tokens name their weights by resolved path and sha256 (never trust), so they decode
    # without being told where the weights are
    from slmtok.corpus import iter_items

    _, tokens = next(iter(iter_items(tmp_path / "a" / "out")))
    assert [(w.sha256, Path(w.path)) for w in tokens.tokenizer.weights] == [(sha, weights.resolve())]
    assert "trust" not in tokens.tokenizer.options
    assert slmtok.load_for(tokens).decode(tokens).wav.shape[-1] > 0
    # other weights under the old name: refused, naming the weights
    with safe_open(str(weights), framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = tensors[name] * 1.01
    save_file(tensors, str(weights), metadata=meta)
    rc, _, err = corpus(capsys, monkeypatch, tmp_path / "a", *args)
    assert rc == 1 and err.count("\n") == 1 and "weights" in err, err


def test_corpus_of_a_webdataset_tar(tmp_path, capsys, monkeypatch, data):
    """Items inside a tar are encoded and resumed like files (paths in the plan: the tar, absolute)."""
    with tarfile.open(tmp_path / "a" / "s.tar", "w") as tar:
        for i in range(4):
            tar.add(data / f"u{i}.wav", arcname=f"k{i}.wav")
    rc, summary, err = corpus(capsys, monkeypatch, tmp_path / "a", "s.tar", "-o", "out", "--shard-size", "2")
    assert rc == 0 and summary["encoded"] == 4, err
    out = tmp_path / "a" / "out"
    assert set(plan_paths(out)) == {str(tmp_path / "a" / "s.tar")}
    (out / "shards" / "shard-00000.safetensors").unlink()
    (tmp_path / "b").mkdir()
    rc, summary, err = corpus(capsys, monkeypatch, tmp_path / "b", tmp_path / "a" / "s.tar", "-o", out,
                              "--shard-size", "2")  # fmt: skip
    assert rc == 0 and summary["shards_this_run"] == 1 and summary["encoded"] == 4, err


def _legacy(out: Path, base: Path) -> None:
    """Rewrite ``out/plan.json`` as slmtok 0.x wrote it: paths relative to ``base``, no ``cwd``, request
    items without sizes; its fingerprint is sha256 of the sorted-keys JSON of the plan (the 0.x format)."""
    data = json.loads((out / "plan.json").read_text())
    for shard in data["shards"]:
        for item in shard:
            item["path"] = str(Path(item["path"]).relative_to(base))
    listing = []
    for row in data["request"]["items"]:
        row["path"] = str(Path(row["path"]).relative_to(base))
        listing.append([row["id"], row["path"], row["start"], row["segment"], row.pop("size")])
    data["request"]["inputs"] = hashlib.sha256(json.dumps(sorted(listing)).encode()).hexdigest()
    del data["cwd"]
    plan = {k: data[k] for k in ("version", "tokenizer", "options", "card_hash", "n_codebooks", "shards")}
    data["fingerprint"] = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
    (out / "plan.json").write_text(json.dumps(data))


def test_a_relative_plan_of_an_older_version(tmp_path, capsys, monkeypatch, data):
    """Refused in one line from another folder; resumed from its own, and absolute from then on."""
    run = ("--shard-size", "2")
    rc, _, err = corpus(capsys, monkeypatch, tmp_path / "a", "data", "-o", "out", *run)
    out = tmp_path / "a" / "out"
    _legacy(out, tmp_path / "a")
    (out / "shards" / "shard-00001.safetensors").unlink()
    (tmp_path / "b").mkdir()
    rc, _, err = corpus(capsys, monkeypatch, tmp_path / "b", data, "-o", out, *run)
    assert rc == 1 and err.count("\n") == 1 and "from that folder" in err, err
    rc, summary, err = corpus(capsys, monkeypatch, tmp_path / "a", "data", "-o", "out", *run)
    assert rc == 3 and summary["shards_this_run"] == 1 and summary["encoded"] == 4, err
    assert all(Path(p).is_absolute() for p in plan_paths(out))
    (out / "shards" / "shard-00000.safetensors").unlink()
    rc, summary, err = corpus(capsys, monkeypatch, tmp_path / "b", data, "-o", out, *run)
    assert rc == 3 and summary["shards_this_run"] == 1 and summary["encoded"] == 4, err
