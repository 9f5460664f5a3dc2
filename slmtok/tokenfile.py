"""``.slmtok`` token files: safetensors tensors plus a JSON header, decodable from the file alone.

Layout: a standard safetensors file whose ``__metadata__`` holds ``format = "slmtok"``,
``format_version`` and ``header`` (JSON). Tensors: ``codes`` ``[B, K, T]`` (int16 or int32, -1 padding),
``lengths`` ``[B]``, and ``extras.<name>`` for each extra. The header names the tokenizer (name, card hash,
load options without ``trust``, and, from format 2 on, ``weights``: each weights file's resolved path and
sha256), its card, sample and frame rates, codebook sizes, per-item lengths, and the source files with
their durations. Any safetensors reader can open it; nothing in it is executable.

Reading trusts nothing: ``load_tokens`` checks the safetensors layout against the file size before
anything is allocated (``slmtok.safetensors_layout``), then every header field's type, every tensor's
dtype and shape against the others, lengths, codes and extras, and the audio each item would decode to
(at most ``max_seconds``, default 4 h). Anything else is a one-line ``TokenFileError``. Format 1 files
(no weights records) are still read.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from slmtok.atomic import atomic_path
from slmtok.errors import TokenFileError
from slmtok.safetensors_layout import LayoutError, TensorLayout, parse_json, read_layout
from slmtok.tokenizer import MAX_DECODE_SECONDS
from slmtok.types import PAD_CODE, InputInfo, TokenizerRef, Tokens

FORMAT = "slmtok"
#: 2: the tokenizer's ``weights`` records (path + sha256); ``trust`` is no longer written
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SUFFIX = ".slmtok"

#: dtypes codes may be stored in (floats, bools and complex are refused, never cast)
CODE_DTYPES = ("I8", "U8", "I16", "U16", "I32", "U32", "I64")
#: extras slmtok's tokenizers write, with the dtypes they may have
KNOWN_EXTRAS = {
    "durations": ("I8", "U8", "I16", "U16", "I32", "U32", "I64"),  # frames per deduplicated unit
    "samples": ("I8", "U8", "I16", "U16", "I32", "U32", "I64"),  # SNAC: samples per frame
    "scale": ("F16", "BF16", "F32", "F64"),  # EnCodec 48 kHz: per-segment scales
}
EXTRA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_ITEMS = 1_000_000
MAX_CODEBOOKS = 1024
MAX_TEXT = 4096


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

    from slmtok.provenance import ref_to_dict

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
    ref = tokens.tokenizer
    header = {
        "tokenizer": ref_to_dict(ref),
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
    try:
        text = json.dumps(header, default=str, allow_nan=False)
    except ValueError as error:
        raise TokenFileError(f"cannot write {path}: header is not JSON ({error})") from None
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "header": text}
    blob = save(tensors, metadata=metadata)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    return path


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a ``.slmtok`` file (without reading the codes)."""
    return _open(Path(path))[1]


