"""Which weights made some tokens, and how to find them again without trusting the tokens.

A tokenizer loaded from local files (``checkpoint=``, ``kmeans=``, ``vocoder=``, ``bundle=``, a ``card=``
file) records each of them on its tokens as a ``WeightsFile``: the resolved absolute path and the sha256
of the file (of a folder: of its manifest). ``load_for(tokens)`` rebuilds the tokenizer:

- weights: a user-given path whose sha256 equals a record, else the recorded path if its sha256 still
  matches; otherwise a one-line ``WeightsNotFoundError`` saying where it looked. A path read from a token
  file is never opened before its sha256 is checked, and only regular files and folders are read;
- options: only an allow-list of harmless, format-defining choices (``n_codebooks``, ``dedup``,
  ``speaker`` ...) with type and range checks; anything else in the file is ignored;
- ``trust``: only from the caller, never from the tokens.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from slmtok.errors import SlmtokError, TokenFileError, TokenizerMismatchError
from slmtok.types import TokenizerRef, Tokens, WeightsFile

#: load options that name local files; recorded as ``WeightsFile`` records, never re-applied as given
PATH_OPTIONS = ("checkpoint", "kmeans", "vocoder", "bundle", "card", "bpe")
#: load options that are the loader's choice, never recorded on tokens
DROPPED_OPTIONS = ("trust",)
#: files hashed per folder at most (a bundle or vocoder folder holds a handful)
MAX_FOLDER_FILES = 10_000
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class WeightsNotFoundError(SlmtokError, FileNotFoundError):
    """The weights that made some tokens are neither where they were nor among the paths given."""


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


#: options a token file may set on decode: harmless, format-defining choices, with their checks
FILE_OPTIONS: dict[str, Callable[[Any], bool]] = {
    "n_codebooks": _int_in(1, 1024),
    "dedup": _is_bool,
    "predict_durations": _is_bool,
    "speaker": _int_in(0, 2**31 - 1),
    "style": _int_in(0, 2**31 - 1),
    "noise_seed": _int_in(0, 2**63 - 1),
    "sample_rate": _int_in(1000, 384_000),
}
#: vocoders a token file may name (a published decoder chosen by name: encodec-24khz's ``vocoder="vocos"``)
FILE_VOCODERS = ("vocos",)


# ------------------------------------------------------------------------------------------ digests
_FILE_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def _kind(path: Path) -> str | None:
    """``"file"``, ``"folder"`` or ``None`` (missing, or a device, FIFO or socket: never opened)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return None


def _file_sha256(path: Path) -> str:
    from slmtok.hub.download import sha256_file

    st = os.stat(path)  # ctime cannot be set back by hand: a rewritten file is hashed again
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _FILE_DIGESTS:
        _FILE_DIGESTS[key] = sha256_file(path)
    return _FILE_DIGESTS[key]


def _folder_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if _kind(p) == "file")
    if len(files) > MAX_FOLDER_FILES:
        raise SlmtokError(f"weights folder {path} holds more than {MAX_FOLDER_FILES} files")
    for file in files:
        rel = file.relative_to(path).as_posix()
        digest.update(f"{rel}\0{file.stat().st_size}\0{_file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _size(path: Path, kind: str) -> int:
    if kind == "file":
        return os.stat(path).st_size
    return sum(os.stat(p).st_size for p in path.rglob("*") if _kind(p) == "file")


def digest(path: str | os.PathLike, size: int | None = None) -> tuple[str, str, int] | None:
    """``(kind, sha256, size)`` of a weights file or folder, or ``None`` when it is missing or not a
    regular file or folder (a device or FIFO is never opened). With ``size``, a file or folder of
    another size is not read: its sha256 comes back as ``""``."""
    path = Path(path)
    kind = _kind(path)
    if kind is None:
        return None
    try:
        actual = _size(path, kind)
        if size is not None and actual != size:
            return kind, "", actual
        return kind, _file_sha256(path) if kind == "file" else _folder_sha256(path), actual
    except OSError:
        return None


# ------------------------------------------------------------------------------------------ records
def _paths(value: Any) -> list[tuple[int | None, str]]:
    if isinstance(value, (str, os.PathLike)):
        return [(None, os.fspath(value))]
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, os.PathLike)) for v in value):
        return [(i, os.fspath(v)) for i, v in enumerate(value)]
    return []


def weights_records(options: dict[str, Any]) -> tuple[WeightsFile, ...]:
    """Records of the local weights files named by load ``options`` (resolved path and sha256).

    Values that are not existing paths (a hub card name, ``vocoder="none"``) get no record."""
    records = []
    for option in PATH_OPTIONS:
        for index, text in _paths(options.get(option)):
            if not text or text == "none":
                continue
            found = digest(text)
            if found is not None:
                kind, sha, size = found
                records.append(WeightsFile(option, index, str(Path(text).resolve()), sha, kind, size))
    return tuple(records)


