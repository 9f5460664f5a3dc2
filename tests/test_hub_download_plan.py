"""``slmtok download NAME`` fetches every file a tokenizer needs, shows the plan first, names every
missing file in one error, and fails in well under a second when the network is absent; ``slmtok list``
says truthfully whether each tokenizer can be used here.

References are independent of slmtok's code: the files each test card names (written by the test),
the bytes the test serves from ``file://``, and wall-clock time measured around a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmtok import hub
from slmtok.cli.main import main as cli
from slmtok.hub import listing


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    for var in ("SLMTOK_OFFLINE", "HF_HUB_OFFLINE", "SLMTOK_CARDS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def _card(folder: Path, name: str, family: str, files: list[dict], **extra) -> None:
    lines = [
        f'name = "{name}"',
        f'title = "test {name}"',
        f'family = "{family}"',
        'license = "MIT"',
        'source = "https://example.org"',
        "sample_rate = 16000",
        "frame_rate = 50",
        "codebooks = 1",
        "codebook_size = 10",
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    for f in files:
        lines.append("[[files]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in f.items()]
    (folder / f"{name}.toml").write_text("\n".join(lines) + "\n")


def _file(src: Path, name: str, role: str, data: bytes, *, exists: bool = True) -> dict:
    path = src / name
    if exists:
        path.write_bytes(data)
    return {
        "filename": name,
        "url": path.as_uri(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "role": role,
    }


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    """A semantic bundle card (features + k-means + vocoder cards), its files served from file://."""
    cards, src = tmp_path / "cards", tmp_path / "src"
    cards.mkdir()
    src.mkdir()

    def make(missing: tuple[str, ...] = ()) -> dict[str, bytes]:
        data = {n: n.encode() * 1000 for n in ("feat.pt", "km.bin", "gen.pt", "voc.json")}
        _card(
            cards,
            "tfeat-ls",
            "features",
            [_file(src, "feat.pt", "weights", data["feat.pt"], exists="feat.pt" not in missing)],
        )
        _card(
            cards,
            "tvoc",
            "vocoder",
            [
                _file(src, "gen.pt", "weights", data["gen.pt"], exists="gen.pt" not in missing),
                _file(src, "voc.json", "config", data["voc.json"], exists="voc.json" not in missing),
            ],
        )
        _card(
            cards,
            "tbundle",
            "semantic",
            [_file(src, "km.bin", "kmeans", data["km.bin"], exists="km.bin" not in missing)],
            features="tfeat",
            layer=6,
            vocoder="tvoc",
        )
        monkeypatch.setenv("SLMTOK_CARDS", str(cards))
        return data

    return make


