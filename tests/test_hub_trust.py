"""The hub never writes through a planted link, keeps what a first download resolved in one cache index
(not a sidecar), checks it on every later use, validates card fields, and reads legacy torch checkpoints
through the same restricted path (no code run).

References: expected digests are computed with ``hashlib`` on the bytes the test writes; checkpoints are
written by ``torch.save`` itself (zip and legacy formats); the Hugging Face calls are stand-ins that
record which revision they were asked for (nothing leaves the machine).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from slmtok import hub
from slmtok.hub import download
from slmtok.hub.download import RecordedChecksumWarning, index_path


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    for var in ("SLMTOK_OFFLINE", "HF_HUB_OFFLINE", "SLMTOK_CARDS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def write_card(folder: Path, name: str, files: list[dict]) -> Path:
    lines = [
        f'name = "{name}"',
        f'title = "test card {name}"',
        'family = "codec"',
        'license = "MIT"',
        'source = "https://example.org"',
        "sample_rate = 16000",
    ]
    for f in files:
        lines.append("[[files]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in f.items()]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def payload(seed: int = 0, n: int = 100_000) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (n // 32)


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "weights.bin"
    src.write_bytes(payload())
    return src


# ------------------------------------------------------------------------------------------ links
@pytest.mark.parametrize("planted", [".part", ".lock"])
def test_planted_symlink_in_the_cache_is_never_written_through(tmp_path, home, source, planted):
    """A symlink at ``<file>.part`` (or the lock file) pointing outside: the download replaces it and the
    outside file keeps its bytes (old code opened ``.part`` with ``open(..., "ab")``, following it)."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    card = write_card(tmp_path, "t-link", [{"filename": "w.bin", "url": source.as_uri(), "sha256": digest}])
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    folder = home / "hub" / "t-link"
    folder.mkdir(parents=True)
    link = folder / ("w.bin.part" if planted == ".part" else ".w.bin.lock")
    link.symlink_to(outside)
    path = hub.fetch(card)
    assert path.read_bytes() == source.read_bytes() and not path.is_symlink()
    assert outside.read_bytes() == b"precious"


def test_planted_hard_link_part_file_is_replaced(tmp_path, home, source):
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    card = write_card(tmp_path, "t-hard", [{"filename": "w.bin", "url": source.as_uri(), "sha256": digest}])
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    folder = home / "hub" / "t-hard"
    folder.mkdir(parents=True)
    os.link(outside, folder / "w.bin.part")
    assert hub.fetch(card).read_bytes() == source.read_bytes()
    assert outside.read_bytes() == b"precious"


def test_symlink_at_the_final_name_is_refused(tmp_path, home, source):
    card = write_card(tmp_path, "t-final", [{"filename": "w.bin", "url": source.as_uri()}])
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"precious")
    (home / "hub" / "t-final").mkdir(parents=True)
    (home / "hub" / "t-final" / "w.bin").symlink_to(outside)
    with pytest.raises(hub.CacheError, match="symbolic link") as error:
        hub.fetch(card)
    assert "\n" not in str(error.value) and outside.read_bytes() == b"precious"


# ------------------------------------------------------------------------------------------ the index
def test_first_download_is_recorded_in_the_index_and_an_edit_is_refused(tmp_path, home, source):
    """No sidecar: the record is in ``$SLMTOK_HOME/index.json``. Editing the weights, even with the
    modification time put back, is a one-line ChecksumError on the next use."""
    card = write_card(tmp_path, "t-idx", [{"filename": "w.bin", "url": source.as_uri()}])
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    with pytest.warns(RecordedChecksumWarning, match=digest):
        path = hub.fetch(card)
    index = json.loads(index_path().read_text())
    record = index["hub/t-idx/w.bin"]
    assert record["sha256"] == digest and record["url"] == source.as_uri() and record["time"]
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".json")] == []  # no sidecar
    st = path.stat()
    with open(path, "r+b") as f:  # same size, one byte changed, mtime restored
        f.write(b"\x00" if source.read_bytes()[:1] != b"\x00" else b"\x01")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(hub.ChecksumError, match="recorded at first download") as error:
        hub.fetch(card)
    assert "\n" not in str(error.value)
    # deleting the file does not reset the record: a different re-download is refused too
    path.unlink()
    source.write_bytes(payload(seed=5))
    with pytest.raises(hub.ChecksumError, match="recorded at first download"):
        hub.fetch(card)
    assert not path.exists()
    assert hub.forget(card) is True  # accepting the publisher's new file is explicit
    with pytest.warns(RecordedChecksumWarning):
        assert hub.fetch(card).read_bytes() == payload(seed=5)


