"""Exceptions raised by slmtok. Every message is one line a user can act on."""

from __future__ import annotations


class SlmtokError(Exception):
    """Base class of every error slmtok raises on purpose (bad input, bad files, bad names)."""


class AudioError(SlmtokError, ValueError):
    """Audio that cannot be tokenized: empty, NaN/Inf samples, unreadable file, bad shape or rate."""


class TokenFileError(SlmtokError, ValueError):
    """A ``.slmtok`` file that is missing, corrupt, or written by a newer format version."""


class TokenizerMismatchError(SlmtokError, ValueError):
    """Tokens handed to a tokenizer (or weights) other than the one that made them."""


class CodesError(SlmtokError, ValueError):
    """Codes that a tokenizer cannot decode: out of range, wrong shape or too many codebooks."""


class RegistryError(SlmtokError, KeyError):
    """Unknown name, or a name registered twice."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it plain
        return str(self.args[0]) if self.args else ""


class OutputError(SlmtokError, OSError):
    """An output that cannot be written (missing or read-only folder)."""


class DecodeLimitError(CodesError):
    """Tokens that would decode to more audio per item than the limit (``max_seconds``, default 4 h)."""


class UnitTextError(CodesError):
    """Unit strings (``<|s_12|>``, ``<|c1_7|>``) that do not read back as codes: unknown text, a
    codebook out of order or out of range, a code past its codebook's size."""


class SlmtokWarning(UserWarning):
    """Something slmtok assumed on the caller's behalf that may not be what they meant (category for
    ``warnings.filterwarnings``)."""
