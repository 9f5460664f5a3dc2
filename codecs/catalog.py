"""Built-in acoustic codecs of ``slmtok.codecs`` (names -> lazy import paths)."""

from __future__ import annotations


def register_builtins() -> None:
    """No codec is registered yet."""
