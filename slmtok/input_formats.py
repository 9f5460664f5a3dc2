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
- Parquet files as Hugging Face writes them (``Dataset.to_parquet``, the files of a hub dataset, what
  ``load_dataset("parquet", ...)`` reads): the one Audio column, read with pyarrow; rows as above.
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

Kind = Literal["kaldi", "lhotse", "hf", "parquet", "tar"]
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
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".tar") or name.endswith(COMPRESSED_TAR):
        return "tar"
    if name.endswith(".jsonl.gz") or (name.endswith(".jsonl") and _looks_like_lhotse(path)):
        return "lhotse"
    return None


def read(kind: Kind, path: Path, strip: tuple[str, ...]) -> list[InputItem]:
    """The items of ``path`` in format ``kind`` (see ``detect``), in the order the file lists them."""
    readers = {"kaldi": _read_kaldi, "lhotse": _read_lhotse, "hf": _read_hf, "parquet": _read_parquet,
               "tar": _read_tar}  # fmt: skip
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
    where = f"{folder}" + (f", split {split}" if split else "")
    if getattr(ds, "_indices", None) is not None:
        raise SlmtokError(f"{where}: holds an index mapping; save it again with flatten_indices()")
    column = audio_column(datasets, ds, where)
    paths, has_bytes = _paths_and_bytes(ds.data.column(column).chunks)
    ids = ds.data.column("id").to_pylist() if "id" in ds.column_names else None
    return _rows("hf", folder, where, split, column, paths, has_bytes, ids, strip)


def _paths_and_bytes(chunks) -> tuple[list[str | None], list[bool]]:
    """The stored ``path`` of each row of an Audio column (struct of ``bytes``, ``path``) and whether it
    holds bytes, chunk by chunk: the audio bytes are never copied."""
    import pyarrow.compute as pc

    paths: list[str | None] = []
    has_bytes: list[bool] = []
    for chunk in chunks:
        paths += chunk.field("path").to_pylist()
        has_bytes += pc.invert(pc.is_null(chunk.field("bytes"))).to_pylist()
    return paths, has_bytes


def _rows(kind, container: Path, where: str, split, column, paths, has_bytes, ids, strip) -> list[InputItem]:
    """Items of the rows of a dataset folder or Parquet file ``container``: bytes stored in the row
    become a ``Source`` of ``kind``; a path alone names a file."""
    prefix = Path(checked_name(split, where)) if split else Path()
    folder = container if container.is_dir() else container.parent
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
            source = Source(kind, column, row, 0, split)
            items.append(InputItem(container, prefix / name, origin=here, source=source))
        elif raw:
            path = _resolve(raw, folder)
            if not path.is_file():
                raise SlmtokError(f"{here}: no such file {path}")
            items.append(InputItem(path, prefix / name, origin=here))
        else:
            raise SlmtokError(f"{here}: the audio has neither bytes nor a path")
    return items


# --------------------------------------------------------------------------------------------- Parquet


def _read_parquet(path: Path, strip: tuple[str, ...]) -> list[InputItem]:
    """A Parquet file as Hugging Face writes it (``Dataset.to_parquet``, files of a hub dataset): its
    one Audio column, read with pyarrow (no ``datasets`` needed)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        column = _parquet_audio_column(pf.schema_arrow, path)
        audio = pf.read(columns=[f"{column}.path"]).column(column)
        paths = [None if v is None else v["path"] for v in audio.to_pylist()]
        has_bytes = _parquet_has_bytes(pf, column)
        ids = pf.read(columns=["id"]).column("id").to_pylist() if "id" in pf.schema_arrow.names else None
    except SlmtokError:
        raise
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise SlmtokError(f"{path}: not a readable Parquet file ({reason})") from None
    return _rows("parquet", path, str(path), None, column, paths, has_bytes, ids, strip)


def _parquet_audio_column(schema: Any, path: Path) -> str:
    """The Audio column named by the file's Hugging Face metadata, else the one struct column of
    ``bytes`` and ``path``."""
    import pyarrow as pa

    features = {}
    try:
        features = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))["info"]["features"]
    except (ValueError, KeyError, TypeError):
        features = {}
    named = [k for k, v in features.items() if isinstance(v, dict) and v.get("_type") == "Audio"]
    found = named or [
        f.name
        for f in schema
        if pa.types.is_struct(f.type)
        and {f.type.field(i).name for i in range(f.type.num_fields)} == {"bytes", "path"}
    ]
    if len(found) != 1 or found[0] not in schema.names:
        raise SlmtokError(f"{path}: needs exactly one Audio column, found {', '.join(found) or 'none'}")
    return found[0]


def _parquet_has_bytes(pf: Any, column: str) -> list[bool]:
    """Whether each row stores audio bytes: from the row groups' null counts where they tell, else by
    reading that row group's bytes (one row group in memory at a time)."""
    import pyarrow.compute as pc

    meta = pf.metadata
    index = next(
        j for j in range(meta.num_columns) if meta.row_group(0).column(j).path_in_schema == f"{column}.bytes"
    )
    out: list[bool] = []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        stats = group.column(index).statistics
        if stats is not None and stats.has_null_count and stats.null_count in (0, group.num_rows):
            out += [stats.null_count == 0] * group.num_rows
        else:
            values = pf.read_row_group(g, columns=[f"{column}.bytes"]).column(column)
            out += pc.invert(pc.is_null(pc.struct_field(values, "bytes"))).to_pylist()
    return out


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