def test_damaged_index_is_one_line(tmp_path, home, source):
    card = write_card(tmp_path, "t-bad-index", [{"filename": "w.bin", "url": source.as_uri()}])
    home.mkdir(parents=True)
    index_path().write_text("{not json")
    with pytest.raises(hub.CacheError, match="index") as error:
        hub.fetch(card)
    assert "\n" not in str(error.value)


class _FakeHub:
    """Stands in for ``huggingface_hub``'s network calls: resolves ``main`` to a commit and serves bytes
    per revision, recording which revision each download asked for."""

    def __init__(self, monkeypatch, files: dict[str, bytes], head: str, etag: str = '"0123abc"') -> None:
        import huggingface_hub

        self.files, self.head, self.asked, self.etag = files, head, [], etag
        monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", self.metadata)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.download)
        monkeypatch.setattr(download, "unreachable", lambda url: "")  # the hub is faked: no probe

    def metadata(self, url, **kwargs):
        from types import SimpleNamespace

        revision = url.split("/resolve/")[1].split("/")[0]
        commit = self.head if revision == "main" else revision
        return SimpleNamespace(commit_hash=commit, etag=self.etag, size=None, location=url)

    def download(self, repo_id, filename, revision=None, local_dir=None, **kwargs):
        self.asked.append(revision)
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(self.files[revision])
        return str(out)


def test_unpinned_hf_file_records_the_revision_and_is_checked_after(tmp_path, home, monkeypatch):
    old, new = "a" * 40, "b" * 40
    fake = _FakeHub(monkeypatch, {old: payload(1), new: payload(2)}, head=old)
    card = write_card(
        tmp_path, "t-hf", [{"filename": "w.bin", "hf_repo": "org/repo", "hf_filename": "w.bin"}]
    )
    assert "unpinned" in hub.get_card(card).file().provenance
    with pytest.warns(RecordedChecksumWarning):
        path = hub.fetch(card)
    record = json.loads(index_path().read_text())["hub/t-hf/w.bin"]
    assert fake.asked == [old] and record["revision"] == old
    assert record["sha256"] == hashlib.sha256(payload(1)).hexdigest()
    assert hub.fetch_info(card)["revision"] == old
    fake.head = new  # the repository moved on; a re-download still asks for the recorded commit
    path.unlink()
    assert hub.fetch(card).read_bytes() == payload(1) and fake.asked == [old, old]


def test_pinned_revision_is_what_is_downloaded(tmp_path, home, monkeypatch):
    pinned = "c" * 40
    fake = _FakeHub(monkeypatch, {pinned: payload(3)}, head="d" * 40)
    card = write_card(
        tmp_path,
        "t-pin",
        [
            {
                "filename": "w.bin",
                "hf_repo": "org/repo",
                "hf_filename": "w.bin",
                "revision": pinned,
                "sha256": hashlib.sha256(payload(3)).hexdigest(),
            }
        ],
    )
    assert hub.fetch(card).read_bytes() == payload(3) and fake.asked == [pinned]
    assert hub.is_sha256_verified(hub.cache_path(card))


