"""``.slmtok`` files: round trip, header, atomic writes, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import slmtok
from slmtok.errors import OutputError, TokenFileError, TokenizerMismatchError
from slmtok.tokenfile import FORMAT_VERSION, read_header


@pytest.fixture(scope="module")
def tok():
    return slmtok.load("mel-rvq")


@pytest.fixture(scope="module")
def tokens(tok, speech_16k):
    return tok.encode(speech_16k, 16000)


def test_header_describes_everything_needed(tok, tokens, tmp_path):
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens, card=tok.card.to_dict(), sources=["speech.wav"])
    header = read_header(path)
    assert header["tokenizer"] == {"name": "mel-rvq", "hash": tok.card.hash, "options": {}, "weights": []}
    assert header["card"]["bitrate"] == tok.card.bitrate
    assert header["sample_rate"] == 16000 and header["frame_rate"] == 100.0
    assert header["codebook_sizes"] == [1024] * 8 and header["lengths"] == tokens.lengths.tolist()
    assert header["sources"] == ["speech.wav"] and header["input"]["durations"] == [1.5]
    assert [p.name for p in tmp_path.iterdir()] == ["a.slmtok"]


def test_codes_are_stored_compactly(tokens, tmp_path):
    from safetensors import safe_open

    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)
    with safe_open(str(path), "pt") as f:
        assert f.get_tensor("codes").dtype == torch.int16
    assert slmtok.load_tokens(path).codes.dtype == torch.int64


def test_refuses_junk_and_newer_versions(tokens, tmp_path):
    with pytest.raises(TokenFileError, match="no such token file"):
        slmtok.load_tokens(tmp_path / "missing.slmtok")
    junk = tmp_path / "junk.slmtok"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(TokenFileError, match="not a .slmtok token file"):
        slmtok.load_tokens(junk)
    foreign = tmp_path / "foreign.slmtok"
    save_file({"x": torch.zeros(2)}, foreign)
    with pytest.raises(TokenFileError, match="no slmtok header"):
        slmtok.load_tokens(foreign)
    newer = tmp_path / "newer.slmtok"
    header = {"tokenizer": {"name": "mel-rvq", "hash": ""}, "frame_rate": 100.0}
    meta = {"format": "slmtok", "format_version": str(FORMAT_VERSION + 1), "header": json.dumps(header)}
    save_file({"codes": tokens.codes.to(torch.int16), "lengths": tokens.lengths}, newer, metadata=meta)
    with pytest.raises(TokenFileError, match="upgrade slmtok"):
        slmtok.load_tokens(newer)
    truncated = tmp_path / "truncated.slmtok"
    slmtok.save_tokens(truncated, tokens)
    truncated.write_bytes(truncated.read_bytes()[:-100])
    with pytest.raises(TokenFileError):
        slmtok.load_tokens(truncated)


def test_file_from_another_tokenizer_is_refused(tokens, tmp_path):
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)
    with pytest.raises(TokenizerMismatchError, match="made by 'mel-rvq'"):
        slmtok.load("mfcc-km").decode(slmtok.load_tokens(path))


def test_failed_write_leaves_nothing(tokens, tmp_path):
    target = tmp_path / "a.slmtok"
    slmtok.save_tokens(target, tokens)
    before = target.read_bytes()
    with pytest.raises(TokenFileError):  # sources of the wrong length: refused before writing
        slmtok.save_tokens(target, tokens, sources=["a", "b"])
    with pytest.raises(OutputError):
        slmtok.save_tokens(tmp_path / "a.slmtok" / "b.slmtok", tokens)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["a.slmtok"]


def test_tokens_cat_and_select(tok, speech_batch):
    wav, lengths = speech_batch
    tokens = tok.encode(wav, 16000, lengths=lengths)
    parts = [tokens.select([i]) for i in range(3)]
    joined = slmtok.Tokens.cat(parts)
    assert torch.equal(joined.codes, tokens.codes) and torch.equal(joined.lengths, tokens.lengths)
    assert joined.input == tokens.input
    with pytest.raises(ValueError, match="different tokenizers"):
        slmtok.Tokens.cat([parts[0], slmtok.load("mulaw-8bit").encode(wav[0], 16000)])


# ------------------------------------------------------------------------------------------ format 2
DATA = Path(__file__).parent / "data"


def _raw(header: dict, data: bytes = b"") -> bytes:
    """Safetensors bytes with a hand-written tensor table (reference: the safetensors format spec)."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _meta(header: dict, version: int = FORMAT_VERSION) -> dict:
    return {"format": "slmtok", "format_version": str(version), "header": json.dumps(header)}