def test_bundle_download_fetches_features_kmeans_and_vocoder_with_a_plan(bundle, home, capsys):
    """The reference: the four files the test's cards name, byte for byte. On the old code only the
    k-means file (the semantic card's own) was fetched."""
    data = bundle()
    assert cli(["download", "tbundle"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "4 files: 27.0 kB"  # (7 + 6 + 6 + 8) x 1000 bytes, shown before fetching
    for card, name in (
        ("tfeat-ls", "feat.pt"),
        ("tbundle", "km.bin"),
        ("tvoc", "gen.pt"),
        ("tvoc", "voc.json"),
    ):
        assert (home / "hub" / card / name).read_bytes() == data[name]
        assert f"{card}/{name}" in out
    assert "to fetch" in out
    assert cli(["download", "tbundle"]) == 0  # a second time: all cached
    assert capsys.readouterr().out.count("cached") >= 4


def test_every_missing_file_is_named_in_one_error(bundle, home, capsys):
    """Two of the four files are absent at their source: one error line names both (and where to put
    them); the two that exist are still fetched. The old code stopped at the first failure."""
    bundle(missing=("feat.pt", "voc.json"))
    assert cli(["download", "tbundle"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("slmtok: error: 2 of 4 files")
    assert "feat.pt" in err and "voc.json" in err
    assert str(home / "hub" / "tfeat-ls" / "feat.pt") in err
    assert (home / "hub" / "tbundle" / "km.bin").exists() and (home / "hub" / "tvoc" / "gen.pt").exists()


def _run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "slmtok.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )
    return done, time.perf_counter() - start


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("SLMTOK_OFFLINE", "HF_HUB_OFFLINE", "SLMTOK_CARDS")
    }
    return {**env, "SLMTOK_HOME": str(home), **extra}


def test_hanging_name_lookup_is_one_line_fast(home, monkeypatch, capsys):
    """A name lookup that hangs (a dead DNS server; simulated by a ``socket.getaddrinfo`` that sleeps
    30 s) for the Hugging Face-hosted snac-24khz: one error line naming both files, exit 1, within 3 s
    (the old code waited in huggingface_hub's own lookups and retries)."""
    from slmtok.hub import download

    def hang(*args, **kwargs):
        time.sleep(30)
        raise socket.gaierror("timed out")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    monkeypatch.setattr(download, "_PROBES", {})
    start = time.perf_counter()
    assert cli(["download", "snac-24khz"]) == 1
    seconds = time.perf_counter() - start
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no answer within" in lines[0], lines
    assert "config.json" in lines[0] and "pytorch_model.bin" in lines[0]
    assert seconds < 3.0, seconds


def _has_network(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(_has_network("dl.fbaipublicfiles.com"), reason="needs a machine without network")
def test_offline_bundle_download_is_one_line_in_under_a_second(home):
    """No network on this machine: the whole bundle (4 files) fails with one line, quickly."""
    done, seconds = _run(["download", "hubert-base-l6-km100"], _env(home))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("slmtok: error: 4 of 4 files are not in the cache") and "km100.bin" in lines[0]
    print(f"offline download failed in {seconds:.2f} s")
    assert seconds < 3.0, seconds


# ------------------------------------------------------------------------------------------ list
def test_list_json_is_truthful_about_absent_weights(home, capsys):
    """No weights in this test's empty cache: a codec is listed from its card but not ``available``
    (the old code said ``available: true``); an embedded tokenizer (no weights) is available."""
    assert cli(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    dac = rows["dac-44khz"]
    assert dac["available"] is False and dac["weights"] == "missing" and dac["files_needed"] == 1
    assert "slmtok download dac-44khz" in dac["reason"] and "1 of 1 file not" in dac["reason"]
    assert rows["hubert-base-l6-km100"]["files_needed"] == 4  # features + k-means + vocoder weights, config
    assert rows["mel-rvq"]["available"] is True and rows["mel-rvq"]["weights"] == "embedded"
    assert not (home / "hub").exists()  # nothing downloaded


def test_availability_follows_the_cache_and_the_package(tmp_path, home, monkeypatch):
    """A card whose file was fetched (and recorded) is available; one whose package is not installed
    is not, and says why."""
    src = tmp_path / "w.bin"
    data = b"w" * 5000
    src.write_bytes(data)
    cards = tmp_path / "cards"
    cards.mkdir()
    _card(
        cards,
        "tcodec",
        "codec",
        [{"filename": "w.bin", "url": src.as_uri(), "sha256": hashlib.sha256(data).hexdigest()}],
    )
    monkeypatch.setenv("SLMTOK_CARDS", str(cards))
    before = listing.availability("tcodec")
    assert before["available"] is False and before["missing_files"] == [
        str(home / "hub" / "tcodec" / "w.bin")
    ]
    hub.fetch("tcodec")
    assert listing.availability("tcodec")["available"] is True
    monkeypatch.setitem(listing.UPSTREAM_PACKAGE, "codec", "no_such_package_slmtok_test")
    after = listing.availability("tcodec")
    assert after["available"] is False and "no_such_package_slmtok_test is not installed" in after["reason"]


def test_list_with_no_match_exits_non_zero(capsys):
    assert cli(["list", "NOMATCH"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NOMATCH" in err[0]


def test_embedded_tokenizer_needs_no_download_and_offline_says_why(capsys, home):
    """``mel-rvq`` has no weights to fetch: exit 0 (the old code: 'unknown model card'). ``--offline``
    names itself as the reason (the old message blamed environment variables that were not set)."""
    assert cli(["download", "mel-rvq"]) == 0
    assert "nothing to download" in capsys.readouterr().out
    assert cli(["download", "snac-24khz", "--offline"]) == 1
    err = capsys.readouterr().err
    assert "--offline" in err and "HF_HUB_OFFLINE is set" not in err and err.count("\n") == 1
