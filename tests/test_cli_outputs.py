"""Where ``slmtok encode / decode / resynth`` write: one file per input, named after the whole input name,
never two inputs on one file, never outside ``-o``, never onto an input; refused writes are one line.

References: expected output names are spelled out literally here (from the issue's examples); the audio
each output came from is identified by its length, read with soundfile (independent of slmtok); file
systems are exercised for real (``RLIMIT_FSIZE`` for a file too large, 255-byte ``NAME_MAX`` of the test
machine's filesystem, names that cannot be encoded), except a case-insensitive filesystem, which this
machine does not have (monkeypatched, and said so).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import slmtok
from slmtok.cli.main import main
from slmtok.tokenfile import read_header

RATE = 16000


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Short clips gain nothing from threads on a busy 2-core machine; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write(path: Path, speech: torch.Tensor, samples: int) -> Path:
    """The first ``samples`` of real speech as a 16 kHz wav at ``path`` (folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), speech[:samples].numpy(), RATE)
    return path


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file (hidden temporaries and symlinks included) under ``folder`` with its content."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]:
            path = Path(root) / name
            found[str(path.relative_to(folder))] = os.readlink(path).encode() if path.is_symlink() else b""
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def files_under(folder: Path) -> list[str]:
    return (
        sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        if folder.exists()
        else []
    )