def recorded_options(options: dict[str, Any]) -> dict[str, Any]:
    """The load options kept on tokens: ``trust`` dropped."""
    return {k: v for k, v in options.items() if k not in DROPPED_OPTIONS}


def parse_weights(data: Any) -> tuple[WeightsFile, ...]:
    """Validate the ``weights`` list of a token-file header (``ValueError`` with a short reason)."""
    if data is None:
        return ()
    if not isinstance(data, list) or len(data) > 64:
        raise ValueError("weights must be a list of at most 64 records")
    out = []
    for item in data:
        if not isinstance(item, dict) or set(item) != {"option", "index", "path", "sha256", "kind", "size"}:
            raise ValueError("a weights record needs exactly option, index, path, sha256, kind, size")
        option, index, path, sha, kind, size = (
            item[k] for k in ("option", "index", "path", "sha256", "kind", "size")
        )
        if option not in PATH_OPTIONS:
            raise ValueError(f"weights record for unknown option {str(option)[:40]!r}")
        if index is not None and not (
            isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 16
        ):
            raise ValueError("weights record index must be null or 0-15")
        if not isinstance(path, str) or not 0 < len(path) <= 4096 or "\0" in path or not os.path.isabs(path):
            raise ValueError("weights record path must be an absolute path")
        if not isinstance(sha, str) or not SHA256.match(sha):
            raise ValueError("weights record sha256 must be 64 lowercase hex digits")
        if kind not in ("file", "folder"):
            raise ValueError("weights record kind must be 'file' or 'folder'")
        if not (isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 2**62):
            raise ValueError("weights record size must be a non-negative integer")
        out.append(WeightsFile(option, index, path, sha, kind, size))
    return tuple(out)


def ref_to_dict(ref: TokenizerRef) -> dict[str, Any]:
    """A ``TokenizerRef`` as JSON for files slmtok writes (token files, corpus shards, LM manifests):
    ``name``, ``hash``, ``options`` without ``trust``, and the ``weights`` records."""
    return {
        "name": ref.name,
        "hash": ref.hash,
        "options": recorded_options(ref.options),
        "weights": [w.to_dict() for w in ref.weights],
    }


def ref_from_dict(data: Any) -> TokenizerRef:
    """The ``TokenizerRef`` of a ``ref_to_dict`` record read back from a file (``ValueError`` if it is not
    one). Nothing in it is trusted: ``load_for`` filters its options and finds its weights by sha256."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        raise ValueError("a tokenizer record needs a name")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError("tokenizer options must be an object")
    return TokenizerRef(
        data["name"], str(data.get("hash") or ""), dict(options), parse_weights(data.get("weights"))
    )


# ------------------------------------------------------------------------------------------ decode side
def safe_options(options: dict[str, Any]) -> dict[str, Any]:
    """The allow-listed options of a ref (``FILE_OPTIONS``, ``card`` when it names a hub card, ``vocoder``
    when ``FILE_VOCODERS`` names it); ``TokenFileError`` for an allow-listed option of the wrong type or range; others are dropped."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        check = FILE_OPTIONS.get(key)
        if check is not None:
            if not check(value):
                raise TokenFileError(f"these tokens set {key}={_short(value)}, which is not a valid {key}")
            out[key] = value
    card = options.get("card")
    if isinstance(card, str) and _is_card_name(card):
        out["card"] = card
    if options.get("vocoder") in FILE_VOCODERS:
        out["vocoder"] = options["vocoder"]
    return out


