"""Errors of the checkpoint hub. Every message is one line that names the card, the file and what to do."""

from __future__ import annotations

from slmtok.errors import SlmtokError


class HubError(SlmtokError):
    """Base class of the hub's errors."""


class CardError(HubError, ValueError):
    """A model card that is unknown, unreadable or malformed."""


class ChecksumError(HubError, ValueError):
    """A downloaded or cached file whose sha256 (or size) is not the one its card gives."""


class DownloadError(HubError, OSError):
    """A file that could not be downloaded."""


class CacheError(HubError, OSError):
    """A cache entry that is not a plain file (a symlink or hard link planted there), or an unreadable index."""


class OfflineError(DownloadError):
    """A file that is not in the cache while downloads are off (``SLMTOK_OFFLINE=1``) or the network is down."""


class CheckpointError(HubError, ValueError):
    """A file that is not a readable torch checkpoint (truncated, another format)."""


class UntrustedCheckpointError(HubError, ValueError):
    """A checkpoint naming code (always refused), or numpy values in a file neither sha256-verified nor trusted."""
