"""Published checkpoints: cards, the download cache and checkpoint converters."""

from __future__ import annotations

import os
from pathlib import Path


def slmtok_home() -> Path:
    """Root of slmtok's cache: ``$SLMTOK_HOME``, else ``$XDG_CACHE_HOME/slmtok``, else ``~/.cache/slmtok``."""
    if os.environ.get("SLMTOK_HOME"):
        return Path(os.environ["SLMTOK_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "slmtok"