def one_line_error(rc: int, out: str, err: str, *fragments: str) -> str:
    assert rc == 1, (rc, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("slmtok: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)
    return lines[0]


# -------------------------------------------------------------------------- names keep the whole input


def test_encode_folder_utt_1_and_utt_2_gives_two_files(capsys, tmp_path, speech_16k):
    """The issue's example: ``in/utt.1.wav`` and ``in/utt.2.wav`` made one ``out/utt.slmtok``."""
    write(tmp_path / "in" / "utt.1.wav", speech_16k, 8000)
    write(tmp_path / "in" / "utt.2.wav", speech_16k, 12000)
    out = tmp_path / "out"
    rc, _, err = run(capsys, "encode", tmp_path / "in", "-o", out)
    assert rc == 0, err
    assert files_under(out) == ["utt.1.slmtok", "utt.2.slmtok"]
    for name, samples in (("utt.1", 8000), ("utt.2", 12000)):
        header = read_header(out / f"{name}.slmtok")
        assert header["sources"] == [str(tmp_path / "in" / f"{name}.wav")]
        assert slmtok.load_tokens(out / f"{name}.slmtok").input.lengths == (samples,)


def test_decode_utt_1_and_utt_2_gives_two_files(capsys, tmp_path, speech_16k):
    """Token files ``utt.1.slmtok`` and ``utt.2.slmtok`` decode to ``utt.1.wav`` and ``utt.2.wav``, each as
    long as its own input (soundfile's frame count)."""
    write(tmp_path / "in" / "utt.1.wav", speech_16k, 8000)
    write(tmp_path / "in" / "utt.2.wav", speech_16k, 16000)
    tokens = tmp_path / "tokens"
    assert run(capsys, "encode", tmp_path / "in", "-o", tokens)[0] == 0
    out = tmp_path / "audio"
    rc, _, err = run(capsys, "decode", tokens, "-o", out)
    assert rc == 0, err
    assert files_under(out) == ["utt.1.wav", "utt.2.wav"]
    assert sf.info(str(out / "utt.1.wav")).frames == pytest.approx(8000, abs=160)
    assert sf.info(str(out / "utt.2.wav")).frames == pytest.approx(16000, abs=160)


def test_resynth_folder_keeps_dotted_names(capsys, tmp_path, speech_16k):
    write(tmp_path / "in" / "take.1.flac", speech_16k, 8000)
    write(tmp_path / "in" / "take.2.wav", speech_16k, 9600)
    out = tmp_path / "out"
    rc, _, err = run(capsys, "resynth", tmp_path / "in", "-o", out)
    assert rc == 0, err
    assert files_under(out) == ["take.1.wav", "take.2.wav"]


def test_jsonl_ids_with_dots_give_two_files(capsys, tmp_path, speech_16k):
    """JSONL ids ``spk.a`` and ``spk.b`` made one ``spk.slmtok``."""
    write(tmp_path / "a.wav", speech_16k, 8000)
    write(tmp_path / "b.wav", speech_16k, 11200)
    manifest = tmp_path / "list.jsonl"
    rows = [{"path": "a.wav", "id": "spk.a"}, {"path": "b.wav", "id": "spk.b"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    rc, _, err = run(capsys, "encode", manifest, "-o", out)
    assert rc == 0, err
    assert files_under(out) == ["spk.a.slmtok", "spk.b.slmtok"]
    assert slmtok.load_tokens(out / "spk.b.slmtok").input.lengths == (11200,)


def test_segments_differing_after_rounding_get_exact_distinct_names(capsys, tmp_path, speech_16k):
    """Segments of one file whose start or end differ only past ``:g``'s 6 digits, or only in the
    decimals after the last dot (which ``with_suffix`` replaced): each its own file, named exactly."""
    write(tmp_path / "audio" / "long.wav", speech_16k, 24000)
    rows = [
        {"path": "audio/long.wav", "offset": 0.1234561, "duration": 0.5},
        {"path": "audio/long.wav", "offset": 0.1234562, "duration": 0.5},
        {"path": "audio/long.wav", "offset": 0.25, "duration": 0.5},
        {"path": "audio/long.wav", "offset": 0.25, "duration": 0.6},
        {"path": "audio/long.wav", "offset": 0.1, "duration": 0.2},  # 0.1 + 0.2 is 0.30000000000000004
        {"path": "audio/long.wav", "offset": 1.0},
    ]
    manifest = tmp_path / "segments.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "encode", manifest, "-o", out, "--json")
    assert rc == 0, err
    expected = [
        "audio/long_0.1-0.3.slmtok",
        "audio/long_0.1234561-0.6234561.slmtok",
        "audio/long_0.1234562-0.6234562.slmtok",
        "audio/long_0.25-0.75.slmtok",
        "audio/long_0.25-0.85.slmtok",
        "audio/long_1-end.slmtok",
    ]
    assert files_under(out) == expected
    lengths = {name: slmtok.load_tokens(out / name).input.lengths[0] for name in expected if "0.25" in name}
    assert lengths == {"audio/long_0.25-0.75.slmtok": 8000, "audio/long_0.25-0.85.slmtok": 9600}
    inputs = [item["input"] for item in json.loads(stdout)["items"]]
    assert inputs[0].endswith("long.wav[0.1234561:0.6234561]"), inputs


def test_rerun_over_own_outputs_and_decode_beside_tokens(capsys, tmp_path, speech_16k):
    """Running a command again over its own outputs is normal, and decoding token files into their own
    folder puts ``.wav`` beside ``.slmtok``: neither is refused."""
    write(tmp_path / "in" / "utt.1.wav", speech_16k, 8000)
    tokens = tmp_path / "tokens"
    for _ in range(2):
        rc, _, err = run(capsys, "encode", tmp_path / "in", "-o", tokens)
        assert rc == 0, err
    rc, _, err = run(capsys, "decode", tokens, "-o", tokens)
    assert rc == 0, err
    assert files_under(tokens) == ["utt.1.slmtok", "utt.1.wav"]


# -------------------------------------------------------------------------- never two inputs on one file


def test_two_inputs_one_output_refused_before_anything_is_written(capsys, tmp_path, speech_16k):
    """``a/x.wav`` and ``b/x.flac`` given as files both map to ``x``: refused, nothing written."""
    a = write(tmp_path / "a" / "x.wav", speech_16k, 8000)
    b = write(tmp_path / "b" / "x.flac", speech_16k, 9000)
    out = tmp_path / "out"
    one_line_error(*run(capsys, "encode", a, b, "-o", out), "same output", "x")
    assert not out.exists()


def test_the_same_input_twice_is_refused(capsys, tmp_path, speech_16k):
    a = write(tmp_path / "in" / "x.wav", speech_16k, 8000)
    out = tmp_path / "out"
    one_line_error(*run(capsys, "encode", tmp_path / "in", a, "-o", out), "listed twice")
    assert not out.exists()


def test_names_differing_in_case_are_two_files_on_a_case_sensitive_filesystem(capsys, tmp_path, speech_16k):
    """This machine's filesystem tells ``A`` from ``a`` (checked first): both outputs are written."""
    write(tmp_path / "in" / "A.wav", speech_16k, 8000)
    write(tmp_path / "in" / "a.wav", speech_16k, 9600)
    assert len(list((tmp_path / "in").iterdir())) == 2, "this filesystem ignores case"
    out = tmp_path / "out"
    rc, _, err = run(capsys, "encode", tmp_path / "in", "-o", out)
    assert rc == 0, err
    assert files_under(out) == ["A.slmtok", "a.slmtok"]


def test_names_differing_in_case_refused_on_a_case_insensitive_filesystem(
    capsys, tmp_path, speech_16k, monkeypatch
):
    """No case-insensitive filesystem here (macOS, Windows, exFAT, SMB): the probe is monkeypatched."""
    import slmtok.outputs

    write(tmp_path / "in" / "Utt.wav", speech_16k, 8000)
    write(tmp_path / "in" / "utt.wav", speech_16k, 9600)
    monkeypatch.setattr(slmtok.outputs, "case_insensitive", lambda folder: True)
    out = tmp_path / "out"
    one_line_error(*run(capsys, "encode", tmp_path / "in", "-o", out), "same output", "up to case")
    assert not out.exists()


def test_resynth_onto_its_own_inputs_is_refused(capsys, tmp_path, speech_16k):
    """``resynth in/ -o in/`` (or one file onto itself) would replace the inputs by their resynthesis."""
    a = write(tmp_path / "in" / "a.wav", speech_16k, 8000)
    write(tmp_path / "in" / "b.wav", speech_16k, 9600)
    before = snapshot(tmp_path)
    one_line_error(*run(capsys, "resynth", tmp_path / "in", "-o", tmp_path / "in"), "is the input")
    one_line_error(*run(capsys, "resynth", a, "-o", a), "is the input", "a.wav")
    assert snapshot(tmp_path) == before


# -------------------------------------------------------------------------- confined to -o


@pytest.mark.parametrize(
    "ident",
    [
        "../../../x",
        "a/../../x",
        "..",
        "/abs/x",
        "C:/x",
        "C:x",
        "\\\\server\\share\\x",
        "..\\..\\x",
        "",
        "a\x00b",
        "a\nb",
    ],
)
def test_jsonl_id_that_could_escape_is_refused_and_nothing_is_written(capsys, tmp_path, speech_16k, ident):
    """The issue's ``../../../x`` wrote a token file three folders above the output folder; absolute ids
    lost their folder silently. Refused with one line naming the manifest line; no file anywhere."""
    write(tmp_path / "a" / "b" / "c" / "clip.wav", speech_16k, 8000)
    manifest = tmp_path / "a" / "b" / "c" / "list.jsonl"
    manifest.write_text(
        json.dumps({"path": "clip.wav"}) + "\n" + json.dumps({"path": "clip.wav", "id": ident}) + "\n"
    )
    before = snapshot(tmp_path)
    out = tmp_path / "a" / "b" / "c" / "out"
    one_line_error(*run(capsys, "encode", manifest, "-o", out), "list.jsonl, line 2")
    assert snapshot(tmp_path) == before


def test_jsonl_id_that_cannot_be_encoded_is_refused(capsys, tmp_path, speech_16k):
    """A lone surrogate (valid JSON ``\\ud800``) has no bytes in the filesystem encoding."""
    write(tmp_path / "clip.wav", speech_16k, 8000)
    manifest = tmp_path / "list.jsonl"
    manifest.write_text('{"path": "clip.wav", "id": "spk\\ud800"}\n')
    with pytest.raises(UnicodeEncodeError):
        os.fsencode(json.loads(manifest.read_text())["id"])
    out = tmp_path / "out"
    one_line_error(*run(capsys, "encode", manifest, "-o", out), "line 1", "cannot be encoded")
    assert not out.exists()


@pytest.mark.parametrize("offset", ["NaN", "Infinity", "-Infinity"])
def test_jsonl_non_finite_offset_is_one_line(capsys, tmp_path, speech_16k, offset):
    write(tmp_path / "clip.wav", speech_16k, 8000)
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(f'{{"path": "clip.wav", "offset": {offset}}}\n')
    out = tmp_path / "out"
    one_line_error(*run(capsys, "encode", manifest, "-o", out), "line 1", "must be finite")
    assert not out.exists()


def test_tsv_path_with_dotdot_is_refused(capsys, tmp_path, speech_16k):
    """A TSV entry ``../elsewhere/x.wav`` named its output ``out/../elsewhere/x.slmtok``."""
    write(tmp_path / "elsewhere" / "x.wav", speech_16k, 8000)
    write(tmp_path / "lists" / "ok.wav", speech_16k, 8000)
    manifest = tmp_path / "lists" / "train.tsv"
    manifest.write_text("ok.wav\n../elsewhere/x.wav\n")
    before = snapshot(tmp_path)
    out = tmp_path / "lists" / "out"
    one_line_error(*run(capsys, "encode", manifest, "-o", out), "train.tsv, line 2", "..")
    assert snapshot(tmp_path) == before


def test_tsv_fairseq_root_with_dotdot_entry_is_refused(capsys, tmp_path, speech_16k):
    write(tmp_path / "root" / "ok.wav", speech_16k, 8000)
    write(tmp_path / "x.wav", speech_16k, 8000)
    manifest = tmp_path / "train.tsv"
    manifest.write_text(f"{tmp_path / 'root'}\nok.wav\t8000\n../x.wav\t8000\n")
    out = tmp_path / "deep" / "out"
    one_line_error(*run(capsys, "encode", manifest, "-o", out), "train.tsv, line 3")
    assert not (tmp_path / "deep").exists()


def test_absolute_manifest_paths_without_id_use_the_file_name(capsys, tmp_path, speech_16k):
    """NeMo-style absolute ``audio_filepath``: an input path, not a name; the output is the file name."""
    clip = write(tmp_path / "data" / "spk" / "utt.1.wav", speech_16k, 8000)
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(clip)}) + "\n")
    out = tmp_path / "out"
    rc, _, err = run(capsys, "encode", manifest, "-o", out)
    assert rc == 0, err
    assert files_under(out) == ["utt.1.slmtok"]


def test_symlinked_folder_inside_output_pointing_elsewhere_is_refused(capsys, tmp_path, speech_16k):
    """``out/spk`` is a link to a folder outside ``out``: writing ``out/spk/x.slmtok`` would land there."""
    write(tmp_path / "in" / "spk" / "x.wav", speech_16k, 8000)
    (tmp_path / "victim").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "spk").symlink_to(tmp_path / "victim")
    one_line_error(*run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "out"), "outside", "spk")
    assert list((tmp_path / "victim").iterdir()) == []


