"""Input formats practitioners have (Kaldi wav.scp + segments, Lhotse cuts, Hugging Face datasets folders,
WebDataset tars, TSV with a header row) through the one collector, in every command that takes inputs.

References never come from slmtok's reading code: audio is made by espeak-ng and read back with
soundfile (the file, a slice of it, the bytes ``tarfile`` extracts, the bytes a dataset row stores) or
with Lhotse's own ``cut.load_audio()``; the tokens compared against are ``tok.encode`` of that audio.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import slmtok
from slmtok.cli.main import main
from slmtok.inputs import collect
from slmtok.tokenfile import load_tokens

TOKENIZER = "mfcc-km"
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> list[Path]:
    """Four short espeak-ng utterances (22.05 kHz wav)."""
    root = tmp_path_factory.mktemp("voices")
    paths = []
    for i, voice in enumerate(["en-us", "en-gb", "en-us+f3", "en-sc"]):
        path = root / f"v{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), f"Input number {i}."], check=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tok():
    return slmtok.load(TOKENIZER)


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def reference(tok, wav: np.ndarray, rate: int) -> torch.Tensor:
    """Codes ``[K, T]`` of ``wav`` (soundfile's ``[T]`` or ``[T, C]`` float array) encoded alone."""
    x = torch.from_numpy(np.ascontiguousarray(np.atleast_2d(wav.T) if wav.ndim == 2 else wav[None]))
    return tok.encode(x.float(), rate).item(0)


def codes(path: Path) -> torch.Tensor:
    return load_tokens(path).item(0)


def one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 1 and err.startswith("slmtok: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


# ---------------------------------------------------------------------------------------------- TSV


def test_tsv_with_a_header_row(tmp_path, capsys, voices, tok):
    """A ``path<TAB>...`` header names the columns (old code read 'path' as a file name and failed)."""
    manifest = tmp_path / "m.tsv"
    rows = ["id\tpath\tstart\tduration\tspeaker"]
    rows += [f"utt{i}\t{p}\t0.1\t0.5\tx" for i, p in enumerate(voices[:2])]
    manifest.write_text("\n".join(rows) + "\n")
    items = collect([str(manifest)])
    assert [str(i.name) for i in items] == ["utt0", "utt1"] and [i.path for i in items] == voices[:2]
    assert all(i.start == 0.1 and i.duration == 0.5 for i in items)
    rc, _, err = run(capsys, "encode", manifest, "-o", tmp_path / "out", "-t", TOKENIZER)
    assert rc == 0, err
    data, rate = sf.read(voices[1], dtype="float32")
    expected = reference(tok, data[round(0.1 * rate) : round(0.1 * rate) + round(0.5 * rate)], rate)
    assert torch.equal(codes(tmp_path / "out" / "utt1.slmtok"), expected)
    manifest.write_text("id\tpath\n../up\t" + str(voices[0]) + "\n")
    one_line_error(*run(capsys, "encode", manifest, "-o", tmp_path / "o2")[:3:2], "refused")


def test_fairseq_tsv_still_reads(tmp_path, voices):
    """fairseq: the first line is the root folder, then ``relative<TAB>n_samples``."""
    manifest = tmp_path / "train.tsv"
    manifest.write_text(f"{voices[0].parent}\n{voices[0].name}\t{sf.info(voices[0]).frames}\n")
    (item,) = collect([str(manifest)])
    assert item.path == voices[0] and str(item.name) == "v0"


# -------------------------------------------------------------------------------------------- Kaldi


def test_kaldi_wav_scp_and_segments(tmp_path, capsys, voices, tok):
    data_dir = tmp_path / "data" / "train"
    data_dir.mkdir(parents=True)
    (data_dir / "wav.scp").write_text("".join(f"rec{i} {p}\n" for i, p in enumerate(voices)))
    rc, _, err = run(capsys, "encode", data_dir / "wav.scp", "-o", tmp_path / "whole", "-t", TOKENIZER)
    assert rc == 0, err
    data, rate = sf.read(voices[2], dtype="float32")
    assert torch.equal(codes(tmp_path / "whole" / "rec2.slmtok"), reference(tok, data, rate))
    # a segments file beside it: the segments are the inputs (Kaldi's semantics)
    (data_dir / "segments").write_text("rec0-a rec0 0.2 0.9\nrec3-all rec3 0 -1\n")
    rc, _, err = run(capsys, "encode", data_dir / "wav.scp", "-o", tmp_path / "seg", "-t", TOKENIZER)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "seg").iterdir()) == ["rec0-a.slmtok", "rec3-all.slmtok"]
    data, rate = sf.read(voices[0], dtype="float32")
    expected = reference(tok, data[round(0.2 * rate) : round(0.9 * rate)], rate)
    assert torch.equal(codes(tmp_path / "seg" / "rec0-a.slmtok"), expected)
    data, rate = sf.read(voices[3], dtype="float32")
    assert torch.equal(codes(tmp_path / "seg" / "rec3-all.slmtok"), reference(tok, data, rate))


