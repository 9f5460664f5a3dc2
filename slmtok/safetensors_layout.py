"""Check a safetensors file's layout before any reader allocates from it.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
(``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}``) and the tensor bytes.
``read_layout`` reads only the prefix and the header, caps the header size and JSON nesting depth, and
checks every tensor's dtype, shape and offsets against the size of the file, so that a reader given the
file afterwards allocates at most what the file holds.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: bytes per element of each safetensors dtype
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}
MAX_HEADER_BYTES = 8 * 2**20
MAX_DEPTH = 32
MAX_NDIM = 8


class LayoutError(ValueError):
    """A file that is not a well-formed safetensors file (one-line reason)."""


@dataclass(frozen=True)
class TensorLayout:
    """One tensor of the file: dtype name, shape, and byte range in the data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, ``[]`` 1), computed without recursion."""
    depth, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
            depth = max(depth, level + 1)
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
            depth = max(depth, level + 1)
    return depth


def parse_json(text: str | bytes, what: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that turns every failure (syntax, encoding, recursion, huge integers) and nesting
    deeper than ``max_depth`` into ``LayoutError``."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise LayoutError(f"{what} is not valid JSON") from None
    if json_depth(value) > max_depth:
        raise LayoutError(f"{what} is nested deeper than {max_depth} levels")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_layout(
    path: str | os.PathLike, *, max_header_bytes: int = MAX_HEADER_BYTES
) -> tuple[dict[str, str], dict[str, TensorLayout]]:
    """``(metadata, {name: TensorLayout})`` of a safetensors file, checked against its size.

    Raises ``LayoutError`` for anything that does not fit: a header longer than ``max_header_bytes`` or
    the file, bad JSON, unknown dtypes, shapes whose bytes differ from their offsets, offsets past the end
    of the file, overlapping or gapped tensors, non-string metadata.
    """
    path = Path(path)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise LayoutError("not a regular file")
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise LayoutError("shorter than the 8-byte header length")
        size = int.from_bytes(prefix, "little")
        if size > max_header_bytes:
            raise LayoutError(f"header of {size} bytes is over the {max_header_bytes}-byte limit")
        if size > st.st_size - 8:
            raise LayoutError(f"header of {size} bytes does not fit in a {st.st_size}-byte file")
        raw = f.read(size)
    if len(raw) != size:
        raise LayoutError("file changed while being read")
    header = parse_json(raw, "safetensors header")
    if not isinstance(header, dict):
        raise LayoutError("safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise LayoutError("__metadata__ must map strings to strings")
    data_size = st.st_size - 8 - size
    tensors: dict[str, TensorLayout] = {}
    for name, spec in header.items():
        tensors[name] = _tensor(name, spec, data_size)
    position = 0
    for name, t in sorted(tensors.items(), key=lambda kv: (kv[1].start, kv[1].end)):
        if t.start != position:
            raise LayoutError(f"tensor {name[:40]!r} starts at byte {t.start}, expected {position}")
        position = t.end
    if position != data_size:
        raise LayoutError(f"tensors cover {position} bytes of a {data_size}-byte data section")
    return metadata, tensors


def _tensor(name: str, spec: Any, data_size: int) -> TensorLayout:
    label = repr(name[:40])
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise LayoutError(f"tensor {label} needs exactly dtype, shape and data_offsets")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise LayoutError(f"tensor {label} has unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(n) and n >= 0 for n in shape):
        raise LayoutError(f"tensor {label} shape must be a list of at most {MAX_NDIM} non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(n) for n in offsets)):
        raise LayoutError(f"tensor {label} data_offsets must be two integers")
    start, end = offsets
    if not 0 <= start <= end <= data_size:
        raise LayoutError(f"tensor {label} bytes [{start}, {end}) lie outside the {data_size}-byte data")
    if math.prod(shape) * DTYPE_SIZES[dtype] != end - start:
        raise LayoutError(f"tensor {label} shape {shape} {dtype} does not match its {end - start} bytes")
    return TensorLayout(dtype, tuple(shape), start, end)
