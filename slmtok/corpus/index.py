"""The index of a finished corpus run, and reading items back as ``Tokens``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from slmtok.errors import SlmtokError
from slmtok.provenance import ref_from_dict
from slmtok.types import InputInfo, Tokens


def read_index(out: str | Path) -> list[dict[str, Any]]:
    """Rows of ``index.jsonl``: id, path, shard, row, frames, duration (s), sample_rate."""
    path = Path(out) / "index.jsonl"
    if not path.exists():
        raise SlmtokError(f"no index in {out}: the run has not finished (run the same command again)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@lru_cache(maxsize=8)
def _shard(path: str, mtime: float) -> tuple[dict, dict]:
    from slmtok.corpus.shard import read_shard

    return read_shard(Path(path))


def _tokens(header: dict, tensors: dict, row: int, info: InputInfo) -> Tokens:
    offsets = tensors["offsets"]
    a, b = int(offsets[row]), int(offsets[row + 1])
    codes = tensors["codes"][:, a:b].long()[None]
    extras = {
        k.removeprefix("extras."): v[..., a:b][None] for k, v in tensors.items() if k.startswith("extras.")
    }
    ref = header["tokenizer"]
    return Tokens(
        codes=codes,
        lengths=torch.tensor([b - a]),
        frame_rate=float(header["frame_rate"]),
        tokenizer=ref_from_dict(ref),
        extras=extras,
        input=info,
    )


def load_item(out: str | Path, item_id: str) -> Tokens:
    """The tokens of one input of a corpus run (what ``Tokenizer.encode`` gives for that file)."""
    out = Path(out)
    for row in read_index(out):
        if row["id"] == item_id:
            return _item_from_row(out, row)
    raise SlmtokError(f"{item_id!r} is not in the index of {out}")


def iter_items(out: str | Path) -> Iterator[tuple[dict[str, Any], Tokens]]:
    """Every (index row, tokens) of a corpus run, shard by shard."""
    out = Path(out)
    for row in read_index(out):
        yield row, _item_from_row(out, row)


def _item_from_row(out: Path, row: dict[str, Any]) -> Tokens:
    path = out / row["shard"]
    header, tensors = _shard(str(path), path.stat().st_mtime)
    rate = row["sample_rate"]
    info = InputInfo(rate, row["channels"], (round(row["duration"] * rate),))
    return _tokens(header, tensors, row["row"], info)
