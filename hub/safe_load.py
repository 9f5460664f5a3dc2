"""Load torch checkpoints without executing them: the one checkpoint-loading policy of slmtok.

``torch.load(..., weights_only=True)`` first: it accepts tensors, containers and plain Python values and
refuses anything else. A checkpoint that also holds numpy values (scalars, arrays, dtypes; DAC's
metadata can) is read with torch's restricted unpickler admitting exactly those numpy reconstructors,
and only for a cached hub file whose sha256 matched its card, a file whose sha256 equals the one the
caller pins, or when the caller says ``trust=True``. A caller may admit more names under the same rule
(``admit``: e.g. configuration classes replaced by inert records). Any other global (a class, a
function) is refused in every case: no checkpoint's code is ever run.

Both torch formats go through this path: the zip format of ``torch.save`` and the legacy (pre-1.6,
``_use_new_zipfile_serialization=False``) pickle format. A file that is neither, or is truncated, is one
``CheckpointError`` line. Every checkpoint slmtok reads (codecs, HuBERT, vocoders) should come here.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmtok.hub.errors import CheckpointError, UntrustedCheckpointError

#: admits a global named ``module.name`` (returns what the unpickler gets) or refuses it (``None``)
Admit = Callable[[str], Any]
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _refused_global(error: BaseException) -> str | None:
    """The full name of the global torch's restricted unpickler refused, from its message; builtins come
    without their module in a legacy file's refusal (``GLOBAL dict``) and are named ``builtins.dict``."""
    match = _GLOBAL.search(str(error))
    if match is None:
        return None
    name = match.group(1)
    return name if "." in name else f"builtins.{name}"


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _code_error(path: Path, full: str) -> UntrustedCheckpointError:
    return UntrustedCheckpointError(
        f"refusing {path}: it names {full}, which is code, not weights; slmtok never runs a "
        "checkpoint's code (re-save it as a plain state dict)"
    )


def _verified(path: Path, sha256: str | None) -> bool:
    from slmtok.hub.download import is_sha256_verified, sha256_file

    return bool(sha256 and sha256_file(path) == sha256.lower()) or is_sha256_verified(path)


def load_torch_checkpoint(
    path: str | os.PathLike, *, trust: bool = False, sha256: str | None = None, admit: Admit | None = None
) -> Any:
    """Load a ``torch.save`` file (zip or legacy format) onto the CPU with torch's restricted unpickler.

    Args:
        path: the checkpoint file.
        trust: admit numpy values (and what ``admit`` admits) in a file that no card has verified.
        sha256: the file's expected sha256 (e.g. one a card or textlesslib pins): when it matches, the
            file counts as verified.
        admit: more globals to admit under the same rule, by full name (``"omegaconf.DictConfig"``);
            returns the object the unpickler should use, or ``None`` to refuse.

    Raises:
        UntrustedCheckpointError: the file names a global that is neither numpy's data reconstructors nor
            admitted (never loaded), or needs them and is neither verified nor ``trust``-ed.
        CheckpointError: the file is not a readable torch checkpoint.
        FileNotFoundError: no such file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_refusal = error
    except Exception as error:  # noqa: BLE001 - truncated, not a torch file, another format
        raise CheckpointError(f"not a readable torch checkpoint: {path} ({_first_line(error)})") from None
    allowed = {".".join(key): obj for key, obj in numpy_globals().items()}

    def resolve(full: str) -> Any:
        if full in allowed:
            return allowed[full]
        obj = admit(full) if admit is not None else None
        if obj is None:
            raise _code_error(path, full)
        return obj

    if zipfile.is_zipfile(path):
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    else:  # legacy format: torch lists no globals; take the one its refusal names
        name = _refused_global(first_refusal)
        if name is None:
            raise CheckpointError(f"not a readable torch checkpoint: {path} (malformed pickle)")
        names = [name]
    admitted = {full: resolve(full) for full in names}
    if not (trust or _verified(path, sha256)):
        what = ", ".join(list(admitted)[:3]) or "values besides tensors"
        raise UntrustedCheckpointError(
            f"{path} holds Python values besides weights ({what}); load it only if you trust its source: "
            "pass trust=True, or fetch it through a card with a sha256"
        )
    # every numpy reconstructor, not only the names listed: the unpickler also meets dtype classes
    # (``numpy.dtypes.Float64DType``) that the checkpoint's global list does not show
    extra = {**allowed, **admitted}
    for _ in range(64):  # a legacy file shows its globals one refusal at a time
        try:
            with torch.serialization.safe_globals([(obj, full) for full, obj in extra.items()]):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            name = _refused_global(error)
            if name is None or name in extra:
                raise UntrustedCheckpointError(f"refusing {path}: {_first_line(error)}") from None
            extra[name] = resolve(name)
        except Exception as error:  # noqa: BLE001
            raise CheckpointError(f"not a readable torch checkpoint: {path} ({_first_line(error)})") from None
    raise UntrustedCheckpointError(f"refusing {path}: it names too many globals")