def test_output_folder_that_is_itself_a_link_is_fine(capsys, tmp_path, speech_16k):
    """``-o`` naming a link to a big disk is ordinary: everything stays under where it points."""
    write(tmp_path / "in" / "spk" / "x.wav", speech_16k, 8000)
    (tmp_path / "disk").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "disk")
    rc, _, err = run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "out")
    assert rc == 0, err
    assert files_under(tmp_path / "disk") == ["spk/x.slmtok"]


def test_existing_output_symlink_is_replaced_not_written_through(capsys, tmp_path, speech_16k):
    """Decision: an output name that is a link (to anywhere) is replaced by the new file; the file it
    pointed to is untouched (rename swaps the link itself)."""
    write(tmp_path / "in" / "x.wav", speech_16k, 8000)
    victim = tmp_path / "victim.slmtok"
    victim.write_bytes(b"precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.slmtok").symlink_to(victim)
    rc, _, err = run(capsys, "encode", tmp_path / "in", "-o", tmp_path / "out")
    assert rc == 0, err
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "out" / "x.slmtok").is_symlink()
    assert slmtok.load_tokens(tmp_path / "out" / "x.slmtok").input.lengths == (8000,)


# -------------------------------------------------------------------------- refused writes: one line


@pytest.fixture
def token_file(tmp_path, speech_16k, capsys) -> Path:
    clip = write(tmp_path / "src" / "utt.1.wav", speech_16k, 24000)
    path = tmp_path / "tokens" / "utt.1.slmtok"
    rc, _, err = run(capsys, "encode", clip, "-o", path)
    assert rc == 0, err
    return path


