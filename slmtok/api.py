"""Top-level functions: ``load``, ``load_for``, ``list_tokenizers``, ``register_tokenizer``, ``tokenizer_entry``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slmtok.registry import TOKENIZERS, Entry


def load(name: str, *, device: str = "cpu", checkpoint: Any = None, **options: Any):
    """Build the tokenizer registered as ``name``.

    Args:
        name: a registered name (``slmtok.list_tokenizers()``), e.g. ``"mel-rvq"``.
        device: torch device the tokenizer runs on (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        checkpoint: a local file (or folder / pair of files) in the upstream's own format, instead of the
            published weights; passed to the tokenizer's factory.
        **options: tokenizer options, e.g. ``n_codebooks=4`` (default codebook count) or ``dedup=True``;
            ``bpe="BPE/"`` wraps the tokenizer in a BPE folder fit on its units (``slmtok.bpe``).

    Returns:
        A ``slmtok.Tokenizer``.
    """
    if options.get("bpe") is not None:  # BPE ids over the tokenizer's units (slmtok bpe fit)
        from slmtok.bpe.tokenizer import load_with_bpe

        return load_with_bpe(name, options.pop("bpe"), device=device, checkpoint=checkpoint, **options)
    entry = TOKENIZERS.get(name)
    kwargs = dict(options)
    if checkpoint is not None:
        kwargs["checkpoint"] = checkpoint
    return entry.create(device=device, **kwargs)


def load_for(
    tokens: Any, *, device: str = "cpu", trust: bool = False, checkpoint: Any = None, **options: Any
):
    """Build the tokenizer that decodes ``tokens`` (a ``Tokens`` or ``TokenizerRef``), trusting nothing
    in them: weights by the sha256 they record (``checkpoint=`` paths first, then the recorded paths),
    only harmless format options from them, and ``trust`` only from the caller. See
    ``slmtok.provenance.load_for``."""
    from slmtok.provenance import load_for as _load_for

    return _load_for(tokens, device=device, trust=trust, checkpoint=checkpoint, **options)


def list_tokenizers(pattern: str = "*") -> list[str]:
    """Registered tokenizer names matching a shell-style ``pattern``, sorted."""
    return TOKENIZERS.names(pattern)


def register_tokenizer(
    name: str, factory: Callable[..., Any] | str, *, exist_ok: bool = False, description: str = ""
) -> None:
    """Register a tokenizer factory (a callable taking ``device=`` and options, returning a ``Tokenizer``),
    or a ``"module:attribute"`` string imported on first use."""
    TOKENIZERS.register(name, factory, exist_ok=exist_ok, description=description)


def tokenizer_entry(name: str) -> Entry:
    """The registry entry of ``name`` (description, origin) without building the tokenizer."""
    return TOKENIZERS.get(name)