def load_tokens(path: str | os.PathLike, *, max_seconds: float = MAX_DECODE_SECONDS) -> Tokens:
    """Read a ``.slmtok`` file, checking everything in it before allocating.

    Args:
        max_seconds: refuse a file any of whose items would decode to more audio than this (seconds;
            default 4 h), counting deduplicated units by their durations.

    Raises ``TokenFileError`` for a missing, corrupt, inconsistent, too-long or too-new file.
    """
    from safetensors import safe_open

    path = Path(path)
    layout, header = _open(path)
    bad = _Refusal(path)
    codes_t, lengths_t = layout.get("codes"), layout.get("lengths")
    if codes_t is None or lengths_t is None:
        raise bad("codes or lengths missing")
    for name in layout:
        if name not in ("codes", "lengths") and not (
            name.startswith("extras.") and EXTRA_NAME.match(name.removeprefix("extras."))
        ):
            raise bad(f"unexpected tensor {name[:40]!r}")
    if codes_t.dtype not in CODE_DTYPES:
        raise bad(f"codes are {codes_t.dtype}; codes must be integers ({', '.join(CODE_DTYPES)})")
    if len(codes_t.shape) != 3:
        raise bad(f"codes must be [B, K, T], got shape {list(codes_t.shape)}")
    b, k, t = codes_t.shape
    if not (1 <= b <= MAX_ITEMS and 1 <= k <= MAX_CODEBOOKS):
        raise bad(f"codes shape {list(codes_t.shape)} has no items or too many codebooks")
    if lengths_t.dtype not in CODE_DTYPES or lengths_t.shape != (b,):
        raise bad(f"lengths must be {b} integers, got {lengths_t.dtype} {list(lengths_t.shape)}")
    for name, spec in layout.items():
        if name.startswith("extras."):
            _check_extra_layout(bad, name.removeprefix("extras."), spec, b, t)
    fields = _header_fields(bad, header, b, k)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in layout}
    except Exception as error:  # noqa: BLE001 - safetensors raises several types for junk input
        raise bad(f"unreadable tensors ({_first_line(error)})") from None
    codes = tensors["codes"].long()
    lengths = tensors["lengths"].long()
    if bool((lengths < 0).any()) or bool((lengths > t).any()):
        raise bad(f"lengths must lie in [0, {t}] frames")
    if fields["lengths"] is not None and fields["lengths"] != lengths.tolist():
        raise bad("header lengths differ from the lengths tensor")
    valid = torch.arange(t)[None, None, :] < lengths[:, None, None]  # [B, 1, T]
    if bool(((codes < 0) & valid).any()) or bool((codes < PAD_CODE).any()):
        raise bad("codes must be >= 0 within each item's length (-1 only as padding)")
    extras = {k.removeprefix("extras."): v for k, v in tensors.items() if k.startswith("extras.")}
    for name, value in extras.items():
        if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            raise bad(f"extra {name!r} holds NaN or infinite values")
        if name in ("durations", "samples") and bool((value.long() < 0).any()):
            raise bad(f"extra {name!r} must be non-negative")
    tokens = Tokens(
        codes=codes,
        lengths=lengths,
        frame_rate=fields["frame_rate"],
        tokenizer=fields["tokenizer"],
        extras=extras,
        input=fields["input"],
    )
    _check_duration(bad, tokens, max_seconds)
    return tokens