def _rewrite(path, edit) -> None:
    """Apply ``edit(header_dict)`` to the slmtok JSON header of the token file at ``path``."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    header = json.loads(meta["header"])
    edit(header)
    meta["header"] = json.dumps(header)
    path.write_bytes(save(tensors, metadata=meta))


class _LoadSpy:
    """Records every ``slmtok.load`` call (the reference for 'never applied': the arguments themselves)."""

    def __init__(self, monkeypatch) -> None:
        import slmtok.api

        self.calls: list[dict] = []
        real = slmtok.api.load

        def spy(name, **kwargs):
            self.calls.append({"name": name, **kwargs})
            return real(name, **kwargs)

        monkeypatch.setattr(slmtok.api, "load", spy)
        monkeypatch.setattr(slmtok, "load", spy, raising=False)


def _decode(capsys, *args: str) -> tuple[int, str]:
    from slmtok.cli.main import main

    capsys.readouterr()
    rc = main(["decode", *args])
    return rc, capsys.readouterr().err


def test_format_1_files_written_by_02c346e_still_decode():
    """``tests/data/v1-*.slmtok`` were written by commit 02c346e's ``save_tokens`` (format 1)."""
    for name in ("v1-mfcc-km-dedup.slmtok", "v1-mel-rvq-k2.slmtok"):
        header = read_header(DATA / name)
        assert "weights" not in header["tokenizer"]
        tokens = slmtok.load_tokens(DATA / name)
        audio = slmtok.load_for(tokens).decode(tokens)
        assert int(audio.lengths[0]) > 0 and bool(torch.isfinite(audio.wav).all())


def test_trust_and_paths_in_a_file_are_never_obeyed(tokens, tmp_path, capsys, monkeypatch):
    """Issue #16: ``trust=True`` and ``checkpoint=/etc/passwd`` in a header reached ``slmtok.load``.
    Reference: the arguments ``slmtok.load`` receives (spied) and what is on disk."""
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)

    def evil(header):
        header["tokenizer"]["options"].update(trust=True, checkpoint="/etc/passwd", griffin_lim_iters=10**9)

    _rewrite(path, evil)
    spy = _LoadSpy(monkeypatch)
    rc, err = _decode(capsys, str(path), "-o", str(tmp_path / "a.wav"))
    assert rc == 1 and err.count("\n") == 1 and err.startswith("slmtok: error: ")
    assert "/etc/passwd" in err and "--checkpoint" in err  # says what it refused and how to proceed
    assert all("trust" not in c and "checkpoint" not in c and "griffin_lim_iters" not in c for c in spy.calls)
    assert not (tmp_path / "a.wav").exists()
    # with trust and a harmless option only, decoding works and trust is still not applied
    _rewrite(path, lambda h: h["tokenizer"]["options"].pop("checkpoint"))
    rc, err = _decode(capsys, str(path), "-o", str(tmp_path / "a.wav"))
    assert rc == 0, err
    assert spy.calls and all("trust" not in c for c in spy.calls)


def test_trust_comes_from_the_user(tokens, tmp_path, capsys, monkeypatch):
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)
    spy = _LoadSpy(monkeypatch)
    rc, err = _decode(capsys, str(path), "-o", str(tmp_path / "a.wav"), "--trust")
    assert spy.calls[-1].get("trust") is True
    assert (
        rc == 1 and err.count("\n") == 1 and "trust" in err
    )  # mel-rvq takes no trust: one line, no traceback


