"""Encode collected input items (``slmtok.inputs``) with a tokenizer, file by file, in batches.

Shared by ``slmtok encode`` / ``resynth`` and by the LM data sources: items are read, grouped by sample
rate and channel count, encoded together, and handed back one at a time in input order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from slmtok.audio import read_audio
from slmtok.errors import SlmtokError
from slmtok.inputs import InputItem
from slmtok.tokenizer import encode_list
from slmtok.types import Tokens

T = TypeVar("T")


def check_readable(items: list[InputItem]) -> None:
    """Fail before any work if an input is not an audio file (reads headers only where possible).

    Raises ``AudioError`` naming the first unreadable file.
    """
    import soundfile as sf

    for item in items:
        try:
            sf.info(str(item.path))
        except Exception:  # noqa: BLE001 - not libsndfile's: let the full reader (FFmpeg) decide
            read_audio(item.path)


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
        loaded = [(item, *read_audio(item.path, start=item.start, duration=item.duration)) for item in batch]
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