def test_kaldi_pipe_is_refused_and_never_run(tmp_path, capsys, voices):
    """A pipe entry is a shell command in a data file: refused in one line, never executed."""
    marker = tmp_path / "ran"
    scp = tmp_path / "wav.scp"
    scp.write_text(f"ok {voices[0]}\nbad touch {marker} |\n")
    rc, _, err = run(capsys, "encode", scp, "-o", tmp_path / "out")
    one_line_error(rc, err, "line 2", "command", "never runs")
    assert not marker.exists() and not (tmp_path / "out").exists()
    scp.write_text(f"../escape {voices[0]}\n")
    one_line_error(*run(capsys, "encode", scp, "-o", tmp_path / "out")[:3:2], "refused", "..")
    scp.write_text(f"a {voices[0]}\n")
    (tmp_path / "segments").write_text("s1 missing 0 1\n")
    one_line_error(*run(capsys, "encode", scp, "-o", tmp_path / "out")[:3:2], "segments, line 1", "missing")


# ------------------------------------------------------------------------------------------- Lhotse


def test_lhotse_cuts(tmp_path, capsys, voices, tok):
    """Reference: Lhotse's own ``cut.load_audio()`` of each cut (a window of a recording)."""
    from lhotse import CutSet, Recording, RecordingSet

    recordings = RecordingSet.from_recordings(Recording.from_file(p) for p in voices[:3])
    cuts = CutSet.from_manifests(recordings=recordings).truncate(max_duration=0.8, offset_type="start")
    cuts = CutSet.from_cuts(c.with_id(f"cut-{i}") for i, c in enumerate(cuts))
    cuts.to_file(tmp_path / "cuts_train.jsonl.gz")
    rc, _, err = run(
        capsys, "encode", tmp_path / "cuts_train.jsonl.gz", "-o", tmp_path / "out", "-t", TOKENIZER
    )
    assert rc == 0, err
    for cut in cuts:
        audio = cut.load_audio()  # [C, T] at cut.sampling_rate
        got = codes(tmp_path / "out" / f"{cut.id}.slmtok")
        assert torch.equal(got, reference(tok, audio.T, cut.sampling_rate)), cut.id


def test_lhotse_command_source_is_refused(tmp_path, capsys, voices):
    from lhotse import AudioSource, Recording

    rec = Recording.from_file(voices[0])
    marker = tmp_path / "ran"
    bad = Recording(
        id="r", sources=[AudioSource(type="command", channels=[0], source=f"touch {marker}")],
        sampling_rate=rec.sampling_rate, num_samples=rec.num_samples, duration=rec.duration,
    )  # fmt: skip
    (tmp_path / "recs.jsonl").write_text(json.dumps(bad.to_dict()) + "\n")
    one_line_error(*run(capsys, "encode", tmp_path / "recs.jsonl", "-o", tmp_path / "o")[:3:2], "'command'")
    assert not marker.exists()


def test_a_missing_extra_is_one_line(tmp_path, capsys, voices, monkeypatch):
    from lhotse import CutSet, Recording, RecordingSet

    CutSet.from_manifests(recordings=RecordingSet.from_recordings([Recording.from_file(voices[0])])).to_file(
        tmp_path / "cuts.jsonl.gz"
    )
    monkeypatch.setitem(__import__("sys").modules, "lhotse", None)  # as if not installed
    rc, _, err = run(capsys, "encode", tmp_path / "cuts.jsonl.gz", "-o", tmp_path / "o")
    one_line_error(rc, err, "lhotse", "slmtok[io]")


# ---------------------------------------------------------------------------------- HF datasets


def test_datasets_folder(tmp_path, capsys, voices, tok):
    """A ``save_to_disk`` folder with the audio stored as bytes (reference: soundfile on those bytes)."""
    import datasets

    rows = {"id": [f"spk/u{i}" for i in range(3)],
            "audio": [{"bytes": p.read_bytes(), "path": p.name} for p in voices[:3]]}  # fmt: skip
    ds = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(decode=False))
    datasets.DatasetDict({"train": ds.select([0, 1]), "test": ds.select([2])}).save_to_disk(tmp_path / "dd")
    rc, _, err = run(capsys, "encode", tmp_path / "dd", "-o", tmp_path / "out", "-t", TOKENIZER)
    assert rc == 0, err
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.slmtok"))
    assert written == ["test/spk/u2.slmtok", "train/spk/u0.slmtok", "train/spk/u1.slmtok"]
    data, rate = sf.read(io.BytesIO(voices[1].read_bytes()), dtype="float32")
    assert torch.equal(codes(tmp_path / "out" / "train" / "spk" / "u1.slmtok"), reference(tok, data, rate))
    # an id that would leave the output folder is refused like a manifest id
    evil = datasets.Dataset.from_dict({"id": ["../../x"], "audio": rows["audio"][:1]})
    evil.cast_column("audio", datasets.Audio(decode=False)).save_to_disk(tmp_path / "evil")
    one_line_error(*run(capsys, "encode", tmp_path / "evil", "-o", tmp_path / "o2")[:3:2], "refused")


