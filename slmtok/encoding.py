"""Encode collected input items (``slmtok.inputs``) with a tokenizer, file by file, in batches.

Shared by ``slmtok encode`` / ``resynth`` and by the LM data sources: items are read, grouped by sample
rate and channel count, encoded together, and handed back one at a time in input order.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TypeVar

import torch

from slmtok.audio import read_audio
from slmtok.errors import AudioError, SlmtokError
from slmtok.inputs import InputItem, Source
from slmtok.tokenizer import encode_list
from slmtok.types import Tokens

T = TypeVar("T")


def read_item(item: InputItem) -> tuple[torch.Tensor, int]:
    """The audio of ``item`` as float32 ``[C, T]`` and its sample rate (Hz): its segment of a file, or
    of a tar member or dataset row (``item.source``). Raises ``AudioError`` naming the item."""
    return read_input(item.path, item.source, start=item.start, duration=item.duration, label=item.label)


def read_input(
    path: str | os.PathLike,
    source: Source | None,
    *,
    start: float = 0.0,
    duration: float | None = None,
    label: str | None = None,
) -> tuple[torch.Tensor, int]:
    """``read_audio`` for a file (``source`` ``None``) or for the bytes ``source`` names inside ``path``
    (copied to a temporary file, so every format ``read_audio`` reads is read the same way; nothing is
    ever extracted beside the input). ``start``/``duration`` in seconds."""
    if source is None:
        return read_audio(path, start=start, duration=duration)
    label = label or f"{path}::{source.label}"
    with materialized(path, source, label) as tmp:
        try:
            return read_audio(tmp, start=start, duration=duration)
        except AudioError as error:
            raise AudioError(str(error).replace(str(tmp), label)) from None


def header_seconds(path: str | os.PathLike, source: Source | None) -> float:
    """Duration in seconds of a file or of the audio ``source`` names inside ``path``, from the header
    where soundfile reads it, else by decoding it whole (FFmpeg). Raises ``AudioError``."""
    import soundfile as sf

    with contextlib.ExitStack() as stack:
        file = Path(path) if source is None else stack.enter_context(materialized(path, source))
        try:
            return float(sf.info(str(file)).duration)
        except Exception:  # noqa: BLE001 - not libsndfile's: let the full reader (FFmpeg) decide
            wav, rate = read_audio(file)
            return wav.shape[-1] / rate


@contextlib.contextmanager
def materialized(path: str | os.PathLike, source: Source, label: str | None = None) -> Iterator[Path]:
    """The bytes ``source`` names inside ``path`` (a tar member, a dataset row) as a temporary file,
    removed on exit; its name keeps the member's audio extension (FFmpeg needs it for G.722)."""
    label = label or f"{path}::{source.label}"
    with tempfile.TemporaryDirectory(prefix="slmtok-") as folder:
        if source.kind == "tar":
            tmp = Path(folder) / f"audio{_suffix(source.member)}"
            _copy_range(Path(path), source.offset, source.size, tmp, label)
        else:
            raw_name, data = _dataset_audio(Path(path), source, label)
            tmp = Path(folder) / f"audio{_suffix(raw_name or '')}"
            tmp.write_bytes(data)
        yield tmp


def _suffix(name: str) -> str:
    suffix = PurePosixPath(name).suffix
    return suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 8 else ""


def _copy_range(path: Path, offset: int, size: int, target: Path, label: str) -> None:
    """Copy ``size`` bytes at ``offset`` of ``path`` (a tar member's data) to ``target``."""
    try:
        with path.open("rb") as f:
            if offset + size > os.fstat(f.fileno()).st_size:
                raise AudioError(f"{label}: the tar file is shorter than its index says (truncated?)")
            f.seek(offset)
            with target.open("wb") as out:
                left = size
                while left:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        raise AudioError(f"{label}: the tar file ends inside this member")
                    out.write(chunk)
                    left -= len(chunk)
    except OSError as error:
        raise AudioError(f"{label}: cannot read ({error.strerror})") from None


