"""Read the published scikit-learn k-means pickles without executing them.

GSLM/textlesslib ``km.bin`` and fairseq ``*_km500.bin`` files are ``joblib.dump`` pickles of a fitted
``sklearn.cluster.MiniBatchKMeans``. Loading them with ``joblib.load`` would run whatever the file names;
here a restricted unpickler admits only the globals such files contain:

- ``sklearn.cluster`` ``MiniBatchKMeans`` / ``KMeans`` (any module path sklearn used): replaced by an
  inert record of the pickled attributes (sklearn's own code is never run);
- numpy's ``ndarray``, ``dtype``, ``_reconstruct`` and ``scalar`` (array and scalar rebuilding);
- joblib's ``NumpyArrayWrapper`` (arrays stored raw after the pickle stream).

Anything else (``os.system``, ``builtins.eval``, another class) is refused with a one-line error. The
centroids are then kept as slmtok's safetensors format (``KMeans.save``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from slmtok.errors import SlmtokError

_SKLEARN_CLASSES = {"MiniBatchKMeans", "KMeans"}
_SKLEARN_MODULES = ("sklearn.cluster._kmeans", "sklearn.cluster.k_means_", "sklearn.cluster")


class UnsafePickleError(SlmtokError):
    """A pickle names a global outside the allow-list; it was not executed."""


class SklearnKMeansState:
    """Inert stand-in for a pickled scikit-learn k-means: holds the pickled attributes in ``state``."""

    def __init__(self, *args: Any) -> None:  # NEWOBJ passes no arguments; tolerate any
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickleError("unexpected scikit-learn k-means state in pickle")
        self.state = dict(state)


def _unpickler_class():
    from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

    from slmtok.hub.safe_load import numpy_globals

    allowed = numpy_globals()
    allowed[("joblib.numpy_pickle", "NumpyArrayWrapper")] = NumpyArrayWrapper

    class RestrictedUnpickler(NumpyUnpickler):
        """joblib's unpickler (raw arrays after the stream) with ``find_class`` limited to an allow-list."""

        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in allowed:
                return allowed[(module, name)]
            if name in _SKLEARN_CLASSES and module.startswith(_SKLEARN_MODULES):
                return SklearnKMeansState
            raise UnsafePickleError(
                f"refusing to load {self.filename}: it names {module}.{name}, which a scikit-learn "
                "k-means file does not contain"
            )

    return RestrictedUnpickler


def read_sklearn_kmeans(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Centroids ``[K, D]`` and the fitted attributes (``n_clusters``, ``inertia_``...) of a scikit-learn
    k-means pickle, read through the restricted unpickler.

    Raises:
        UnsafePickleError: the file names a global outside the allow-list (nothing was executed).
        SlmtokError: the file is not a pickle of a fitted scikit-learn k-means.
    """
    import pickle

    from joblib import numpy_pickle

    path = Path(path)
    unpickler_class = _unpickler_class()
    try:
        with (
            open(path, "rb") as raw,
            numpy_pickle._validate_fileobject_and_memmap(raw, str(path), None) as (
                fobj,
                _,
            ),
        ):
            if isinstance(fobj, str):  # joblib < 0.10 layout: arrays in companion files
                raise SlmtokError(f"{path}: joblib files older than joblib 0.10 are not supported")
            obj = unpickler_class(str(path), fobj, True).load()
    except UnsafePickleError:
        raise
    except SlmtokError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise SlmtokError(f"not a scikit-learn k-means pickle: {path} ({error})") from None
    if not isinstance(obj, SklearnKMeansState):
        raise SlmtokError(f"{path} does not hold a scikit-learn k-means (found {type(obj).__name__})")
    centers = obj.state.get("cluster_centers_")
    if not isinstance(centers, np.ndarray) or centers.ndim != 2 or centers.dtype.kind != "f":
        raise SlmtokError(f"{path}: the pickled k-means has no fitted cluster_centers_")
    info = {
        key: _plain(value)
        for key, value in obj.state.items()
        if key
        in ("n_clusters", "inertia_", "n_iter_", "n_steps_", "batch_size", "n_init", "init", "max_iter")
    }
    info["sklearn_dtype"] = str(centers.dtype)
    info["sklearn_version"] = str(obj.state.get("_sklearn_version", "unknown"))
    return np.ascontiguousarray(centers), info


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
