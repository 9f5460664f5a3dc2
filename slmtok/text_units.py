"""Speech tokens as text units, for adding them to a text LLM's vocabulary (SpeechGPT / SpiritLM style).

Layout (exact, one string per item, no separators):

- ``"single"``: one codebook (``K = 1``), one unit per frame: ``<|s_{code}|>``, e.g.
  ``<|s_123|><|s_123|><|s_7|>``. The vocabulary is ``<|s_0|>`` ... ``<|s_{N-1}|>`` for a codebook of
  size ``N``.
- ``"codebooks"``: ``K`` codebooks, interleaved frame by frame, codebook index first:
  ``<|c0_{code}|><|c1_{code}|>...<|c{K-1}_{code}|>`` for frame 0, then frame 1, ... The vocabulary is
  ``<|c{k}_{i}|>`` for every codebook ``k`` and code ``0 <= i < size_k``, codebook by codebook.
- ``"auto"`` (default): ``"single"`` for ``K = 1``, ``"codebooks"`` otherwise.

Codes are written in decimal without leading zeros; padding (``-1``) past an item's length is never
written. ``from_text`` reads exactly this form back (whitespace between units is allowed and ignored) and
refuses anything else with a one-line ``UnitTextError``: unknown text, a codebook out of order, a frame cut
short, a code past its codebook's size. ``from_text(to_text(tokens))`` gives back the same codes and
lengths.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from slmtok.errors import UnitTextError
from slmtok.types import PAD_CODE, TokenizerCard, TokenizerRef, Tokens

LAYOUTS = ("auto", "single", "codebooks")
#: one unit: ``<|s_12|>`` or ``<|c3_12|>`` (decimal, no leading zeros), optionally surrounded by whitespace
UNIT = re.compile(r"\s*<\|(?:s|c(0|[1-9][0-9]{0,3}))_(0|[1-9][0-9]{0,9})\|>\s*")


def unit(code: int, codebook: int | None = None) -> str:
    """The text of one unit: ``<|s_{code}|>`` (``codebook=None``) or ``<|c{codebook}_{code}|>``."""
    return f"<|s_{code}|>" if codebook is None else f"<|c{codebook}_{code}|>"


def _layout(layout: str, k: int) -> str:
    if layout not in LAYOUTS:
        raise UnitTextError(f"unknown unit layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        return "single" if k == 1 else "codebooks"
    if layout == "single" and k != 1:
        raise UnitTextError(
            f"the 'single' layout holds one codebook; these tokens have {k} (use 'codebooks')"
        )
    return layout


def to_text(tokens: Tokens, *, layout: str = "auto") -> list[str]:
    """One unit string per item of ``tokens`` (codes ``[B, K, T]``, each item to its length).

    Args:
        layout: ``"auto"``, ``"single"`` (``K = 1`` only) or ``"codebooks"`` (see the module docstring).

    Returns:
        ``B`` strings, e.g. ``"<|c0_12|><|c1_7|><|c0_3|><|c1_40|>"`` for ``K = 2`` and two frames.
    """
    layout = _layout(layout, tokens.n_codebooks)
    out = []
    for b in range(tokens.batch_size):
        codes = tokens.item(b).cpu()  # [K, T_b]
        if bool((codes < 0).any()):
            raise UnitTextError(f"item {b} has negative codes within its length; they have no unit text")
        if layout == "single":
            out.append("".join(f"<|s_{c}|>" for c in codes[0].tolist()))
        else:
            frames = codes.T.tolist()  # [T_b, K]
            out.append("".join(f"<|c{q}_{c}|>" for frame in frames for q, c in enumerate(frame)))
    return out


def _identity(tokenizer: Any) -> tuple[TokenizerRef, float, tuple[int, ...]]:
    """Ref, frame rate and every codebook's size of a tokenizer (loaded) or a card."""
    if isinstance(tokenizer, TokenizerCard):
        return TokenizerRef(tokenizer.name, tokenizer.hash), tokenizer.frame_rate, tokenizer.codebook_sizes
    card = getattr(tokenizer, "card", None)
    if not isinstance(card, TokenizerCard):
        raise UnitTextError(f"expected a tokenizer or a TokenizerCard, got {type(tokenizer).__name__}")
    return tokenizer.ref, card.frame_rate, tuple(tokenizer.max_codebook_sizes)


