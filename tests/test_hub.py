"""The checkpoint hub: cards, file:// and HTTP downloads (resumed), checksums, offline errors, safe loading.

Every download here is from a file the test writes, served from ``file://`` or from an HTTP server on
127.0.0.1 that the test starts; nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from slmtok import hub
from slmtok.cli.main import main as cli
from slmtok.hub.download import RecordedChecksumWarning, read_record


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SLMTOK_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SLMTOK_CARDS", raising=False)
    return tmp_path / "home"


def write_card(folder: Path, name: str, files: list[dict], family: str = "codec") -> Path:
    lines = [
        f'name = "{name}"',
        f'title = "test card {name}"',
        f'family = "{family}"',
        'license = "MIT"',
        'source = "https://example.org"',
        "sample_rate = 16000",
        "frame_rate = 50",
        "codebooks = 4",
        "codebook_size = 1024",
    ]
    for f in files:
        lines.append("[[files]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in f.items()]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def payload(n: int = 300_000, seed: int = 0) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (n // 32) + b"x" * (n % 32)


# ------------------------------------------------------------------------------------------ cards
def test_builtin_cards_parse_and_name_their_files():
    names = hub.list_cards()
    for name in ("encodec-24khz", "encodec-48khz", "dac-16khz", "dac-24khz", "dac-44khz", "speechtokenizer"):
        assert name in names
    for name in names:
        card = hub.get_card(name)
        assert card.name == name and card.license and card.source.startswith("https://")
        assert card.files and all(f.location.startswith("https://") for f in card.files)
    assert hub.list_cards("dac-*") == ["dac-16khz", "dac-24khz", "dac-44khz"]
    assert hub.get_card("dac-44khz").bitrate == pytest.approx(44100 / 512 * 9 * 10)


def test_encodec_cards_match_the_encodec_package():
    from encodec import model as encodec_model

    source = inspect.getsource(encodec_model.EncodecModel)
    for rate in ("24khz", "48khz"):
        name = re.search(rf"checkpoint_name = '(encodec_{rate}-[0-9a-f]+\.th)'", source).group(1)
        entry = hub.get_card(f"encodec-{rate}").file("weights")
        assert entry.filename == name
        assert entry.url == encodec_model.ROOT_URL + name
        assert entry.sha256_prefix == name.split("-")[1].split(".")[0]


def test_dac_cards_match_the_dac_package():
    from dac.utils import __MODEL_LATEST_TAGS__, __MODEL_URLS__

    for rate in ("16khz", "24khz", "44khz"):
        tag = __MODEL_LATEST_TAGS__[(rate, "8kbps")]
        entry = hub.get_card(f"dac-{rate}").file("weights")
        assert entry.url == __MODEL_URLS__[(rate, tag, "8kbps")]
        assert entry.filename == f"weights_{rate}_8kbps_{tag}.pth"


def test_card_errors(tmp_path):
    with pytest.raises(hub.CardError, match="did you mean"):
        hub.get_card("dac-44khzz")
    bad = write_card(tmp_path, "bad", [{"filename": "w.bin", "url": "ftp://x/w.bin"}])
    with pytest.raises(hub.CardError, match="must start with"):
        hub.get_card(bad)
    bad = write_card(tmp_path, "bad2", [{"filename": "w.bin", "url": "https://x/w.bin", "sha256": "abc"}])
    with pytest.raises(hub.CardError, match="64 hex"):
        hub.get_card(bad)
    with pytest.raises(hub.CardError, match="no 'config' file"):
        hub.get_card("dac-44khz").file("config")


def test_user_card_folders(tmp_path, monkeypatch):
    write_card(tmp_path, "my-codec", [{"filename": "w.bin", "url": "https://example.org/w.bin"}])
    monkeypatch.setenv("SLMTOK_CARDS", str(tmp_path))
    assert "my-codec" in hub.list_cards()
    assert hub.get_card("my-codec").file().url == "https://example.org/w.bin"


# ------------------------------------------------------------------------------------------ file://
def test_file_url_download_is_verified_and_cached(tmp_path, home):
    data = payload()
    src = tmp_path / "weights.bin"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    card = write_card(
        tmp_path, "t-file", [{"filename": "w.bin", "url": src.as_uri(), "sha256": digest, "size": len(data)}]
    )
    path = hub.fetch(card)
    assert path == home / "hub" / "t-file" / "w.bin" and path.read_bytes() == data
    assert read_record(path)["verified"] == "sha256" and hub.is_sha256_verified(path)
    src.unlink()  # a second fetch uses the cache
    assert hub.fetch(card) == path
    info = hub.fetch_info(card)
    assert info["cached"] and info["sha256"] == digest


def test_checksum_mismatch_is_refused(tmp_path, home):
    src = tmp_path / "weights.bin"
    src.write_bytes(payload())
    card = write_card(tmp_path, "t-bad", [{"filename": "w.bin", "url": src.as_uri(), "sha256": "0" * 64}])
    with pytest.raises(hub.ChecksumError, match="refusing"):
        hub.fetch(card)
    assert not (home / "hub" / "t-bad" / "w.bin").exists()
    card = write_card(
        tmp_path, "t-pre", [{"filename": "w.bin", "url": src.as_uri(), "sha256_prefix": "ffff0000"}]
    )
    with pytest.raises(hub.ChecksumError, match="starts with ffff0000"):
        hub.fetch(card)


def test_cached_file_that_changed_is_refused(tmp_path, home):
    src = tmp_path / "weights.bin"
    src.write_bytes(payload())
    digest = hashlib.sha256(payload()).hexdigest()
    card = write_card(tmp_path, "t-chg", [{"filename": "w.bin", "url": src.as_uri(), "sha256": digest}])
    path = hub.fetch(card)
    path.write_bytes(payload(seed=1))
    with pytest.raises(hub.ChecksumError):
        hub.fetch(card)


def test_no_published_sha256_is_recorded_at_first_download(tmp_path):
    src = tmp_path / "weights.bin"
    src.write_bytes(payload())
    card = write_card(tmp_path, "t-rec", [{"filename": "w.bin", "url": src.as_uri(), "sha256": ""}])
    digest = hashlib.sha256(payload()).hexdigest()
    with pytest.warns(RecordedChecksumWarning, match=digest):
        path = hub.fetch(card)
    assert read_record(path) | {"verified": "recorded", "sha256": digest} == read_record(path)
    assert not hub.is_sha256_verified(path)
    path.write_bytes(payload(seed=2))  # later uses are checked against the record
    with pytest.raises(hub.ChecksumError, match="recorded at first download"):
        hub.fetch(card)


# ------------------------------------------------------------------------------------------ offline
def test_offline_error_names_file_url_and_destination(tmp_path, monkeypatch, home):
    monkeypatch.setenv("SLMTOK_OFFLINE", "1")
    with pytest.raises(hub.OfflineError) as error:
        hub.fetch("dac-44khz")
    message = str(error.value)
    target = home / "hub" / "dac-44khz" / "weights_44khz_8kbps_0.0.1.pth"
    assert "\n" not in message
    assert "weights_44khz_8kbps_0.0.1.pth" in message
    assert (
        "https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.1/weights.pth" in message
    )
    assert str(target) in message
    assert not (home / "hub").exists()
    with pytest.raises(hub.OfflineError, match="huggingface.co/fnlp/SpeechTokenizer"):
        hub.fetch("speechtokenizer", "config")


def test_file_put_by_hand_is_used_offline(tmp_path, monkeypatch, home):
    data = payload()
    card = write_card(
        tmp_path,
        "t-hand",
        [
            {
                "filename": "w.bin",
                "url": "https://example.invalid/w.bin",
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        ],
    )
    monkeypatch.setenv("SLMTOK_OFFLINE", "1")
    target = hub.cache_path(card)
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    assert hub.fetch(card) == target and hub.is_sha256_verified(target)


def test_unreachable_server_gives_the_offline_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    card = write_card(tmp_path, "t-down", [{"filename": "w.bin", "url": f"http://127.0.0.1:{port}/w.bin"}])
    with pytest.raises(hub.OfflineError, match=f"127.0.0.1:{port}/w.bin"):
        hub.fetch(card)


# ------------------------------------------------------------------------------------------ HTTP resume
class _Server:
    """Serves one payload with Range support; the first GET can be cut after ``cut`` bytes."""

    def __init__(self, data: bytes, cut: int | None) -> None:
        self.data, self.cut, self.requests = data, cut, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                rng = self.headers.get("Range")
                owner.requests.append(rng)
                start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if rng else 0
                body = owner.data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(owner.data) - 1}/{len(owner.data)}"
                    )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.cut is not None:
                    body, owner.cut = body[: owner.cut], None  # drop the connection mid-way, once
                self.wfile.write(body)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w.bin"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_interrupted_http_download_is_resumed(tmp_path, home):
    data = payload(3_000_000)
    server = _Server(data, cut=1_000_000)
    try:
        card = write_card(
            tmp_path,
            "t-http",
            [{"filename": "w.bin", "url": server.url, "sha256": hashlib.sha256(data).hexdigest()}],
        )
        with pytest.raises(hub.DownloadError, match="resume"):
            hub.fetch(card)
        part = home / "hub" / "t-http" / "w.bin.part"
        assert part.stat().st_size == 1_000_000
        seen = []
        path = hub.fetch(card, progress=lambda done, total: seen.append((done, total)))
        assert server.requests == [None, "bytes=1000000-"]
        assert path.read_bytes() == data and not part.exists()
        assert seen[0][0] > 1_000_000 and seen[-1] == (len(data), len(data))
        assert hub.is_sha256_verified(path)
    finally:
        server.close()


def test_http_download_with_wrong_checksum_is_refused(tmp_path, home):
    server = _Server(payload(), cut=None)
    try:
        card = write_card(
            tmp_path, "t-http-bad", [{"filename": "w.bin", "url": server.url, "sha256": "1" * 64}]
        )
        with pytest.raises(hub.ChecksumError):
            hub.fetch(card)
        assert not list((home / "hub" / "t-http-bad").glob("w.bin*"))
    finally:
        server.close()


# ------------------------------------------------------------------------------------------ safe loading
def test_checkpoints_needing_pickle_need_trust_or_a_verified_card(tmp_path):
    import numpy as np
    import torch

    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "metadata": {"scale": np.float64(2.0)}}, path)
    with pytest.raises(hub.UntrustedCheckpointError, match="trust=True"):
        hub.load_torch_checkpoint(path)
    assert float(hub.load_torch_checkpoint(path, trust=True)["metadata"]["scale"]) == 2.0
    card = write_card(
        tmp_path,
        "t-pickle",
        [{"filename": "ckpt.pth", "url": path.as_uri(), "sha256": hub.sha256_file(path)}],
    )
    cached = hub.fetch(card)
    assert float(hub.load_torch_checkpoint(cached)["metadata"]["scale"]) == 2.0
    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.zeros(3)}, plain)
    assert torch.equal(hub.load_torch_checkpoint(plain)["w"], torch.zeros(3))


# ------------------------------------------------------------------------------------------ CLI
def test_cli_download_and_list(tmp_path, capsys, home):
    src = tmp_path / "weights.bin"
    src.write_bytes(payload())
    digest = hashlib.sha256(payload()).hexdigest()
    card = write_card(tmp_path, "t-cli", [{"filename": "w.bin", "url": src.as_uri(), "sha256": digest}])
    assert cli(["download", str(card)]) == 0
    out = capsys.readouterr().out
    assert str(home / "hub" / "t-cli" / "w.bin") in out and digest in out and "matches the card" in out
    assert cli(["download", "--list"]) == 0
    assert "dac-44khz" in capsys.readouterr().out
    assert cli(["download", "dac-44khz", "--offline"]) == 1
    assert "put it at" in capsys.readouterr().err


def test_list_and_info_show_codecs_from_their_cards_without_weights(capsys, home):
    """No weights here: ``slmtok list`` / ``info`` describe each codec from its card, downloading nothing."""
    assert cli(["list", "dac-*", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == ["dac-16khz", "dac-24khz", "dac-44khz"]
    row = rows["dac-44khz"]
    assert not row["available"] and not row["weights_cached"]  # listed from its card, not loadable here
    assert row["bitrate"] == pytest.approx(44100 / 512 * 9 * 10)
    assert row["codebook_sizes"] == [1024] * 9 and row["kind"] == "acoustic"
    assert cli(["info", "dac-44khz"]) == 0
    out = capsys.readouterr().out
    assert "https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.1/weights.pth" in out
    assert "7752.0 bits/s (7.75 kbps)" in out and "sha256" in out and "not downloaded" in out
    assert cli(["info", "encodec-24khz", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights_sha256_prefix"] == "d7cc33bc" and info["bitrate"] == pytest.approx(6000.0)
    assert info["max_codebooks"] == 32 and info["n_codebooks"] == 8
    assert cli(["info", "speechtokenizer", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "hybrid" and info["semantic_codebooks"] == [0]
    assert not (home / "hub").exists()


def test_card_rows_agree_with_the_loaded_codec(tmp_path, monkeypatch):
    """What the card says (rates, codebooks, kbps) is what the loaded model computes: the DAC 44.1 kHz
    architecture (a random-weight stand-in of the published size) put in the cache by hand."""
    import warnings

    import slmtok
    from slmtok.codecs import standins
    from slmtok.hub.listing import card_row

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = hub.cache_path("dac-44khz")
        target.parent.mkdir(parents=True)
        standins.write_dac(target, "44khz", tiny=True)
        with pytest.warns(RecordedChecksumWarning):
            tok = slmtok.load("dac-44khz")
    row = card_row("dac-44khz")
    card = tok.card.to_dict()
    for key in (
        "kind",
        "sample_rate",
        "channels",
        "frame_rate",
        "codebook_sizes",
        "max_codebooks",
        "bitrate",
    ):
        assert row[key] == pytest.approx(card[key]), key
    assert row["weights_cached"] and row["weights_sha256"] == hub.sha256_file(target)


def test_checkpoints_naming_code_are_refused_even_when_trusted(tmp_path):
    import argparse

    import torch

    path = tmp_path / "code.pth"
    torch.save({"w": torch.ones(2), "args": argparse.Namespace(lr=1.0)}, path)
    for trust in (False, True):
        with pytest.raises(hub.UntrustedCheckpointError, match="argparse.Namespace, which is code"):
            hub.load_torch_checkpoint(path, trust=trust)
