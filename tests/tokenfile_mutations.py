"""Mutations of real ``.slmtok`` files, and the check that runs ``slmtok decode`` on each one.

Shared by ``tests/test_tokenfile_fuzz.py`` (driven by hypothesis) and ``benchmarks/tokenfile_fuzz.py``
(driven by ``random.Random``): a mutation draws its choices from a ``Draw`` (``integers(lo, hi)``,
``choice(seq)``), so one implementation serves both. Mutations: truncation at any byte, byte flips
(anywhere, or inside the header), the 8-byte header length, JSON mutations of the slmtok header (wrong
types, deep nesting, huge numbers, missing keys), of the safetensors tensor table (dtypes, huge shapes,
offsets, missing or extra tensors), of the metadata (format, version), and bad values in codes, lengths
and extras (durations: huge, negative, float).

The outcome of a case is classified without trusting slmtok: the exit code, the exact stderr text, the
files in the case folder before and after, the input bytes, the peak RSS the case added (the kernel's
high-water mark, reset per case) and its wall time.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

DTYPES = [
    "BOOL",
    "U8",
    "I8",
    "I16",
    "U16",
    "F16",
    "BF16",
    "I32",
    "U32",
    "F32",
    "I64",
    "U64",
    "F64",
    "C64",
    "XX",
]
VALUES: list[Any] = [
    None,
    True,
    False,
    -1,
    0,
    1,
    2**31,
    2**63,
    10**30,
    -(10**30),
    1e308,
    -1e-300,
    0.5,
    "",
    "x",
    "../../etc/passwd",
    "/dev/zero",
    [],
    {},
    [1, 2, 3],
    {"a": 1},
    ["x"] * 3,
]
HUGE_SHAPES: list[Any] = [
    [1, 1, 10**12],
    [2**31, 2**31, 2**31],
    [10**9],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [-1, 1, 1],
    ["1", 1, 1],
    [1.5, 1, 1],
    [],
    [0, 0, 0],
    None,
    "x",
]


class Draw(Protocol):
    def integers(self, low: int, high: int) -> int: ...

    def choice(self, options: Sequence[Any]) -> Any: ...


# ------------------------------------------------------------------------------------------ file parts
def split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """A valid safetensors blob -> (header dict, data bytes)."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join(header: Any, data: bytes) -> bytes:
    """(header, data) -> safetensors bytes (header serialised as is, however wrong)."""
    raw = dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in a JSON tree (keys and list indices)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value[:8]):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _deep(depth: int) -> str:
    """A placeholder that ``dumps`` turns into ``depth`` nested lists (too deep for ``json.dumps``)."""
    return f"__deep_{depth}__"


def dumps(value: Any) -> str:
    """``json.dumps`` that expands ``_deep`` placeholders into raw nested brackets."""
    import re

    text = json.dumps(value, allow_nan=True)
    return re.sub(r'"__deep_(\d+)__"', lambda m: "[" * int(m.group(1)) + "1" + "]" * int(m.group(1)), text)


