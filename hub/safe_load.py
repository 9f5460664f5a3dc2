"""Load torch checkpoints without executing them.

``torch.load(..., weights_only=True)`` first: it accepts tensors, containers and plain Python values and
refuses anything else. A checkpoint that also holds numpy values (scalars, arrays, dtypes; DAC's
metadata can) is read with torch's restricted unpickler admitting exactly those numpy reconstructors,
and only for a cached hub file whose sha256 matched its card, or when the caller says ``trust=True``.
Any other global (a class, a function) is refused in every case: no checkpoint's code is ever run.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from slmtok.hub.errors import UntrustedCheckpointError


def numpy_globals() -> dict[tuple[str, str], Any]:
    """The numpy callables that rebuild arrays, scalars and dtypes in a pickle, by (module, name) as
    pickles name them under numpy 1 and 2. They build data only; nothing else is admitted."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for name in dir(getattr(np, "dtypes", object())):
        if name.endswith("DType"):
            allowed[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return allowed


def load_torch_checkpoint(path: str | os.PathLike, *, trust: bool = False) -> Any:
    """Load a ``torch.save`` file onto the CPU with torch's restricted unpickler.

    Args:
        path: the checkpoint file.
        trust: admit numpy values (see the module docstring) in a file that no card has verified.

    Raises:
        UntrustedCheckpointError: the file names a global other than numpy's data reconstructors (never
            loaded), or holds numpy values and is neither sha256-verified by its card nor ``trust``-ed.
        FileNotFoundError: no such file.
    """
    import torch

    from slmtok.hub.download import is_sha256_verified

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    allowed = numpy_globals()
    admitted = []
    for full in torch.serialization.get_unsafe_globals_in_checkpoint(path):
        module, _, name = full.rpartition(".")
        if (module, name) not in allowed:
            raise UntrustedCheckpointError(
                f"refusing {path}: it names {full}, which is code, not weights; slmtok never runs a "
                "checkpoint's code (re-save it as a plain state dict)"
            )
        admitted.append((allowed[(module, name)], full))
    if not (trust or is_sha256_verified(path)):
        raise UntrustedCheckpointError(
            f"{path} holds numpy values besides weights ({admitted[0][1] if admitted else 'unknown'}); load it "
            "only if you trust its source: pass trust=True, or fetch it through a card with a sha256"
        )
    # every numpy reconstructor, not only the names listed: the unpickler also meets dtype classes
    # (``numpy.dtypes.Float64DType``) that the checkpoint's global list does not show
    with torch.serialization.safe_globals([(obj, ".".join(key)) for key, obj in allowed.items()]):
        return torch.load(path, map_location="cpu", weights_only=True)
