"""Where LM data comes from: audio encoded now by a tokenizer, or existing ``.slmtok`` token files.

Each source returns ``(names, utterances, info)``: the utterance names up front (they fix the
train/validation split), a lazy iterator of ``slmtok.lm.data.Utterance``, and ``info`` with the
tokenizer (name, card hash, load options, card), codebook sizes and frame rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from slmtok.errors import CodesError, SlmtokError


def audio_source(
    inputs: list[str],
    tokenizer: str,
    options: dict[str, Any],
    n_codebooks: int | None,
    batch_size: int,
    device: str,
) -> tuple[list[str], Iterator, dict[str, Any]]:
    """Audio files, folders or manifests, encoded in batches by the ``slmtok encode`` code path."""
    import slmtok
    from slmtok.encoding import check_readable as _check_readable
    from slmtok.encoding import encode_items as _encode_files
    from slmtok.inputs import collect
    from slmtok.lm.data import Utterance
    from slmtok.provenance import ref_to_dict

    items = collect(inputs)
    _check_readable(items)
    tok = slmtok.load(tokenizer, device=device, **options)
    k = n_codebooks or tok.card.n_codebooks
    if not 1 <= k <= len(tok.max_codebook_sizes):
        raise CodesError(f"{tok.card.name!r} has {len(tok.max_codebook_sizes)} codebooks; {k} asked for")
    ref = tok.ref  # options without trust, and the weights files by resolved path and sha256
    info = {
        "tokenizer": {**ref_to_dict(ref), "card": tok.card.to_dict()},
        "codebook_sizes": tuple(tok.max_codebook_sizes[:k]),
        "frame_rate": tok.card.frame_rate,
    }

    def utterances() -> Iterator[Utterance]:
        for item, tokens in _encode_files(tok, items, n_codebooks, batch_size):
            n = int(tokens.lengths[0])
            durations = tokens.extras["durations"][0, 0, :n] if "durations" in tokens.extras else None
            yield Utterance(str(item.name), tokens.item(0), tokens.input.durations[0], durations)

    return [str(item.name) for item in items], utterances(), info


def token_source(paths: list[str]) -> tuple[list[str], Iterator, dict[str, Any]]:
    """``.slmtok`` files (or folders of them), all from one tokenizer with one codebook count; a file
    holding a batch gives one utterance per item (``name#i``)."""
    from slmtok.inputs import collect
    from slmtok.lm.data import Utterance
    from slmtok.provenance import ref_from_dict
    from slmtok.tokenfile import SUFFIX, load_tokens, read_header

    items = collect(paths, extensions=(SUFFIX,))
    headers = [read_header(item.path) for item in items]
    first = headers[0]
    key = (first["tokenizer"]["name"], first["tokenizer"].get("hash"), first["n_codebooks"])
    for item, header in zip(items, headers, strict=True):
        other = (header["tokenizer"]["name"], header["tokenizer"].get("hash"), header["n_codebooks"])
        if other != key:
            raise SlmtokError(
                f"{item.path} holds tokens of {other[0]} ({other[2]} codebooks, weights {str(other[1])[:12]}), "
                f"the others of {key[0]} ({key[2]} codebooks, weights {str(key[1])[:12]}): one tokenizer per data set"
            )
    k = int(key[2])
    sizes = list(first.get("codebook_sizes") or [])
    if len(sizes) < k:  # encoded with more codebooks than the card's default: ask the tokenizer
        import slmtok

        sizes = list(slmtok.load_for(ref_from_dict(first["tokenizer"])).max_codebook_sizes)
    if len(sizes) < k:
        raise CodesError(f"{items[0].path}: {k} codebooks but only {len(sizes)} codebook sizes are known")
    names = []
    for item, header in zip(items, headers, strict=True):
        count = len(header["lengths"])
        names += [str(item.name)] if count == 1 else [f"{item.name}#{i}" for i in range(count)]
    info = {
        "tokenizer": {**first["tokenizer"], "card": first.get("card")},
        "codebook_sizes": tuple(sizes[:k]),
        "frame_rate": float(first["frame_rate"]),
    }

    def utterances() -> Iterator[Utterance]:
        for item, header in zip(items, headers, strict=True):
            tokens = load_tokens(item.path)
            single = tokens.batch_size == 1
            seconds = (header.get("input") or {}).get("durations")
            for i in range(tokens.batch_size):
                n = int(tokens.lengths[i])
                durations = tokens.extras["durations"][i, 0, :n] if "durations" in tokens.extras else None
                frames = int(durations.sum()) if durations is not None else n
                yield Utterance(
                    str(item.name) if single else f"{item.name}#{i}",
                    tokens.item(i),
                    float(seconds[i]) if seconds else frames / tokens.frame_rate,
                    durations,
                )

    return names, utterances(), info