def _set(tree: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return tree


def _json_value(draw: Draw) -> Any:
    kind = draw.integers(0, 3)
    if kind == 0:
        return _deep(draw.choice([40, 1000, 100_000]))
    return draw.choice(VALUES)


# ------------------------------------------------------------------------------------------ mutations
def truncate(blob: bytes, draw: Draw) -> bytes:
    return blob[: draw.integers(0, len(blob) - 1)]


def flip_bytes(blob: bytes, draw: Draw) -> bytes:
    data = bytearray(blob)
    (n,) = struct.unpack("<Q", blob[:8])
    in_header = draw.integers(0, 1)
    for _ in range(draw.integers(1, 8)):
        pos = draw.integers(8, 8 + n - 1) if in_header else draw.integers(0, len(data) - 1)
        data[pos] ^= draw.integers(1, 255)
    return bytes(data)


def header_length(blob: bytes, draw: Draw) -> bytes:
    (n,) = struct.unpack("<Q", blob[:8])
    value = draw.choice([0, 1, n - 1, n + 1, len(blob), 2**32, 2**63, 2**64 - 1])
    return struct.pack("<Q", value) + blob[8:]


def slmtok_header(blob: bytes, draw: Draw) -> bytes:
    """Wrong types, deep nesting, huge numbers or a missing key somewhere in the slmtok JSON header."""
    header, data = split(blob)
    inner = json.loads(header["__metadata__"]["header"])
    path = draw.choice(_paths(inner))
    if path and draw.integers(0, 3) == 0:
        inner = _set(inner, path, None, delete=True)
    else:
        inner = _set(inner, path, _json_value(draw))
    header["__metadata__"]["header"] = dumps(inner)
    return join(header, data)


def tensor_table(blob: bytes, draw: Draw) -> bytes:
    """Bad dtypes, huge or wrong shapes, offsets, missing or extra tensors in the safetensors table."""
    header, data = split(blob)
    names = [k for k in header if k != "__metadata__"]
    name = draw.choice(names)
    op = draw.integers(0, 6)
    if op == 0:
        header[name]["dtype"] = draw.choice(DTYPES)
    elif op == 1:
        header[name]["shape"] = draw.choice(HUGE_SHAPES)
    elif op == 2:
        start, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = draw.choice(
            [[0, 10**15], [end, start], [start, end + 8], [-8, end], [start, 2**64], "x"]
        )
    elif op == 3:
        del header[name]
    elif op == 4:
        header["extras." + draw.choice(["durations", "scale", "x y", "evil"])] = {
            "dtype": "I64",
            "shape": [1, 1, 1],
            "data_offsets": [len(data), len(data) + 8],
        }
        data += b"\xff" * 8
    elif op == 5:  # a consistent but reordered shape ([T, K, B])
        header[name]["shape"] = list(reversed(header[name]["shape"]))
    else:
        header[name] = draw.choice(VALUES)
    return join(header, data)


def metadata(blob: bytes, draw: Draw) -> bytes:
    header, data = split(blob)
    key = draw.choice(["format", "format_version", "header"])
    if draw.integers(0, 3) == 0:
        header["__metadata__"].pop(key)
    else:
        header["__metadata__"][key] = draw.choice(
            ["3", "0", "-1", "x", "99999999999999999999", "1", "2", "", "{}", "[]", "null", "slmtok"]
        )
    if draw.integers(0, 5) == 0:
        header["__metadata__"] = draw.choice(VALUES)
    return join(header, data)


def tensor_values(blob: bytes, draw: Draw) -> bytes:
    """Bad values in codes, lengths or extras (durations 1e9, negative, float), rewritten consistently."""
    import torch
    from safetensors.torch import load, save

    header, _ = split(blob)
    tensors = load(blob)
    meta = header.get("__metadata__")
    name = draw.choice(sorted(tensors))
    t = tensors[name].clone()
    op = draw.integers(0, 4)
    if op == 4:
        dtype = draw.choice(
            [torch.float32, torch.float64, torch.bool, torch.complex64, torch.uint8, torch.int64]
        )
        tensors[name] = t.to(dtype)
    else:
        value = draw.choice([-7, -1, 2**15 - 1, 10**9, -(10**9), 2**62, 2**31 - 1])
        flat = t.reshape(-1)
        if flat.numel():
            index = draw.integers(0, flat.numel() - 1)
            info = torch.iinfo(t.dtype) if not t.dtype.is_floating_point else torch.finfo(t.dtype)
            flat[index] = max(min(value, info.max), info.min)
        tensors[name] = flat.reshape(t.shape)
    return save(tensors, metadata=meta)


MUTATIONS: dict[str, Callable[[bytes, Draw], bytes]] = {
    "truncate": truncate,
    "flip": flip_bytes,
    "header_length": header_length,
    "slmtok_header": slmtok_header,
    "tensor_table": tensor_table,
    "metadata": metadata,
    "tensor_values": tensor_values,
}


# ------------------------------------------------------------------------------------------ one case
@dataclass
class Outcome:
    """What ``slmtok decode`` did with one mutated file."""

    kind: str  # "error" (one line, exit 1, no output), "decoded", or what went wrong
    rc: int | None
    stderr: str
    seconds: float
    peak_bytes: int
    load_tokens: str  # "ok", "TokenFileError", or the unexpected exception type
    extra: dict[str, Any] = field(default_factory=dict)


def run_case(
    blob: bytes,
    folder: Path,
    *,
    max_seconds: float = 30.0,
    max_bytes: int = 1 << 30,
    max_wall: float = 30.0,
    existing_output: bool = False,
) -> Outcome:
    """Write ``blob`` to ``folder/case.slmtok``, read it with ``load_tokens`` and decode it with the CLI
    (in-process); classify the outcome. ``folder`` must be empty. With ``existing_output``, the output
    file exists beforehand (a sentinel): a failed decode must leave it byte for byte."""
    from slmtok.cli.main import main
    from slmtok.errors import TokenFileError
    from slmtok.metrics.cost import PeakMemory
    from slmtok.tokenfile import load_tokens

    src = folder / "case.slmtok"
    src.write_bytes(blob)
    out = folder / "out" / "case.wav"
    (folder / "out").mkdir()
    sentinel = b"an earlier output\n"
    if existing_output:
        out.write_bytes(sentinel)
    try:
        load_tokens(src, max_seconds=max_seconds)
        loaded = "ok"
    except TokenFileError as error:
        loaded = "TokenFileError" if len(str(error).splitlines()) == 1 else "TokenFileError (several lines)"
    except BaseException as error:  # noqa: BLE001 - the point is to see any other exception
        loaded = type(error).__name__
    err, std = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    rc: int | None = None
    crash = ""
    with PeakMemory() as peak, contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            rc = main(["decode", str(src), "-o", str(out), "--max-seconds", str(max_seconds)])
        except SystemExit as exit_:
            rc = exit_.code if isinstance(exit_.code, int) else 2
        except BaseException:  # noqa: BLE001
            crash = traceback.format_exc().strip().splitlines()[-1]
    seconds = time.perf_counter() - start
    stderr = err.getvalue()
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    expected_files = ["case.slmtok"] + (["out/case.wav"] if rc == 0 or existing_output else [])
    lines = stderr.strip().splitlines()
    if crash:
        kind = f"traceback: {crash[:120]}"
    elif files != expected_files:
        kind = "files written: " + ", ".join(f for f in files if f not in expected_files)
        if rc != 0 and "out/case.wav" in files:
            kind = "output written on error"
    elif src.read_bytes() != blob:
        kind = "input changed"
    elif existing_output and rc != 0 and out.read_bytes() != sentinel:
        kind = "existing output changed on error"
    elif rc == 0:
        kind = "decoded"
    elif rc == 1 and len(lines) == 1 and lines[0].startswith("slmtok: error: "):
        kind = "error"
    else:
        kind = f"exit {rc} with {len(lines)} stderr lines"
    if peak.peak_bytes > max_bytes:
        kind = "over memory"
    if seconds > max_wall:
        kind = "over time"
    if loaded not in ("ok", "TokenFileError"):
        kind = f"load_tokens raised {loaded}"
    extra = {"replaced_existing_output": existing_output and rc == 0 and out.read_bytes() != sentinel}
    return Outcome(kind, rc, stderr.strip()[:300], seconds, peak.peak_bytes, loaded, extra)


def base_files(folder: Path) -> dict[str, bytes]:
    """Real token files to mutate: ``mel-rvq`` (8 codebooks), ``mfcc-km`` with ``dedup=True`` and
    ``mulaw-8bit``, each from 0.25 s of real speech (the Asterisk French prompts), with their header
    keys sorted so that a seed gives the same cases in every process."""
    import slmtok
    from slmtok.corpora import asterisk_prompts

    wav, rate = slmtok.read_audio(asterisk_prompts("fr")[0])
    x = wav[0, 4000:8000]
    out = {}
    for label, name, options in (
        ("mel-rvq", "mel-rvq", {}),
        ("mfcc-km-dedup", "mfcc-km", {"dedup": True}),
        ("mulaw-8bit", "mulaw-8bit", {}),
    ):
        tok = slmtok.load(name, **options)
        y = x if name != "mulaw-8bit" else x[:1600]
        path = slmtok.save_tokens(folder / f"{label}.slmtok", tok.encode(y, rate), card=tok.card.to_dict())
        header, data = split(path.read_bytes())  # safetensors orders metadata at random: sort it
        out[label] = join(json.loads(json.dumps(header, sort_keys=True)), data)
    return out


def mutate(bases: dict[str, bytes], draw: Draw) -> tuple[str, str, bytes]:
    """(base label, mutation name, mutated bytes)."""
    label = draw.choice(sorted(bases))
    name = draw.choice(sorted(MUTATIONS))
    return label, name, MUTATIONS[name](bases[label], draw)