def _is_card_name(text: str) -> bool:
    if not text or os.sep in text or "/" in text or text.endswith(".toml") or len(text) > 200:
        return False
    from slmtok import hub

    return bool(hub.has_card(text))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_weights(ref: TokenizerRef, given: Iterable[str | os.PathLike] = ()) -> dict[str, Any]:
    """Path options for ``slmtok.load`` that rebuild ``ref``'s weights.

    Each record is met by a ``given`` path with the same sha256, else by the recorded path if its sha256
    still matches. A ref without records (token-file format 1) whose options name a local path gets the
    ``given`` paths for that option; its recorded path is never opened (nothing vouches for it).
    """
    given = [Path(os.fspath(p)) for p in given]
    have: list[tuple[Path, tuple[str, str]]] = []
    for path in given:
        found = digest(path)
        if found is None:
            raise WeightsNotFoundError(f"no such weights file or folder: {path}")
        have.append((path.resolve(), found[:2]))
    if not ref.weights:
        return _unrecorded(ref, [p for p, _ in have])
    recorded = {(r.kind, r.sha256) for r in ref.weights}
    for path, found in have:
        if found not in recorded:
            wanted = ", ".join(f"{r.option} {r.sha256[:12]}" for r in ref.weights)
            raise WeightsNotFoundError(
                f"{path} (sha256 {found[1][:12]}) is none of the weights that made these tokens ({wanted})"
            )
    chosen: dict[tuple[str, int | None], Path] = {}
    for record in ref.weights:
        match = next(
            (i for i, (_, (kind, sha)) in enumerate(have) if (kind, sha) == (record.kind, record.sha256)),
            None,
        )
        if match is not None:
            chosen[(record.option, record.index)] = have[match][0]
            continue
        found = digest(record.path, size=record.size)
        if found is not None and found[:2] == (record.kind, record.sha256):
            chosen[(record.option, record.index)] = Path(record.path)
            continue
        state = "is not there" if found is None else "has changed (sha256 differs)"
        raise WeightsNotFoundError(
            f"the {record.option} {record.kind} that made these tokens ({record.path}) {state}; pass "
            f"--checkpoint PATH (slmtok.load_for(..., checkpoint=PATH)) pointing at a copy with sha256 "
            f"{record.sha256[:16]}..."
        )
    return _assemble(chosen)


def _assemble(chosen: dict[tuple[str, int | None], Path]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for option in PATH_OPTIONS:
        keys = [k for k in chosen if k[0] == option]
        if not keys:
            continue
        if keys == [(option, None)]:
            options[option] = str(chosen[keys[0]])
            continue
        indices = sorted(k[1] for k in keys if k[1] is not None)
        if len(indices) != len(keys) or indices != list(range(len(indices))):
            raise TokenFileError(f"the {option} records of these tokens are not a list of paths")
        options[option] = [str(chosen[(option, i)]) for i in indices]
    return options


def _unrecorded(ref: TokenizerRef, given: list[Path]) -> dict[str, Any]:
    named = [
        k
        for k in PATH_OPTIONS
        if k in ref.options
        and not (k == "card" and isinstance(ref.options[k], str) and _is_card_name(ref.options[k]))
        and not (k == "vocoder" and ref.options[k] in ("none", *FILE_VOCODERS))
    ]
    if not given:
        if named:
            option = named[0]
            raise WeightsNotFoundError(
                f"these tokens name {option} {_short(ref.options[option])} but record no sha256 for it "
                f"(token-file format 1); pass --checkpoint PATH (slmtok.load_for(..., checkpoint=PATH)) to use it"
            )
        return {}
    if len(named) > 1:
        raise WeightsNotFoundError(
            f"these tokens name several weights ({', '.join(named)}) without sha256; load the tokenizer "
            "yourself with slmtok.load(...)"
        )
    option = named[0] if named else "checkpoint"
    paths = [str(p) for p in given]
    return {option: paths[0] if len(paths) == 1 else paths}


def load_for(
    tokens: Tokens | TokenizerRef,
    *,
    device: str | Any = "cpu",
    trust: bool = False,
    checkpoint: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    **options: Any,
):
    """Build the tokenizer that decodes ``tokens`` (or a ``TokenizerRef``), trusting nothing in them.

    Args:
        device: torch device for the tokenizer.
        trust: passed to the tokenizer as ``trust=True`` (admit numpy values in unverified checkpoints);
            only ever from the caller.
        checkpoint: path(s) to the weights, matched by sha256 against the records in the tokens.
        **options: more load options from the caller (they win over the tokens' allow-listed ones).

    Raises:
        WeightsNotFoundError: the recorded weights are gone or changed and no given path matches.
        TokenizerMismatchError: the weights found do not hash to the tokens' card hash.
    """
    from slmtok.api import load

    ref = tokens.tokenizer if isinstance(tokens, Tokens) else tokens
    if checkpoint is None:
        given: list[Any] = []
    elif isinstance(checkpoint, (str, os.PathLike)):
        given = [checkpoint]
    else:
        given = list(checkpoint)
    kwargs = {**safe_options(ref.options), **resolve_weights(ref, given), **options}
    if trust:
        kwargs["trust"] = True
    try:
        tok = load(ref.name, device=device, **kwargs)
    except (TypeError, ValueError) as error:
        if isinstance(error, SlmtokError):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SlmtokError(f"cannot load {ref.name!r} for these tokens: {message}") from None
    if ref.hash and tok.card.hash and ref.hash != tok.card.hash:
        raise TokenizerMismatchError(
            f"these tokens were made by {ref.name!r} with weights {ref.hash[:12]}, but the weights found "
            f"hash to {tok.card.hash[:12]}; pass --checkpoint with the weights that made them"
        )
    return tok