# ------------------------------------------------------------------------------------------ cards
@pytest.mark.parametrize(
    "field",
    [
        {"filename": "w\u0000.bin"},
        {"filename": "../w.bin"},
        {"filename": "a\\b.bin"},
        {"filename": ".."},
        {"hf_filename": "../../etc/passwd"},
        {"hf_filename": "a/\u0000b"},
        {"revision": "main"},
        {"revision": 3},
        {"url": 5},
    ],
)
def test_bad_card_fields_are_one_line(tmp_path, field):
    entry = {"filename": "w.bin", "hf_repo": "org/repo", "hf_filename": "w.bin"} | field
    if "url" in field:
        entry = {"filename": "w.bin"} | field
    with pytest.raises(hub.CardError) as error:
        hub.get_card(write_card(tmp_path, "t-bad", [entry]))
    assert "\n" not in str(error.value)


def test_card_path_with_a_nul_byte_is_one_line(tmp_path):
    with pytest.raises(hub.CardError, match="NUL") as error:
        hub.get_card(str(tmp_path / "x\0y.toml"))
    assert "\n" not in str(error.value)


def test_builtin_cards_say_how_each_file_is_pinned():
    """A file with no sha256 on its card: the card's notes say the digest is recorded at first download;
    a Hugging Face file with no revision: the notes say it is unpinned. Revisions are 40-hex commits."""
    for name in hub.list_cards():
        card = hub.get_card(name)
        notes = " ".join(card.notes.split())
        for f in card.files:
            if not f.sha256:
                assert "recorded at first download" in notes, (name, f.filename)
            if f.hf_repo and not f.revision:
                assert "unpinned" in notes, (name, f.filename)
            assert f.revision == "" or len(f.revision) == 40


