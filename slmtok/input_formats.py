"""Input formats practitioners have, read into ``slmtok.inputs.InputItem`` lists.

- Kaldi ``wav.scp`` (``utt-id path`` per line; any ``*.scp``). A ``segments`` file beside it
  (``seg-id utt-id start end``, seconds, ``end`` -1 for the end of the file) turns the recordings into
  its segments. Pipe entries (``utt-id sox ... |``) are refused: slmtok never runs a command from a data
  file. Relative paths are taken from the manifest's folder, else from the working directory (where
  Kaldi recipes run).
- Lhotse manifests (``*.jsonl.gz``, or ``.jsonl`` whose rows have a ``recording``/``sources``): cuts or
  recordings, read with ``lhotse.load_manifest``. Only ``file`` audio sources are taken (``command`` and
  ``url`` sources are refused); the cut's ``start``/``duration`` pick the segment; supervisions are not
  needed. Relative source paths as for Kaldi.
- Hugging Face datasets: a folder written by ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``, whose
  splits name sub-folders of the output). The one ``Audio`` column is read as stored (``bytes``, else
  ``path``); rows are named by an ``id`` column, else the stored file name, else ``row-000123``.
- WebDataset shards: an uncompressed ``.tar``; members are grouped by key (the member name up to the
  first dot of its file name) and each key with one audio member is an input named by its key.

Every id (utterance, segment, cut, row, key) goes through ``slmtok.inputs.id_problem``, like a
manifest ``id``. ``lhotse`` and ``datasets`` are imported only for such inputs (the ``io`` extra).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from slmtok.errors import SlmtokError
from slmtok.inputs import AUDIO_EXTENSIONS, InputItem, Source, checked_name, strip_extension

Kind = Literal["kaldi", "lhotse", "hf", "tar"]
COMPRESSED_TAR = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst")


def detect(path: Path) -> Kind | None:
    """The format of ``path`` if it is one of this module's, else ``None`` (a plain file, folder, TSV
    or JSONL manifest)."""
    name = path.name.lower()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (
            (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
        ):
            return "hf"
        return None
    if name.endswith(".scp"):
        return "kaldi"
    if name.endswith(".tar") or name.endswith(COMPRESSED_TAR):
        return "tar"
    if name.endswith(".jsonl.gz") or (name.endswith(".jsonl") and _looks_like_lhotse(path)):
        return "lhotse"
    return None


def read(kind: Kind, path: Path, strip: tuple[str, ...]) -> list[InputItem]:
    """The items of ``path`` in format ``kind`` (see ``detect``), in the order the file lists them."""
    readers = {"kaldi": _read_kaldi, "lhotse": _read_lhotse, "hf": _read_hf, "tar": _read_tar}
    items = readers[kind](path, strip)
    if not items:
        raise SlmtokError(f"no audio inputs in {path}")
    return items


def need(module: str):
    """Import ``module`` (``lhotse``, ``datasets``), or a one-line error naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SlmtokError(
            f"reading this input needs the {module!r} package: pip install 'slmtok[io]'"
        ) from None