@pytest.fixture
def own_weights(tmp_path):
    """A copy of mel-rvq's shipped weights in ``tmp_path/w/`` and its sha256 (hashlib, not slmtok)."""
    from slmtok.tokenizers.baselines.weights import default_weights

    folder = tmp_path / "w"
    folder.mkdir()
    target = folder / "mel.safetensors"
    shutil.copyfile(default_weights("mel-rvq"), target)
    return target, hashlib.sha256(target.read_bytes()).hexdigest()


def test_relative_checkpoint_is_recorded_resolved_with_sha256(
    own_weights, speech_16k, tmp_path, capsys, monkeypatch
):
    """Issue #16: a relative ``checkpoint`` was stored as given, so decoding from another folder failed."""
    weights, sha = own_weights
    monkeypatch.chdir(tmp_path)
    tok = slmtok.load("mel-rvq", checkpoint="w/mel.safetensors")
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tok.encode(speech_16k[:4000], 16000))
    record = read_header(path)["tokenizer"]["weights"]
    assert record == [
        {
            "option": "checkpoint",
            "index": None,
            "path": str(weights.resolve()),
            "sha256": sha,
            "kind": "file",
            "size": weights.stat().st_size,
        }
    ]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rc, err = _decode(capsys, str(path), "-o", str(tmp_path / "a.wav"))
    assert rc == 0, err
    assert (tmp_path / "a.wav").is_file()


def test_moved_or_changed_weights_are_found_by_sha256_only(own_weights, speech_16k, tmp_path, capsys):
    weights, sha = own_weights
    tok = slmtok.load("mel-rvq", checkpoint=weights)
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tok.encode(speech_16k[:4000], 16000))
    moved = tmp_path / "moved.safetensors"
    weights.rename(moved)
    out = tmp_path / "a.wav"
    rc, err = _decode(capsys, str(path), "-o", str(out))
    assert rc == 1 and err.count("\n") == 1 and str(weights) in err and "is not there" in err
    assert "--checkpoint" in err and sha[:16] in err
    rc, err = _decode(capsys, str(path), "-o", str(out), "--checkpoint", str(moved))
    assert rc == 0 and out.is_file(), err
    out.unlink()
    other = tmp_path / "other.safetensors"  # different bytes, same tensors: refused by sha256
    other.write_bytes(moved.read_bytes() + b" ")
    rc, err = _decode(capsys, str(path), "-o", str(out), "--checkpoint", str(other))
    assert rc == 1 and "none of the weights" in err and not out.exists()
    weights.write_bytes(moved.read_bytes()[:-1] + b"\x00")  # the recorded path now holds other bytes
    rc, err = _decode(capsys, str(path), "-o", str(out))
    assert rc == 1 and "has changed" in err and not out.exists()


