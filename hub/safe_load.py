"""Load torch checkpoints without executing untrusted pickles.

``torch.load(..., weights_only=True)`` first: it accepts tensors, containers and plain Python values and
refuses anything else. A checkpoint that needs more (a pickled class, a numpy scalar) is loaded in full
only if it is a cached hub file whose sha256 matched its card, or if the caller says ``trust=True``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from slmtok.hub.errors import UntrustedCheckpointError


def load_torch_checkpoint(path: str | os.PathLike, *, trust: bool = False) -> Any:
    """Load a ``torch.save`` file onto the CPU.

    Args:
        path: the checkpoint file.
        trust: allow full unpickling (arbitrary code) if ``weights_only`` refuses the file.

    Raises:
        UntrustedCheckpointError: the file needs full unpickling, is not sha256-verified by its card and
            ``trust`` is false.
        FileNotFoundError: no such file.
    """
    import torch

    from slmtok.hub.download import is_sha256_verified

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = next((line.strip() for line in str(error).splitlines() if "Unsupported" in line), "")
        if not (trust or is_sha256_verified(path)):
            raise UntrustedCheckpointError(
                f"{path} holds more than weights ({reason or 'weights_only=True refused it'}); "
                "load it only if you trust its source: pass trust=True, or fetch it through a card with a sha256"
            ) from None
    return torch.load(path, map_location="cpu", weights_only=False)
