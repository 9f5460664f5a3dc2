"""``slmtok bpe fit``: unit streams from token files, a corpus run or audio -> a BPE folder.

Inputs (one kind per call):

- ``.slmtok`` token files, or folders of them;
- a finished corpus-encoding run (a folder with ``index.jsonl`` + shards, ``slmtok encode-corpus``);
- audio files, folders or manifests (anything ``slmtok encode`` takes), encoded now with the tokenizer.

Token inputs must come from the tokenizer named (same card hash) and hold frame-level units (not
deduplicated: the BPE's ``dedup`` flag deduplicates, so that the tokenizer it wraps is the plain one).
The streams are held in memory (int64, 8 bytes a frame: 1 h at 50 Hz is 1.4 MB).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmtok.bpe.model import (
    SCHEMA,
    VERSION,
    BpeError,
    deduplicate_units,
    fit_bpe,
    make_model,
    read_card,
    save_bpe,
    stream_fingerprint,
)
from slmtok.bpe.tokenizer import card_name, check_base


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` wrote and measured on its training streams.

    Attributes:
        folder: the BPE folder.
        name: the BPE tokenizer's name (``NAME+bpeV``).
        card: the ``bpe_card.json`` written.
    """

    folder: Path
    name: str
    card: dict[str, Any]


def _kind(paths: list[str]) -> str:
    kinds = set()
    for text in paths:
        path = Path(text)
        if path.is_dir() and (path / "index.jsonl").is_file():
            kinds.add("corpus")
        elif path.suffix == ".slmtok" or (path.is_dir() and next(path.rglob("*.slmtok"), None) is not None):
            kinds.add("tokens")
        else:
            kinds.add("audio")
    if len(kinds) > 1:
        raise BpeError(
            f"give one kind of input per call (token files, a corpus run or audio), got {sorted(kinds)}"
        )
    return kinds.pop()


def _token_streams(paths: list[str]) -> Iterator[Any]:
    from slmtok.inputs import collect
    from slmtok.tokenfile import SUFFIX, load_tokens

    for item in collect(paths, extensions=(SUFFIX,)):
        tokens = load_tokens(item.path)
        for i in range(tokens.batch_size):
            yield str(item.path), tokens.select([i])


def _corpus_streams(paths: list[str]) -> Iterator[Any]:
    from slmtok.corpus.index import iter_items

    for path in paths:
        for row, tokens in iter_items(path):
            yield f"{path}:{row['id']}", tokens


def _check_tokens(where: str, tokens: Any, tok: Any) -> None:
    ref = tokens.tokenizer
    if "durations" in tokens.extras:
        raise BpeError(
            f"{where}: these tokens are deduplicated; fit on frame-level tokens (encode without dedup) and pass "
            "--dedup, so that the BPE wraps the plain tokenizer"
        )
    if ref.name != tok.card.name or (ref.hash and ref.hash != tok.card.hash):
        raise BpeError(
            f"{where}: tokens of {ref.name!r} (weights {ref.hash[:12]}), not of -t {tok.card.name} "
            f"(weights {tok.card.hash[:12]})"
        )


def collect_streams(
    inputs: list[str], tok: Any, *, batch_size: int = 8
) -> tuple[list[np.ndarray], float | None, str]:
    """Codebook-0 unit streams ``[T_i]`` of ``inputs`` by tokenizer ``tok``, their total audio seconds
    (``None`` when a token file does not record them) and the input kind."""
    kind = _kind(inputs)
    streams: list[np.ndarray] = []
    seconds: float | None = 0.0
    if kind == "audio":
        from slmtok.encoding import check_readable, encode_items
        from slmtok.inputs import collect

        items = collect(inputs)
        check_readable(items)
        pairs: Iterator[Any] = ((item.label, t) for item, t in encode_items(tok, items, 1, batch_size))
    else:
        pairs = _token_streams(inputs) if kind == "tokens" else _corpus_streams(inputs)
    for where, tokens in pairs:
        _check_tokens(where, tokens, tok)
        streams.append(tokens.item(0)[0].numpy().astype(np.int64))
        info = tokens.input
        if seconds is not None and info is not None and info.lengths:
            seconds += info.durations[0]
        else:
            seconds = None
    if not streams:
        raise BpeError(f"no token streams found in {', '.join(inputs)}")
    return streams, seconds, kind


def fit(
    inputs: list[str],
    tokenizer: str,
    output: str | os.PathLike,
    *,
    vocab_size: int = 4096,
    dedup: bool = False,
    codebook: int | None = None,
    min_frequency: int = 2,
    options: dict[str, Any] | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    force: bool = False,
) -> FitResult:
    """Fit a BPE over the codebook-0 units of ``inputs`` by ``tokenizer`` and write it to ``output``.

    Args:
        inputs: token files / folders, a corpus run folder, or audio (see the module docstring).
        tokenizer: the registered name of the base tokenizer (loaded with ``options``).
        vocab_size: target BPE vocabulary: the base's ``K`` units + merges.
        dedup: collapse runs of a unit before BPE (for semantic units); decoding restores them.
        codebook: ``0`` to allow codebook 0 of a multi-codebook acoustic tokenizer.
        min_frequency: a pair is merged only if seen at least this often.
        force: replace a BPE model already in ``output``.

    Returns:
        ``FitResult`` whose card records the base (name, hash), codebook, dedup flag, vocabulary, the
        training-data fingerprint and the compression measured on the training streams.
    """
    import slmtok

    out = Path(output)
    if not force and ((out / "bpe.json").exists() or (out / "bpe_card.json").exists()):
        raise BpeError(f"{out} already holds a BPE model; pass --force to replace it")
    options = dict(options or {})
    if options.get("dedup"):
        raise BpeError("load the base tokenizer without dedup; pass --dedup to deduplicate before BPE")
    tok = slmtok.load(tokenizer, device=device, **options)
    used = check_base(tok, codebook)
    n_units = int(tok.max_codebook_sizes[used])
    frames, seconds, kind = collect_streams(inputs, tok, batch_size=batch_size)
    units = [deduplicate_units(s)[0] for s in frames] if dedup else frames
    hf = fit_bpe(units, n_units, vocab_size, min_frequency=min_frequency)
    card: dict[str, Any] = {
        "schema": SCHEMA,
        "version": VERSION,
        "base": {"name": tok.card.name, "hash": tok.card.hash, "kind": tok.card.kind},
        "codebook": used,
        "dedup": bool(dedup),
        "n_units": n_units,
        "vocab_size": int(hf.get_vocab_size()),
        "requested_vocab_size": int(vocab_size),
        "min_frequency": int(min_frequency),
        "training": {},
        "slmtok": slmtok.__version__,
    }
    model = make_model(hf, card)
    ids = model.encode_batch(units)
    n_frames = int(sum(s.size for s in frames))
    n_ids = int(sum(i.size for i in ids))
    card["training"] = {
        "input": kind,
        "utterances": len(frames),
        "fingerprint": stream_fingerprint(frames),
        "frames": n_frames,
        "units_after_dedup": int(sum(u.size for u in units)) if dedup else None,
        "bpe_tokens": n_ids,
        "frames_per_bpe_token": n_frames / max(n_ids, 1),
        "seconds": seconds,
        "frame_rate": tok.card.frame_rate,
        "bpe_tokens_per_second": n_ids / seconds if seconds else None,
    }
    model = make_model(hf, card)
    save_bpe(out, model, force=force)
    return FitResult(out, card_name(tok.card.name, model.vocab_size), read_card(out))