def from_text(strings: list[str] | str, tokenizer: Any) -> Tokens:
    """Unit strings (``to_text``'s layout) back to ``Tokens`` of ``tokenizer``.

    Args:
        strings: one string per item (a single string is one item).
        tokenizer: the tokenizer (``slmtok.load(...)``) or its ``TokenizerCard``: it names the tokens and
            bounds each codebook's codes.

    Returns:
        ``Tokens`` with codes ``[B, K, T]`` (``K`` from the text: 1 for ``<|s_*|>`` units, else the
        number of codebooks per frame), padded with ``-1``, and ``lengths`` in frames.

    Raises ``UnitTextError`` (one line, naming item and character offset) for anything else.
    """
    if isinstance(strings, str):
        strings = [strings]
    if not strings:
        raise UnitTextError("no unit strings: at least one item is needed")
    ref, frame_rate, sizes = _identity(tokenizer)
    items = [_parse(i, s) for i, s in enumerate(strings)]
    kinds = {kind for kind, _ in items if kind is not None}
    if len(kinds) > 1:
        raise UnitTextError("items mix <|s_*|> and <|c*_*|> units; use one layout for every item")
    kind = kinds.pop() if kinds else "single"
    if kind == "single":
        k = 1
    else:
        counts = {len(frames[0]) for _, frames in items if frames}
        if len(counts) > 1:
            raise UnitTextError(f"items have different numbers of codebooks per frame: {sorted(counts)}")
        k = counts.pop()
    if k > len(sizes):
        raise UnitTextError(f"units name {k} codebooks; {ref.name!r} has {len(sizes)}")
    width = max(len(frames) for _, frames in items)
    codes = torch.full((len(items), k, width), PAD_CODE, dtype=torch.long)
    for b, (_, frames) in enumerate(items):
        if frames:
            codes[b, :, : len(frames)] = torch.tensor(frames, dtype=torch.long).T
        for q in range(k):
            row = codes[b, q, : len(frames)]
            if row.numel() and int(row.max()) >= sizes[q]:
                t = int((row >= sizes[q]).nonzero()[0])
                raise UnitTextError(
                    f"item {b}, frame {t}: code {int(row[t])} is out of range for codebook {q} "
                    f"of {ref.name!r} (size {sizes[q]})"
                )
    lengths = torch.tensor([len(frames) for _, frames in items], dtype=torch.long)
    return Tokens(codes, lengths, frame_rate, ref)


def _parse(index: int, text: str) -> tuple[str | None, list[list[int]]]:
    """One item's text -> (``"single"``/``"codebooks"``/``None`` when empty, frames ``[T][K]``)."""
    if not isinstance(text, str):
        raise UnitTextError(f"item {index} is {type(text).__name__}, not a string")
    frames: list[list[int]] = []
    kind = None
    pos = 0
    while pos < len(text):
        match = UNIT.match(text, pos)
        if match is None:
            if not text[pos:].strip():
                break
            snippet = text[pos : pos + 24].strip()
            raise UnitTextError(f"item {index}, character {pos}: not a unit: {snippet!r}")
        codebook, code = match.group(1), int(match.group(2))
        this = "single" if codebook is None else "codebooks"
        if kind is not None and this != kind:
            raise UnitTextError(f"item {index}, character {pos}: <|s_*|> and <|c*_*|> units mixed")
        kind = this
        if this == "single":
            frames.append([code])
        else:
            q = int(codebook)
            if q == 0:
                if frames and len(frames) > 1 and len(frames[-1]) != len(frames[0]):
                    raise _short(index, pos, len(frames) - 1, len(frames[-1]), len(frames[0]))
                frames.append([code])
            elif not frames or q != len(frames[-1]):
                want = 0 if not frames else len(frames[-1])
                raise UnitTextError(
                    f"item {index}, character {pos}: codebook {q} where codebook {want} was expected "
                    "(units go <|c0_*|><|c1_*|>... frame by frame)"
                )
            else:
                frames[-1].append(code)
        pos = match.end()
    if len(frames) > 1 and len(frames[-1]) != len(frames[0]):
        raise _short(index, len(text), len(frames) - 1, len(frames[-1]), len(frames[0]))
    return kind, frames


def _short(index: int, pos: int, frame: int, have: int, want: int) -> UnitTextError:
    return UnitTextError(
        f"item {index}, character {pos}: frame {frame} has {have} codebook{'s' if have != 1 else ''}, "
        f"the first frame {want}"
    )


def export_vocab(tokenizer: Any, *, n_codebooks: int | None = None, layout: str = "auto") -> list[str]:
    """Every unit string ``to_text`` can write for ``tokenizer`` (or its ``TokenizerCard``) with
    ``n_codebooks`` codebooks (default: the card's), in order: codebook 0's codes ``0..N_0-1``, then
    codebook 1's, ... Add these to an LLM tokenizer's vocabulary to train on ``to_text`` output."""
    _, _, sizes = _identity(tokenizer)
    default = tokenizer.n_codebooks if isinstance(tokenizer, TokenizerCard) else tokenizer.card.n_codebooks
    k = default if n_codebooks is None else n_codebooks
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(sizes):
        raise UnitTextError(f"n_codebooks must be 1 to {len(sizes)}, got {k!r}")
    if _layout(layout, k) == "single":
        return [f"<|s_{i}|>" for i in range(sizes[0])]
    return [f"<|c{q}_{i}|>" for q in range(k) for i in range(sizes[q])]