# ------------------------------------------------------------------------------------------ WebDataset


def make_tar(path: Path, voices: list[Path]) -> Path:
    with tarfile.open(path, "w") as tar:
        for i, voice in enumerate(voices):
            tar.add(voice, arcname=f"shard0/{i:04d}.wav")
            text = f"utterance {i}".encode()
            info = tarfile.TarInfo(f"shard0/{i:04d}.txt")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    return path


def test_webdataset_tar(tmp_path, capsys, voices, tok):
    """Reference: soundfile on the member bytes ``tarfile`` extracts."""
    shard = make_tar(tmp_path / "train-000.tar", voices)
    rc, _, err = run(capsys, "encode", shard, "-o", tmp_path / "out", "-t", TOKENIZER)
    assert rc == 0, err
    with tarfile.open(shard) as tar:
        for i in range(len(voices)):
            data, rate = sf.read(io.BytesIO(tar.extractfile(f"shard0/{i:04d}.wav").read()), dtype="float32")
            assert torch.equal(
                codes(tmp_path / "out" / "shard0" / f"{i:04d}.slmtok"), reference(tok, data, rate)
            )
    assert not any(p.suffix == ".wav" for p in tmp_path.rglob("*"))  # nothing was extracted to disk


def test_unsafe_tar_members_are_refused(tmp_path, capsys, voices):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        tar.add(voices[0], arcname="../escape.wav")
    one_line_error(*run(capsys, "encode", evil, "-o", tmp_path / "out")[:3:2], "refused", "..")
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("a.wav")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    one_line_error(*run(capsys, "encode", evil, "-o", tmp_path / "out")[:3:2], "not a plain file")
    with tarfile.open(tmp_path / "z.tar.gz", "w:gz") as tar:
        tar.add(voices[0], arcname="a.wav")
    one_line_error(*run(capsys, "encode", tmp_path / "z.tar.gz", "-o", tmp_path / "out")[:3:2], "compressed")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escape.slmtok").exists()


# ------------------------------------------------------------------------- the other commands' inputs