def test_a_forged_record_is_never_opened(tokens, tmp_path, capsys, monkeypatch):
    """A record pointing at a FIFO would block forever if opened; at /etc/passwd it must not be parsed."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)
    spy = _LoadSpy(monkeypatch)
    for target in (str(fifo), "/etc/passwd"):

        def forge(header, target=target):
            header["tokenizer"]["weights"] = [
                {
                    "option": "checkpoint",
                    "index": None,
                    "path": target,
                    "sha256": "0" * 64,
                    "kind": "file",
                    "size": 9,
                }
            ]

        _rewrite(path, forge)
        rc, err = _decode(capsys, str(path), "-o", str(tmp_path / "a.wav"))
        assert rc == 1 and err.count("\n") == 1 and target in err
    assert spy.calls == []


def test_huge_dedup_duration_is_refused_before_allocating(tmp_path, speech_16k):
    """Issue #16: one duration of 1e9 in a 3 KB dedup file drove decode past 9 GB."""
    from slmtok.errors import CodesError
    from slmtok.metrics.cost import PeakMemory

    tok = slmtok.load("mfcc-km", dedup=True)
    tokens = tok.encode(speech_16k[:8000], 16000)
    tokens.extras["durations"] = tokens.extras["durations"].clone()
    tokens.extras["durations"][0, 0, 0] = 10**9
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)
    assert path.stat().st_size < 4000
    with PeakMemory() as peak:
        with pytest.raises(TokenFileError, match="would decode to"):
            slmtok.load_tokens(path)
        from slmtok.errors import DecodeLimitError

        with pytest.raises(DecodeLimitError, match="limit"):  # library callers are bounded too
            tok.decode(tokens)
    assert peak.peak_bytes < 200 * 2**20
    tokens.extras["durations"][0, 0, 0] = 2**62  # sums that would wrap around int64
    tokens.extras["durations"][0, 0, 1] = 2**62
    with pytest.raises(DecodeLimitError):
        tok.decode(tokens)
    tokens.extras["durations"][0, 0, :2] = torch.tensor([-3, 1])
    with pytest.raises(CodesError, match="non-negative"):
        tok.decode(tokens)
    tokens.extras["durations"] = tokens.extras["durations"].float()
    with pytest.raises(CodesError, match="integers"):
        tok.decode(tokens)


def test_max_seconds_is_settable(tokens, tmp_path, capsys):
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)  # 1.5 s of audio
    with pytest.raises(TokenFileError, match="limit of 1 s"):
        slmtok.load_tokens(path, max_seconds=1.0)
    assert slmtok.load_tokens(path, max_seconds=2.0).batch_size == 1
    rc, err = _decode(capsys, str(path), "-o", str(tmp_path / "a.wav"), "--max-seconds", "1")
    assert rc == 1 and "limit of 1 s" in err and not (tmp_path / "a.wav").exists()
    rc, err = _decode(capsys, str(path), "-o", str(tmp_path / "a.wav"), "--max-seconds", "2")
    assert rc == 0, err


@pytest.mark.parametrize(
    "dtype, reason",
    [
        (torch.float32, "integers"),
        (torch.float64, "integers"),
        (torch.bool, "integers"),
        (torch.complex64, "integers"),
    ],
)
def test_codes_of_a_non_integer_dtype_are_refused_not_cast(tokens, tmp_path, dtype, reason):
    """02c346e cast float/bool/complex codes with ``.long()`` (1.7 -> 1) and decoded them."""
    header = {"tokenizer": {"name": "mel-rvq", "hash": tokens.tokenizer.hash}, "frame_rate": 100.0}
    path = tmp_path / "a.slmtok"
    save_file({"codes": tokens.codes.to(dtype), "lengths": tokens.lengths}, path, metadata=_meta(header, 1))
    with pytest.raises(TokenFileError, match=reason):
        slmtok.load_tokens(path)


def test_shapes_and_offsets_are_checked_against_the_file_size(tmp_path):
    """Hand-written safetensors tables (reference: the format spec): a huge declared shape in a small
    file, offsets past the end, a header longer than the file."""
    meta = _meta({"tokenizer": {"name": "mel-rvq"}, "frame_rate": 100.0})
    cases = {
        "huge": {"codes": {"dtype": "I16", "shape": [1, 8, 10**12], "data_offsets": [0, 16 * 10**12]}},
        "past_end": {"codes": {"dtype": "I16", "shape": [1, 1, 4], "data_offsets": [0, 8]}},
        "mismatch": {"codes": {"dtype": "I16", "shape": [1, 1, 400], "data_offsets": [0, 8]}},
    }
    for name, table in cases.items():
        path = tmp_path / f"{name}.slmtok"
        path.write_bytes(_raw({"__metadata__": meta, **table}, b"\x00" * (8 if name == "mismatch" else 0)))
        with pytest.raises(TokenFileError, match="unreadable safetensors"):
            slmtok.load_tokens(path)
    long = tmp_path / "long.slmtok"
    long.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(TokenFileError, match="does not fit|limit"):
        slmtok.load_tokens(long)


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h.update(frame_rate="fast"),
        lambda h: h.update(frame_rate=-100.0),
        lambda h: h.update(frame_rate=1e308 * 10),
        lambda h: h.update(tokenizer=[]),
        lambda h: h["tokenizer"].update(name=5),
        lambda h: h["tokenizer"].update(options=[1, 2]),
        lambda h: h.update(input="x"),
        lambda h: h["input"].update(lengths=[1, 2, 3]),
        lambda h: h["input"].update(sample_rate=None),
        lambda h: h.update(sources=[None]),
        lambda h: h.update(lengths=[10**9]),
        lambda h: h.update(n_codebooks=3),
        lambda h: h.pop("tokenizer"),
        lambda h: h.pop("frame_rate"),
        lambda h: h["tokenizer"].update(weights=[{"option": "checkpoint"}]),
    ],
)
def test_header_mutations_are_one_line_errors(tokens, tmp_path, edit):
    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)
    _rewrite(path, edit)
    with pytest.raises(TokenFileError) as error:
        slmtok.load_tokens(path)
    assert len(str(error.value).splitlines()) == 1


