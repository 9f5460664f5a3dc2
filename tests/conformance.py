"""How the conformance suite builds each registered tokenizer.

Every registered tokenizer must appear here (``test_every_tokenizer_is_covered``). Tokenizers whose
published weights cannot be downloaded in CI register a factory that writes a stand-in checkpoint in
the upstream's own format and returns the load options pointing at it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

#: name -> function(tmp_dir) -> options for ``slmtok.load``
LOAD_OPTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "mel-rvq": lambda tmp: {},
    "mfcc-km": lambda tmp: {},
    "mulaw-8bit": lambda tmp: {},
}

#: extra variants worth running the whole suite on
VARIANTS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "mfcc-km[dedup]": lambda tmp: {"dedup": True},
    "mel-rvq[k=3]": lambda tmp: {"n_codebooks": 3},
}
