"""Published checkpoints: model cards, the download cache with checksums, and safe checkpoint loading.

>>> from slmtok import hub
>>> hub.list_cards("dac-*")
['dac-16khz', 'dac-24khz', 'dac-44khz']
>>> card = hub.get_card("dac-44khz")          # frozen ModelCard read from hub/cards/codec/dac-44khz.toml
>>> path = hub.fetch("dac-44khz")             # $SLMTOK_HOME/hub/dac-44khz/weights.pth, verified

Names are imported lazily: ``import slmtok.hub`` stays cheap.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

_LAZY = {
    "ModelCard": "slmtok.hub.cards",
    "CardFile": "slmtok.hub.cards",
    "get_card": "slmtok.hub.cards",
    "list_cards": "slmtok.hub.cards",
    "load_card": "slmtok.hub.cards",
    "has_card": "slmtok.hub.cards",
    "fetch": "slmtok.hub.download",
    "fetch_info": "slmtok.hub.download",
    "cache_path": "slmtok.hub.download",
    "sha256_file": "slmtok.hub.download",
    "is_offline": "slmtok.hub.download",
    "is_sha256_verified": "slmtok.hub.download",
    "forget": "slmtok.hub.download",
    "RecordedChecksumWarning": "slmtok.hub.download",
    "load_torch_checkpoint": "slmtok.hub.safe_load",
    "HubError": "slmtok.hub.errors",
    "CardError": "slmtok.hub.errors",
    "ChecksumError": "slmtok.hub.errors",
    "DownloadError": "slmtok.hub.errors",
    "OfflineError": "slmtok.hub.errors",
    "CacheError": "slmtok.hub.errors",
    "CheckpointError": "slmtok.hub.errors",
    "UntrustedCheckpointError": "slmtok.hub.errors",
}

__all__ = sorted([*_LAZY, "slmtok_home"])


def slmtok_home() -> Path:
    """Root of slmtok's cache: ``$SLMTOK_HOME``, else ``$XDG_CACHE_HOME/slmtok``, else ``~/.cache/slmtok``."""
    if os.environ.get("SLMTOK_HOME"):
        return Path(os.environ["SLMTOK_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "slmtok"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slmtok.hub' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