def _looks_like_lhotse(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    return isinstance(row, dict) and ("recording" in row or "sources" in row)
    except (OSError, ValueError):
        return False
    return False


def _resolve(raw: str, base: Path) -> Path:
    """``raw`` if absolute; else from ``base`` if it is there, else from the working directory."""
    path = Path(raw)
    if path.is_absolute():
        return path
    if (base / path).exists() or not path.exists():
        return base / path
    return path


# ---------------------------------------------------------------------------------------------- Kaldi


def _read_kaldi(scp: Path, strip: tuple[str, ...]) -> list[InputItem]:
    recordings: dict[str, tuple[Path, str]] = {}
    for number, line in _lines(scp):
        where = f"{scp}, line {number}"
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise SlmtokError(f"{where}: expected 'utterance-id path'")
        utt, rest = parts[0], parts[1].strip()
        if rest.endswith("|"):
            raise SlmtokError(
                f"{where}: {utt} is a command ('{rest[:40]}'), not a file; slmtok never runs commands "
                "from data files: write the audio to files first"
            )
        if utt in recordings:
            raise SlmtokError(f"{where}: utterance id {utt!r} appears twice")
        path = _resolve(rest, scp.parent)
        if not path.is_file():
            hint = " (a Kaldi archive offset? extract the audio to files first)" if ".ark:" in rest else ""
            raise SlmtokError(f"{where}: no such file {path}{hint}")
        checked_name(utt, where)
        recordings[utt] = (path, where)
    segments = scp.parent / "segments"
    if not segments.is_file():
        return [InputItem(path, Path(utt), origin=where) for utt, (path, where) in recordings.items()]
    items = []
    for number, line in _lines(segments):
        where = f"{segments}, line {number}"
        parts = line.split()
        if len(parts) != 4:
            raise SlmtokError(f"{where}: expected 'segment-id utterance-id start end'")
        seg, utt = parts[0], parts[1]
        try:
            start, end = float(parts[2]), float(parts[3])
        except ValueError:
            raise SlmtokError(
                f"{where}: start and end must be seconds, got {parts[2]!r} {parts[3]!r}"
            ) from None
        if not (0 <= start < float("inf")) or not (end == -1 or start < end < float("inf")):
            raise SlmtokError(f"{where}: need 0 <= start < end (or end -1), got {parts[2]} {parts[3]}")
        if utt not in recordings:
            raise SlmtokError(f"{where}: utterance {utt!r} is not in {scp}")
        duration = None if end == -1 else end - start
        items.append(InputItem(recordings[utt][0], checked_name(seg, where), start, duration, origin=where))
    return items


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SlmtokError(f"{path} is not UTF-8 text") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


# --------------------------------------------------------------------------------------------- Lhotse


def _read_lhotse(manifest: Path, strip: tuple[str, ...]) -> list[InputItem]:
    lhotse = need("lhotse")
    try:
        loaded = lhotse.load_manifest(manifest)
    except Exception as error:  # noqa: BLE001 - lhotse raises many types for a bad manifest
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise SlmtokError(f"{manifest}: not a readable Lhotse manifest ({reason})") from None
    items = []
    if isinstance(loaded, lhotse.RecordingSet):
        for recording in loaded:
            where = f"{manifest}, recording {recording.id}"
            items.append(InputItem(_file_source(recording, manifest, where), checked_name(recording.id, where),
                                   origin=where))  # fmt: skip
    elif isinstance(loaded, lhotse.CutSet):
        for cut in loaded:
            where = f"{manifest}, cut {cut.id}"
            recording = getattr(cut, "recording", None)
            if recording is None:
                raise SlmtokError(f"{where}: not a cut of one recording ({type(cut).__name__})")
            path = _file_source(recording, manifest, where)
            channels = cut.channel if isinstance(cut.channel, list) else [cut.channel]
            if recording.num_channels > 1 and sorted(channels) != list(range(recording.num_channels)):
                raise SlmtokError(
                    f"{where}: channel {cut.channel} of a {recording.num_channels}-channel recording; slmtok "
                    "reads every channel of a file (down-mixed): split the channels into files first"
                )
            items.append(InputItem(path, checked_name(cut.id, where), float(cut.start), float(cut.duration),
                                   origin=where))  # fmt: skip
    else:
        raise SlmtokError(f"{manifest}: a Lhotse {type(loaded).__name__}; give cuts or recordings")
    return items


def _file_source(recording: Any, manifest: Path, where: str) -> Path:
    if getattr(recording, "transforms", None):
        raise SlmtokError(
            f"{where}: the recording has transforms (speed, volume, resampling) slmtok cannot apply"
        )
    sources = list(recording.sources)
    if len(sources) != 1:
        raise SlmtokError(f"{where}: {len(sources)} audio sources; slmtok reads recordings of one file")
    source = sources[0]
    if source.type != "file":
        raise SlmtokError(
            f"{where}: a {source.type!r} audio source; slmtok reads files only (never runs commands)"
        )
    path = _resolve(str(source.source), manifest.parent)
    if not path.is_file():
        raise SlmtokError(f"{where}: no such file {path}")
    return path


# ------------------------------------------------------------------------------- Hugging Face datasets


def _read_hf(folder: Path, strip: tuple[str, ...]) -> list[InputItem]:
    datasets = need("datasets")
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as error:  # noqa: BLE001 - datasets raises many types for a damaged folder
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise SlmtokError(f"{folder}: not a readable datasets folder ({reason})") from None
    splits = [(None, loaded)] if isinstance(loaded, datasets.Dataset) else sorted(loaded.items())
    items = []
    for split, ds in splits:
        items += _hf_split(datasets, folder, split, ds, strip)
    return items


def audio_column(datasets: Any, ds: Any, where: str) -> str:
    """The name of the one ``Audio`` column of ``ds``; ``SlmtokError`` if there is none or several."""
    columns = [name for name, f in ds.features.items() if isinstance(f, datasets.Audio)]
    if len(columns) != 1:
        found = ", ".join(columns) or "none"
        raise SlmtokError(f"{where}: needs exactly one Audio column, found {found}")
    return columns[0]


def _hf_split(datasets: Any, folder: Path, split: str | None, ds: Any, strip) -> list[InputItem]:
    import pyarrow.compute as pc

    where = f"{folder}" + (f", split {split}" if split else "")
    if getattr(ds, "_indices", None) is not None:
        raise SlmtokError(f"{where}: holds an index mapping; save it again with flatten_indices()")
    column = audio_column(datasets, ds, where)
    audio = ds.data.column(column).combine_chunks()
    paths = audio.field("path").to_pylist()
    has_bytes = pc.invert(pc.is_null(audio.field("bytes"))).to_pylist()
    ids = None
    if "id" in ds.column_names:
        ids = ds.data.column("id").to_pylist()
    prefix = Path(checked_name(split, where)) if split else Path()
    items = []
    for row, (raw, inline) in enumerate(zip(paths, has_bytes, strict=True)):
        here = f"{where}, row {row}"
        if ids is not None and isinstance(ids[row], (str, int)) and not isinstance(ids[row], bool):
            name = checked_name(str(ids[row]), here)
        elif raw:
            name = strip_extension(checked_name(PurePosixPath(raw).name, here), strip)
        else:
            name = Path(f"row-{row:06d}")
        if inline:
            source = Source("hf", column, row, 0, split)
            items.append(InputItem(folder, prefix / name, origin=here, source=source))
        elif raw:
            path = _resolve(raw, folder)
            if not path.is_file():
                raise SlmtokError(f"{here}: no such file {path}")
            items.append(InputItem(path, prefix / name, origin=here))
        else:
            raise SlmtokError(f"{here}: the audio has neither bytes nor a path")
    return items


# ------------------------------------------------------------------------------------------ WebDataset


def _read_tar(shard: Path, strip: tuple[str, ...]) -> list[InputItem]:
    if shard.name.lower().endswith(COMPRESSED_TAR):
        raise SlmtokError(f"{shard}: a compressed tar; slmtok reads uncompressed .tar shards: decompress it")
    groups: dict[str, list[tarfile.TarInfo]] = {}
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isreg() or member.issparse():
                    raise SlmtokError(f"{shard}: member {member.name!r} is not a plain file (a link?)")
                if Path(member.name).suffix.lower() not in AUDIO_EXTENSIONS:
                    continue  # transcripts, JSON and the like travel beside the audio
                folder, _, base = member.name.rpartition("/")
                key = (folder + "/" if folder else "") + base.split(".", 1)[0]
                groups.setdefault(key, []).append(member)
    except (tarfile.TarError, OSError) as error:
        raise SlmtokError(f"{shard}: not a readable tar file ({error})") from None
    items = []
    for key, members in groups.items():
        where = f"{shard}, member {members[0].name}"
        if len(members) > 1:
            names = ", ".join(m.name for m in members)
            raise SlmtokError(f"{shard}: key {key!r} has {len(members)} audio members ({names}); keep one")
        member = members[0]
        source = Source("tar", member.name, member.offset_data, member.size)
        items.append(InputItem(shard, checked_name(key, where), origin=where, source=source))
    return items
