"""slmtok: speech tokenizers and codecs behind one ``encode``/``decode`` interface.

>>> import slmtok
>>> tok = slmtok.load("mel-rvq")
>>> tokens = tok.encode(wav, sample_rate=16000)      # codes [B, K, T], padded with -1
>>> audio = tok.decode(tokens)                       # audio.wav [B, C, T] at tok.card.sample_rate

Attributes are imported lazily so that ``import slmtok`` (and ``slmtok --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load": "slmtok.api",
    "load_for": "slmtok.api",
    "list_tokenizers": "slmtok.api",
    "register_tokenizer": "slmtok.api",
    "tokenizer_entry": "slmtok.api",
    "save_tokens": "slmtok.tokenfile",
    "load_tokens": "slmtok.tokenfile",
    "read_audio": "slmtok.audio",
    "write_audio": "slmtok.audio",
    "Tokenizer": "slmtok.tokenizer",
    "Tokens": "slmtok.types",
    "Audio": "slmtok.types",
    "TokenizerCard": "slmtok.types",
    "TokenizerRef": "slmtok.types",
    "InputInfo": "slmtok.types",
    "SlmtokError": "slmtok.errors",
    "AudioError": "slmtok.errors",
    "TokenFileError": "slmtok.errors",
    "TokenizerMismatchError": "slmtok.errors",
    "CodesError": "slmtok.errors",
    "RegistryError": "slmtok.errors",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from slmtok.api import list_tokenizers, load, register_tokenizer, tokenizer_entry  # noqa: F401
    from slmtok.audio import read_audio, write_audio  # noqa: F401
    from slmtok.errors import (  # noqa: F401
        AudioError,
        CodesError,
        RegistryError,
        SlmtokError,
        TokenFileError,
        TokenizerMismatchError,
    )
    from slmtok.tokenfile import load_tokens, save_tokens  # noqa: F401
    from slmtok.tokenizer import Tokenizer  # noqa: F401
    from slmtok.types import Audio, InputInfo, TokenizerCard, TokenizerRef, Tokens  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slmtok' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API, each name once (not the helpers this module imports, nor loaded submodules)."""
    return sorted({*__all__, "__version__"})
