"""``.slmtok`` token files: safetensors tensors plus a JSON header, decodable from the file alone.

Layout: a standard safetensors file whose ``__metadata__`` holds ``format = "slmtok"``,
``format_version`` and ``header`` (JSON). Tensors: ``codes`` ``[B, K, T]`` (int16 or int32, -1 padding),
``lengths`` ``[B]``, and ``extras.<name>`` for each extra. The header names the tokenizer (name, card hash,
load options), its card, sample and frame rates, codebook sizes, per-item lengths, and the source files
with their durations. Any safetensors reader can open it; nothing in it is executable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from slmtok.atomic import atomic_path
from slmtok.errors import TokenFileError
from slmtok.types import InputInfo, TokenizerRef, Tokens

FORMAT = "slmtok"
FORMAT_VERSION = 1
SUFFIX = ".slmtok"


def save_tokens(
    path: str | os.PathLike,
    tokens: Tokens,
    *,
    card: dict[str, Any] | None = None,
    sources: list[str] | None = None,
) -> Path:
    """Write ``tokens`` to ``path`` atomically (temporary file, then rename).

    Args:
        card: the tokenizer card (``card.to_dict()``) to embed for people and tools reading the file.
        sources: one source name per item (e.g. the audio file each item came from).
    """
    from safetensors.torch import save

    path = Path(path)
    if sources is not None and len(sources) != tokens.batch_size:
        raise TokenFileError(f"sources has {len(sources)} names for {tokens.batch_size} items")
    codes = tokens.codes.cpu()
    top = int(codes.max()) if codes.numel() else 0
    dtype = torch.int16 if top < 2**15 else torch.int32
    tensors = {"codes": codes.to(dtype).contiguous(), "lengths": tokens.lengths.cpu().long().contiguous()}
    for name, value in tokens.extras.items():
        tensors[f"extras.{name}"] = value.cpu().contiguous()
    info = tokens.input
    header = {
        "tokenizer": {
            "name": tokens.tokenizer.name,
            "hash": tokens.tokenizer.hash,
            "options": tokens.tokenizer.options,
        },
        "card": card,
        "frame_rate": tokens.frame_rate,
        "n_codebooks": tokens.n_codebooks,
        "codebook_sizes": (card or {}).get("codebook_sizes"),
        "sample_rate": (card or {}).get("sample_rate"),
        "lengths": tokens.lengths.tolist(),
        "input": None
        if info is None
        else {
            "sample_rate": info.sample_rate,
            "channels": info.channels,
            "lengths": list(info.lengths),
            "durations": list(info.durations),
            "steps": list(info.steps),
        },
        "sources": sources,
    }
    try:
        from importlib.metadata import version

        header["written_by"] = f"slmtok {version('slmtok')}"
    except Exception:  # noqa: BLE001 - running from a source tree
        header["written_by"] = "slmtok"
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "header": json.dumps(header)}
    blob = save(tensors, metadata=metadata)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    return path


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a ``.slmtok`` file (without reading the codes)."""
    return _open(Path(path))[1]


def load_tokens(path: str | os.PathLike) -> Tokens:
    """Read a ``.slmtok`` file. Raises ``TokenFileError`` for a missing, corrupt or too-new file."""
    from safetensors import safe_open

    path = Path(path)
    _, header = _open(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except Exception as error:  # noqa: BLE001
        raise TokenFileError(f"corrupt token file {path}: {error}") from None
    if "codes" not in tensors or "lengths" not in tensors:
        raise TokenFileError(f"corrupt token file {path}: codes or lengths missing")
    ref = header.get("tokenizer") or {}
    info = header.get("input")
    try:
        return Tokens(
            codes=tensors["codes"].long(),
            lengths=tensors["lengths"].long(),
            frame_rate=float(header["frame_rate"]),
            tokenizer=TokenizerRef(ref["name"], ref.get("hash", ""), dict(ref.get("options") or {})),
            extras={k.removeprefix("extras."): v for k, v in tensors.items() if k.startswith("extras.")},
            input=None
            if info is None
            else InputInfo(
                info["sample_rate"], info["channels"], tuple(info["lengths"]), tuple(info.get("steps", ()))
            ),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise TokenFileError(f"corrupt token file {path}: bad header ({error})") from None


def _open(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    from safetensors import safe_open

    if not path.exists():
        raise TokenFileError(f"no such token file: {path}")
    if path.is_dir():
        raise TokenFileError(f"is a folder, not a token file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception:  # noqa: BLE001 - safetensors raises several types for junk input
        raise TokenFileError(f"not a .slmtok token file (unreadable safetensors): {path}") from None
    if metadata.get("format") != FORMAT:
        raise TokenFileError(f"not a .slmtok token file (no slmtok header): {path}")
    try:
        version = int(metadata.get("format_version", "0"))
    except ValueError:
        raise TokenFileError(f"corrupt token file {path}: bad format_version") from None
    if version > FORMAT_VERSION:
        raise TokenFileError(
            f"{path} uses token-file format version {version}; this slmtok reads up to {FORMAT_VERSION}: upgrade slmtok"
        )
    try:
        header = json.loads(metadata["header"])
    except (KeyError, json.JSONDecodeError):
        raise TokenFileError(f"corrupt token file {path}: bad JSON header") from None
    return metadata, header