def test_decode_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, token_file):
    """The ``slmtok decode`` console script under ``RLIMIT_FSIZE`` of 4 kB (SIGXFSZ ignored, so the
    write fails with EFBIG, as on a full disk or a quota): 1.5 s of 16-bit audio needs 48 kB."""
    script = shutil.which("slmtok")
    assert script, "the slmtok console script is not installed"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = tmp_path / "audio"
    for target in (out / "x.wav", out):
        done = subprocess.run(
            [script, "decode", str(token_file), "-o", str(target)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            preexec_fn=limit,
        )
        expected = out / ("x.wav" if target.suffix else "utt.1.wav")
        one_line_error(
            done.returncode, done.stdout, done.stderr, f"cannot write {expected}", "File too large"
        )
        assert files_under(out) == []  # no partial output, no temporary file


def test_decode_to_a_name_too_long_is_one_line(capsys, tmp_path, token_file):
    """300 bytes is over ext4's (and most filesystems') 255-byte NAME_MAX; 240 bytes fits alone but not
    with the temporary file written beside it first. Both refused before decoding, naming the file."""
    out = tmp_path / "audio"
    for stem in ("a" * 296, "é" * 118):  # 300 bytes; 236 + 4 = 240 bytes
        target = out / f"{stem}.wav"
        one_line_error(*run(capsys, "decode", token_file, "-o", target), "cannot write", stem)
        assert files_under(out) == []


def test_decode_folder_with_a_name_too_long_for_the_temporary_file(capsys, tmp_path, speech_16k):
    """A token file named with 255 bytes (renamed there: slmtok itself could not write it) decodes to a
    252-byte ``.wav`` that cannot get its temporary file: refused up front, nothing written."""
    stem = "b" * 248
    tokens = tmp_path / "tokens"
    clip = write(tmp_path / "src" / "short.wav", speech_16k, 8000)
    rc, _, err = run(capsys, "encode", clip, "-o", tokens / "short.slmtok")
    assert rc == 0, err
    (tokens / "short.slmtok").rename(tokens / f"{stem}.slmtok")
    out = tmp_path / "audio"
    one_line_error(*run(capsys, "decode", tokens, "-o", out), "cannot write", stem)
    assert files_under(out) == []


def test_encode_onto_a_full_disk_is_one_line(tmp_path, speech_16k):
    """The token-file side of the same failure: ``slmtok encode`` under a 2 kB file-size limit."""
    clip = write(tmp_path / "in" / "utt.1.wav", speech_16k, 24000)
    script = shutil.which("slmtok")
    assert script

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    out = tmp_path / "tokens"
    done = subprocess.run(
        [script, "encode", str(clip), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=limit,
    )
    one_line_error(done.returncode, done.stdout, done.stderr, str(out / "utt.1.slmtok"), "File too large")
    assert files_under(out) == []


def test_library_items_are_not_mangled(tmp_path):
    """The moved library API: ``slmtok.inputs.collect`` keeps whole names (the corpus and LM code use them
    as ids)."""
    from slmtok.inputs import collect

    (tmp_path / "in").mkdir()
    for name in ("utt.1.wav", "utt.2.WAV", "x.y.flac"):
        sf.write(str(tmp_path / "in" / name), np.zeros(800, dtype=np.float32), RATE)
    names = sorted(str(item.name) for item in collect([str(tmp_path / "in")]))
    assert names == ["utt.1", "utt.2", "x.y"]
    for name in ("take.v2", "song.AAC"):  # named on the command line: only an audio extension is dropped
        (tmp_path / name).write_bytes(b"")
    assert [str(i.name) for i in collect([str(tmp_path / "take.v2"), str(tmp_path / "song.AAC")])] == [
        "take.v2",
        "song",
    ]