# ------------------------------------------------------------------------------------------ checkpoints
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_legacy_and_zip_checkpoints_share_one_policy(tmp_path, legacy):
    """``torch.save`` with ``_use_new_zipfile_serialization=False`` (legacy pickle) and the zip format:
    plain weights load, numpy values need trust or a verified card, code never runs, garbage is one line
    (old code: a ValueError traceback for a legacy file holding anything but tensors)."""
    import numpy as np
    import torch

    def save(obj, name):
        path = tmp_path / name
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        return path

    plain = save({"w": torch.arange(3.0)}, "plain.pt")
    assert torch.equal(hub.load_torch_checkpoint(plain)["w"], torch.arange(3.0))
    with_numpy = save({"w": torch.ones(2), "scale": np.float64(2.5)}, "numpy.pt")
    with pytest.raises(hub.UntrustedCheckpointError, match="trust=True") as error:
        hub.load_torch_checkpoint(with_numpy)
    assert "\n" not in str(error.value)
    assert float(hub.load_torch_checkpoint(with_numpy, trust=True)["scale"]) == 2.5
    digest = hashlib.sha256(with_numpy.read_bytes()).hexdigest()
    assert float(hub.load_torch_checkpoint(with_numpy, sha256=digest)["scale"]) == 2.5
    marker = tmp_path / "PAYLOAD_RAN"
    evil = save({"w": torch.ones(2), "x": _Payload(marker)}, "evil.pt")
    for trust in (False, True):
        with pytest.raises(hub.UntrustedCheckpointError, match="which is code") as error:
            hub.load_torch_checkpoint(evil, trust=trust)
        assert "\n" not in str(error.value)
    assert not marker.exists()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(plain.read_bytes()[: len(plain.read_bytes()) // 2])
    with pytest.raises((hub.CheckpointError, hub.UntrustedCheckpointError)) as error:
        hub.load_torch_checkpoint(cut)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------ one source
def test_published_bundles_come_from_their_cards():
    """Each published semantic bundle is its card: K is the card's codebook_size, its unit vocoder card
    has K units at the same rates; ``published.py`` holds no bundle facts of its own."""
    import inspect

    from slmtok.tokenizers.semantic import published

    names = [n for n in hub.list_cards() if hub.get_card(n).family == "semantic"]
    assert sorted(published.BUNDLES) == sorted(names)
    for name, spec in published.BUNDLES.items():
        card = hub.get_card(name)
        assert (spec.k, spec.layer, spec.features) == (
            card.codebook_size,
            card.extra["layer"],
            card.extra["features"],
        )
        assert spec.license == card.license and spec.source == card.source
        if spec.vocoder_card:
            vocoder = hub.get_card(spec.vocoder_card)
            assert vocoder.family == "vocoder" and vocoder.codebook_size == spec.k
            assert (vocoder.sample_rate, vocoder.frame_rate) == (card.sample_rate, card.frame_rate)
    source = inspect.getsource(published)
    assert not any(name in source for name in names)


def test_cli_forget_drops_the_record(tmp_path, home, source, capsys):
    from slmtok.cli.main import main as cli

    card = write_card(tmp_path, "t-cli-forget", [{"filename": "w.bin", "url": source.as_uri()}])
    with pytest.warns(RecordedChecksumWarning):
        assert cli(["download", str(card)]) == 0
    assert "hub/t-cli-forget/w.bin" in json.loads(index_path().read_text())
    assert cli(["download", str(card), "--forget"]) == 0
    assert "record dropped" in capsys.readouterr().out
    assert "hub/t-cli-forget/w.bin" not in json.loads(index_path().read_text())
    assert not hub.cache_path(card).exists()


def test_download_must_match_the_sha256_the_hub_lists(tmp_path, home, monkeypatch):
    """An LFS file's ETag is its sha256 (the LFS object id): a download that differs is refused."""
    rev = "e" * 40
    good = hashlib.sha256(payload(4)).hexdigest()
    card = write_card(
        tmp_path, "t-lfs", [{"filename": "w.bin", "hf_repo": "org/repo", "hf_filename": "w.bin"}]
    )
    _FakeHub(monkeypatch, {rev: payload(9)}, head=rev, etag=f'"{good}"')
    with pytest.raises(hub.ChecksumError, match="sha256 the hub lists") as error:
        hub.fetch(card)
    assert "\n" not in str(error.value) and not hub.cache_path(card).exists()
    assert not list(hub.cache_path(card).parent.glob(".hf-*"))  # the staging folder is gone
    _FakeHub(monkeypatch, {rev: payload(4)}, head=rev, etag=f'"{good}"')
    with pytest.warns(RecordedChecksumWarning):
        assert hub.fetch(card).read_bytes() == payload(4)


def test_sidecar_of_an_older_slmtok_is_moved_into_the_index(tmp_path, home, source):
    """A cache written before the index kept ``.<file>.record.json`` beside each file: its sha256 still
    binds the file (an edited file is refused), then the record moves into the index and the sidecar goes."""
    card = write_card(tmp_path, "t-side", [{"filename": "w.bin", "url": "https://example.invalid/w.bin"}])
    target = hub.cache_path(card)
    target.parent.mkdir(parents=True)
    sidecar = target.with_name(".w.bin.record.json")
    sidecar.write_text(json.dumps({"sha256": hashlib.sha256(payload(1)).hexdigest(), "verified": "recorded"}))
    target.write_bytes(payload(2))
    with pytest.raises(hub.ChecksumError, match="recorded at first download"):
        hub.fetch(card, offline=True)
    target.write_bytes(payload(1))
    assert hub.fetch(card, offline=True) == target
    assert not sidecar.exists()
    assert (
        json.loads(index_path().read_text())["hub/t-side/w.bin"]["sha256"]
        == hashlib.sha256(payload(1)).hexdigest()
    )


def test_a_card_pinning_a_new_revision_replaces_the_cached_file(tmp_path, home, monkeypatch):
    first, second = "1" * 40, "2" * 40
    fake = _FakeHub(monkeypatch, {first: payload(6), second: payload(7)}, head=second)
    entry = {"filename": "w.bin", "hf_repo": "org/repo", "hf_filename": "w.bin", "revision": first}
    with pytest.warns(RecordedChecksumWarning):
        assert hub.fetch(write_card(tmp_path, "t-move", [entry])).read_bytes() == payload(6)
    card = write_card(tmp_path, "t-move", [entry | {"revision": second}])
    with pytest.raises(hub.OfflineError, match="from revision 1111"):
        hub.fetch(card, offline=True)
    with pytest.warns(RecordedChecksumWarning):
        assert hub.fetch(card).read_bytes() == payload(7)
    assert fake.asked == [first, second] and hub.fetch_info(card)["revision"] == second