def test_deeply_nested_header_is_refused(tokens, tmp_path):
    """02c346e: ``json.loads`` raised RecursionError out of ``load_tokens`` for 100 000 nested lists."""
    from safetensors.torch import save

    path = slmtok.save_tokens(tmp_path / "a.slmtok", tokens)
    text = read_header(path)
    deep = "[" * 100_000 + "]" * 100_000
    raw = json.dumps(text).replace('"options": {}', f'"options": {deep}')
    assert deep in raw
    meta = {"format": "slmtok", "format_version": str(FORMAT_VERSION), "header": raw}
    path.write_bytes(save({"codes": tokens.codes.short(), "lengths": tokens.lengths}, metadata=meta))
    with pytest.raises(TokenFileError, match="JSON|nested"):
        slmtok.load_tokens(path)


def test_lengths_and_codes_out_of_place_are_refused(tokens, tmp_path):
    path = tmp_path / "a.slmtok"
    header = {"tokenizer": {"name": "mel-rvq", "hash": tokens.tokenizer.hash}, "frame_rate": 100.0}
    width = tokens.codes.shape[-1]
    for lengths, codes, match in (
        (torch.tensor([width + 1]), tokens.codes, "lengths must lie"),
        (torch.tensor([-1]), tokens.codes, "lengths must lie"),
        (
            tokens.lengths,
            tokens.codes.masked_fill(tokens.codes == tokens.codes[0, 0, 0], -5),
            "codes must be",
        ),
        (tokens.lengths.float(), tokens.codes, "lengths must be"),
        (tokens.lengths[None], tokens.codes, "lengths must be"),
    ):
        save_file({"codes": codes.short(), "lengths": lengths}, path, metadata=_meta(header))
        with pytest.raises(TokenFileError, match=match):
            slmtok.load_tokens(path)


def test_format_1_checkpoint_paths_are_used_only_when_given(own_weights, tmp_path, capsys):
    """A format-1 file names its checkpoint as given (here relative) with no sha256: never opened on the
    file's word; ``--checkpoint`` supplies it, and the card hash still has to match."""
    weights, _ = own_weights
    header = read_header(DATA / "v1-mel-rvq-k2.slmtok")
    header["tokenizer"]["options"] = {"checkpoint": "w/mel.safetensors", "trust": True}
    tokens = slmtok.load_tokens(DATA / "v1-mel-rvq-k2.slmtok")
    path = tmp_path / "v1.slmtok"
    save_file(
        {"codes": tokens.codes.short(), "lengths": tokens.lengths}, path, metadata=_meta(header, version=1)
    )
    out = tmp_path / "a.wav"
    rc, err = _decode(capsys, str(path), "-o", str(out))
    assert rc == 1 and "record no sha256" in err and "--checkpoint" in err and not out.exists()
    rc, err = _decode(capsys, str(path), "-o", str(out), "--checkpoint", str(weights))
    assert rc == 0 and out.is_file(), err