def test_bench_takes_a_tsv_manifest(tmp_path, capsys, voices):
    """``bench`` used to treat a .tsv as an audio file and fail on it; now it reads its entries."""
    manifest = tmp_path / "eval.tsv"
    manifest.write_text("path\tn\n" + "".join(f"{p}\t0\n" for p in voices[:2]))
    rc, _, err = run(capsys, "bench", "-t", TOKENIZER, "-d", f"real={manifest}", "-o", tmp_path / "res",
                     "--metrics", "si_sdr", "--examples", "0", "--json")  # fmt: skip
    assert rc == 0, err
    rows = [json.loads(line) for line in (tmp_path / "res" / "rows.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["tokenizer"] == TOKENIZER]
    assert sorted(r["file"] for r in rows) == ["real/v0", "real/v1"]
    assert all(r["status"] == "ok" and np.isfinite(r["si_sdr"]) for r in rows), rows


def test_kmeans_fit_reads_tar_members(tmp_path, capsys, voices):
    """``kmeans fit`` used to hand the tar file itself to the reader (no features at all)."""
    shard = make_tar(tmp_path / "train.tar", voices)
    rc, _, err = run(capsys, "kmeans", "fit", shard, "-o", tmp_path / "km", "--features", "mfcc", "-k", "4",
                     "--backend", "torch", "--max-frames", "5000", "--restarts", "1")  # fmt: skip
    assert rc == 0, err
    from safetensors import safe_open

    with safe_open(str(tmp_path / "km" / "cache" / "block-00000.safetensors"), framework="np") as f:
        meta = f.metadata()
    assert json.loads(meta["files"]) == [f"{shard}::shard0/{i:04d}.wav" for i in range(len(voices))]
    # every member contributed: MFCC frames at 100 frames/s of the whole audio (about, per file)
    seconds = sum(sf.info(v).duration for v in voices)
    assert abs(int(meta["seen"]) - 100 * seconds) < 10 * len(voices)


def test_vocoder_corpus_reads_segments_and_tar_members(tmp_path, voices):
    """``vocoder train`` used to read whole files (segments ignored; a tar file unreadable, skipped)."""
    from slmtok.vocoders.training.data import build_corpus, corpus_key

    scp = tmp_path / "wav.scp"
    scp.write_text(f"r0 {voices[0]}\n")
    (tmp_path / "segments").write_text("r0-a r0 0.1 0.6\n")
    items = collect([str(scp), str(make_tar(tmp_path / "s.tar", voices[1:3]))])
    rate, hop = 16000, 160

    def units(wav: torch.Tensor) -> torch.Tensor:  # one unit per hop: enough to line up audio
        return torch.zeros(wav.numel() // hop, dtype=torch.long)

    corpus = build_corpus(items, units, sample_rate=rate, hop=hop)
    assert corpus.names == ["r0-a", "shard0/0000", "shard0/0001"]
    frames = [round(sf.info(voices[i]).duration * rate) // hop for i in (1, 2)]
    assert [u.numel() for u in corpus.units] == [round(0.5 * rate) // hop, *frames]
    # the cache key tells a segment from its whole file
    whole = collect([str(voices[0])])
    assert corpus_key(items[:1], "h") != corpus_key(whole, "h") == corpus_key([voices[0]], "h")


def test_lm_prepare_reads_lhotse_cuts(tmp_path, capsys, voices):
    """``lm prepare`` takes a Lhotse manifest: one utterance per cut, named by the cut id, as long as
    the cut (Lhotse's duration is the reference)."""
    from lhotse import CutSet, Recording, RecordingSet

    recordings = RecordingSet.from_recordings(Recording.from_file(p) for p in voices)
    cuts = CutSet.from_manifests(recordings=recordings).truncate(max_duration=0.7, offset_type="start")
    cuts = CutSet.from_cuts(c.with_id(f"c{i}") for i, c in enumerate(cuts))
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    rc, _, err = run(capsys, "lm", "prepare", tmp_path / "cuts.jsonl.gz", "-o", tmp_path / "lm", "-t", TOKENIZER,
                     "--valid-fraction", "0.25")  # fmt: skip
    assert rc == 0, err
    rows = []
    for split in ("train", "valid"):
        lines = (tmp_path / "lm" / f"{split}.tsv").read_text().splitlines()
        rows += [dict(zip(lines[0].split("\t"), line.split("\t"), strict=True)) for line in lines[1:]]
    assert sorted(r["name"] for r in rows) == ["c0", "c1", "c2", "c3"]
    for row in rows:
        assert abs(float(row["seconds"]) - cuts[row["name"]].duration) < 1e-3, row


def test_lhotse_cuts_slmtok_cannot_honour_are_refused(tmp_path, capsys, voices):
    """A speed-perturbed recording or one channel of a stereo file would read as other audio than Lhotse
    loads: refused in one line rather than encoded wrong."""
    from lhotse import CutSet, MonoCut, Recording, RecordingSet

    recording = Recording.from_file(voices[0])
    fast = RecordingSet.from_recordings([recording.perturb_speed(1.1)])
    CutSet.from_manifests(recordings=fast).to_file(tmp_path / "fast.jsonl.gz")
    one_line_error(
        *run(capsys, "encode", tmp_path / "fast.jsonl.gz", "-o", tmp_path / "o")[:3:2], "transforms"
    )
    data, rate = sf.read(voices[0], dtype="float32")
    sf.write(tmp_path / "stereo.wav", np.stack([data, -data], 1), rate)
    stereo = Recording.from_file(tmp_path / "stereo.wav")
    right = MonoCut(id="right", start=0.0, duration=stereo.duration, channel=1, recording=stereo)
    CutSet.from_cuts([right]).to_file(tmp_path / "right.jsonl.gz")
    one_line_error(
        *run(capsys, "encode", tmp_path / "right.jsonl.gz", "-o", tmp_path / "o")[:3:2], "channel 1"
    )
    assert not (tmp_path / "o").exists()


def test_parquet_file_of_a_dataset(tmp_path, capsys, voices, tok):
    """A Parquet file as ``datasets`` writes it (what ``load_dataset("parquet", ...)`` reads), in two row
    groups; reference: soundfile on the bytes each row stores."""
    import datasets

    rows = {
        "id": [f"p{i}" for i in range(4)],
        "audio": [{"bytes": p.read_bytes(), "path": p.name} for p in voices],
    }
    ds = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(decode=False))
    ds.to_parquet(tmp_path / "train.parquet", batch_size=2)
    rc, _, err = run(capsys, "encode", tmp_path / "train.parquet", "-o", tmp_path / "out", "-t", TOKENIZER)
    assert rc == 0, err
    for i, voice in enumerate(voices):
        data, rate = sf.read(io.BytesIO(voice.read_bytes()), dtype="float32")
        assert torch.equal(codes(tmp_path / "out" / f"p{i}.slmtok"), reference(tok, data, rate)), i
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    one_line_error(*run(capsys, "encode", tmp_path / "bad.parquet", "-o", tmp_path / "o2")[:3:2], "Parquet")