class _Refusal:
    """Builds the one-line ``TokenFileError`` for a corrupt ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, reason: str) -> TokenFileError:
        return TokenFileError(f"corrupt token file {self.path}: {_first_line(reason)}")


def _first_line(error: object) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def _check_extra_layout(bad: _Refusal, name: str, spec: TensorLayout, b: int, t: int) -> None:
    allowed = KNOWN_EXTRAS.get(
        name, ("I8", "U8", "I16", "U16", "I32", "U32", "I64", "F16", "BF16", "F32", "F64")
    )
    if spec.dtype not in allowed:
        raise bad(f"extra {name!r} is {spec.dtype}; it must be one of {', '.join(allowed)}")
    shape = spec.shape
    if len(shape) != 3 or shape[0] != b or shape[2] != t or not 1 <= shape[1] <= MAX_CODEBOOKS:
        raise bad(f"extra {name!r} must be [B, n, T] = [{b}, n, {t}], got {list(shape)}")
    if name in ("durations", "samples") and shape[1] != 1:
        raise bad(f"extra {name!r} must be [B, 1, T], got {list(shape)}")


def _check_duration(bad: _Refusal, tokens: Tokens, max_seconds: float) -> None:
    from slmtok.errors import CodesError
    from slmtok.tokenizer import decoded_frames

    if not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise TokenFileError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    try:
        frames = decoded_frames(tokens)
    except CodesError as error:
        raise bad(str(error)) from None
    seconds = frames / tokens.frame_rate
    if float(seconds.max()) > max_seconds:
        i = int(seconds.argmax())
        raise bad(
            f"item {i} would decode to {float(seconds[i]):.4g} s of audio, more than the limit of "
            f"{max_seconds:g} s (raise it with max_seconds= / --max-seconds)"
        )


def _is_int(value: Any, low: int = 0, high: int = 2**53) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_text(value: Any, limit: int = MAX_TEXT) -> bool:
    return isinstance(value, str) and len(value) <= limit


def _header_fields(bad: _Refusal, header: dict[str, Any], b: int, k: int) -> dict[str, Any]:
    """Typed, range-checked fields of a parsed header (``bad(...)`` for anything else)."""
    from slmtok.provenance import parse_weights

    frame_rate = header.get("frame_rate")
    if not (isinstance(frame_rate, (int, float)) and not isinstance(frame_rate, bool)):
        raise bad("header frame_rate must be a number")
    frame_rate = float(frame_rate)
    if not (math.isfinite(frame_rate) and 0 < frame_rate <= 1e6):
        raise bad(f"header frame_rate {frame_rate:g} is not in (0, 1e6] Hz")
    n_codebooks = header.get("n_codebooks", k)
    if n_codebooks != k or isinstance(n_codebooks, bool):
        raise bad(f"header n_codebooks {str(n_codebooks)[:20]} differs from the codes' {k}")
    lengths = header.get("lengths")
    if lengths is not None and not (isinstance(lengths, list) and all(_is_int(n) for n in lengths)):
        raise bad("header lengths must be a list of integers")
    ref = header.get("tokenizer")
    if not isinstance(ref, dict):
        raise bad("header tokenizer must be an object")
    name, digest, options = ref.get("name"), ref.get("hash", ""), ref.get("options") or {}
    if not (_is_text(name, 200) and name):
        raise bad("header tokenizer name must be a non-empty string")
    if not (_is_text(digest, 128) and re.fullmatch(r"[0-9A-Za-z:._-]*", digest)):
        raise bad("header tokenizer hash must be up to 128 letters, digits or :._-")
    if not isinstance(options, dict):
        raise bad("header tokenizer options must be an object")
    try:
        weights = parse_weights(ref.get("weights"))
    except ValueError as error:
        raise bad(f"header tokenizer {error}") from None
    sources = header.get("sources")
    if sources is not None and not (
        isinstance(sources, list) and len(sources) == b and all(_is_text(s) for s in sources)
    ):
        raise bad(f"header sources must be {b} strings")
    card = header.get("card")
    if card is not None and not isinstance(card, dict):
        raise bad("header card must be an object")
    return {
        "frame_rate": frame_rate,
        "lengths": lengths,
        "tokenizer": TokenizerRef(name, digest, dict(options), weights),
        "input": _input_info(bad, header.get("input"), b),
    }


def _input_info(bad: _Refusal, info: Any, b: int) -> InputInfo | None:
    if info is None:
        return None
    if not isinstance(info, dict):
        raise bad("header input must be an object")
    rate, channels = info.get("sample_rate"), info.get("channels")
    lengths, steps = info.get("lengths"), info.get("steps", [])
    if not (_is_int(rate, 1, 10**7) and _is_int(channels, 1, 1024)):
        raise bad("header input sample_rate and channels must be positive integers")
    if not (isinstance(lengths, list) and len(lengths) == b and all(_is_int(n) for n in lengths)):
        raise bad(f"header input lengths must be {b} non-negative integers")
    if not (isinstance(steps, list) and len(steps) <= 64 and all(_is_text(s, 500) for s in steps)):
        raise bad("header input steps must be a list of strings")
    return InputInfo(rate, channels, tuple(lengths), tuple(steps))


def _open(path: Path) -> tuple[dict[str, TensorLayout], dict[str, Any]]:
    """The checked tensor layout and the parsed JSON header of a token file."""
    if not path.exists():
        raise TokenFileError(f"no such token file: {path}")
    if path.is_dir():
        raise TokenFileError(f"is a folder, not a token file: {path}")
    try:
        metadata, layout = read_layout(path)
    except LayoutError as error:
        raise TokenFileError(f"not a .slmtok token file (unreadable safetensors: {error}): {path}") from None
    except OSError as error:
        raise TokenFileError(f"cannot read token file {path}: {error.strerror or error}") from None
    if metadata.get("format") != FORMAT:
        raise TokenFileError(f"not a .slmtok token file (no slmtok header): {path}")
    text = metadata.get("format_version", "")
    if not re.fullmatch(r"[0-9]{1,6}", text):
        raise TokenFileError(f"corrupt token file {path}: bad format_version")
    version = int(text)
    if version > FORMAT_VERSION:
        raise TokenFileError(
            f"{path} uses token-file format version {version}; this slmtok reads up to {FORMAT_VERSION}: upgrade slmtok"
        )
    if version not in READABLE_VERSIONS:
        raise TokenFileError(f"corrupt token file {path}: unknown format_version {version}")
    try:
        header = parse_json(metadata.get("header", ""), "header")
    except LayoutError as error:
        raise TokenFileError(f"corrupt token file {path}: {error}") from None
    if not isinstance(header, dict):
        raise TokenFileError(f"corrupt token file {path}: header is not a JSON object")
    return layout, header