def _dataset_audio(folder: Path, source: Source, label: str) -> tuple[str | None, bytes]:
    """The stored ``(path, bytes)`` of one row's audio in a ``save_to_disk`` folder or Parquet file."""
    from slmtok.input_formats import need

    if source.kind == "hf":
        need("datasets")  # a missing package is its own one-line error
    try:
        if source.kind == "parquet":
            value = _parquet_row(str(folder), os.stat(folder).st_mtime_ns, source.member, source.offset)
        else:
            loaded = _load_dataset(str(folder), _stamp(folder))
            ds = loaded[source.split] if source.split is not None else loaded
            value = ds.data.column(source.member)[source.offset].as_py()
    except Exception as error:  # noqa: BLE001 - the folder changed since it was listed
        raise AudioError(f"{label}: cannot read the dataset row ({type(error).__name__}: {error})") from None
    if not isinstance(value, dict) or not isinstance(value.get("bytes"), bytes):
        raise AudioError(f"{label}: the row holds no audio bytes")
    return value.get("path"), value["bytes"]


def _parquet_row(path: str, stamp: int, column: str, row: int) -> dict | None:
    """Row ``row`` of ``column`` of a Parquet file, read by row group (the last one read is kept: items
    come in order, so a row group is read once)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    first = 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if row < first + n:
            return _row_group(path, stamp, g, column)[row - first].as_py()
        first += n
    raise IndexError(f"row {row} of {first}")


@functools.lru_cache(maxsize=1)
def _row_group(path: str, stamp: int, group: int, column: str):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read_row_group(group, columns=[column]).column(column)


def _stamp(folder: Path) -> tuple[float, ...]:
    """Modification times of a datasets folder's state files: a folder saved again is loaded again."""
    names = ("state.json", "dataset_dict.json")
    return tuple(os.stat(folder / n).st_mtime_ns for n in names if (folder / n).exists())


@functools.lru_cache(maxsize=4)
def _load_dataset(folder: str, stamp: tuple[float, ...]):
    """``datasets.load_from_disk(folder)`` (memory-mapped), kept for the next rows of the same folder."""
    from slmtok.input_formats import need

    return need("datasets").load_from_disk(folder)


def check_readable(items: list[InputItem]) -> None:
    """Fail before any work if an input is not an audio file (reads headers only where possible).

    Raises ``AudioError`` naming the first unreadable file.
    """
    for item in items:
        try:
            header_seconds(item.path, item.source)
        except AudioError as error:
            raise AudioError(f"{item.label}: {error}" if item.source is not None else str(error)) from None


def batches(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of at most ``size``; ``SlmtokError`` if ``size`` < 1."""
    if size < 1:
        raise SlmtokError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def encode_items(
    tok, items: list[InputItem], n_codebooks: int | None, batch_size: int
) -> Iterator[tuple[InputItem, Tokens]]:
    """Read and encode ``items`` in batches of ``batch_size`` files (grouped by sample rate and
    channels); yield ``(item, tokens)`` in input order, ``tokens`` holding one item (codes ``[1, K, T]``).

    Errors name the item (``path`` or ``path[start:end]``) they come from.
    """
    for batch in batches(items, batch_size):
        loaded = [(item, *read_item(item)) for item in batch]
        groups: dict[tuple[int, int], list] = {}
        for item, wav, rate in loaded:
            groups.setdefault((rate, wav.shape[0]), []).append((item, wav))
        done: dict[int, Tokens] = {}
        for (rate, _), members in groups.items():
            try:
                results = encode_list(tok, [wav for _, wav in members], rate, n_codebooks=n_codebooks)
            except SlmtokError as error:  # a batch of one
                raise type(error)(f"{members[0][0].label}: {error}") from None
            for (item, _), result in zip(members, results, strict=True):
                if isinstance(result, SlmtokError):
                    raise type(result)(f"{item.label}: {result}") from None
                done[id(item)] = result
        for item in batch:
            yield item, done[id(item)]
