"""Read the published scikit-learn k-means pickles without executing them, and without joblib or ``pickle.load``.

GSLM/textlesslib ``km.bin`` and fairseq ``*_km500.bin`` files are ``joblib.dump`` pickles of a fitted
``sklearn.cluster.MiniBatchKMeans``. ``joblib.load`` would run whatever the file names (and joblib before
1.6 hands an object array's nested pickle to bare ``pickle.load``, GHSA-m62q-453p-gv66), so slmtok reads
the format itself, whatever joblib version is installed:

- the pickle stream goes through Python's pure-Python unpickler with ``find_class`` limited to the
  globals such files contain: ``sklearn.cluster`` ``MiniBatchKMeans`` / ``KMeans`` (replaced by an inert
  record of the pickled attributes; sklearn's code is never run), numpy's ``ndarray``, ``dtype``,
  ``_reconstruct`` and ``scalar`` (data only), and joblib's ``NumpyArrayWrapper`` (replaced by an inert
  record of dtype, shape and order);
- the raw array bytes joblib writes after each ``NumpyArrayWrapper`` are read here: the dtype must not
  hold Python objects (an object array is refused: its nested pickle is never opened), the byte count
  (shape product x item size) must fit in what the file holds, and exactly that many bytes go to
  ``numpy.frombuffer``;
- zlib, gzip, bz2, xz and lzma compressed files are decompressed with the standard library, at most
  ``MAX_STREAM_BYTES`` of them.

Anything else (``os.system``, ``builtins.eval``, another class, an absurd shape) is refused with a
one-line error before anything is run or allocated. The centroids are then kept as slmtok's safetensors
format (``KMeans.save``).
"""

from __future__ import annotations

import bz2
import io
import lzma
import math
import os
import pickle
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from slmtok.errors import SlmtokError

_SKLEARN_CLASSES = {"MiniBatchKMeans", "KMeans"}
_SKLEARN_MODULES = ("sklearn.cluster._kmeans", "sklearn.cluster.k_means_", "sklearn.cluster")
_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
#: most bytes a (decompressed) k-means pickle may hold: a published one is a few MB
MAX_STREAM_BYTES = 1 << 31
_CHUNK = 1 << 24


class UnsafePickleError(SlmtokError):
    """A pickle names a global outside the allow-list, or stores Python objects; it was not executed."""


class SklearnKMeansState:
    """Inert stand-in for a pickled scikit-learn k-means: holds the pickled attributes in ``state``."""

    def __init__(self, *args: Any) -> None:  # NEWOBJ passes no arguments; tolerate any
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickleError("unexpected scikit-learn k-means state in pickle")
        self.state = dict(state)


class _ArrayRecord:
    """Inert stand-in for joblib's ``NumpyArrayWrapper``: the dtype, shape and order of the raw array
    bytes that follow it in the stream."""

    def __init__(self, *args: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise SlmtokError("malformed joblib array record")
        self.state = dict(state)


class _Source:
    """A byte stream that never reads (or allocates) more than it holds: ``read(n)`` goes in 16 MiB chunks
    and stops at the end, and more than ``limit`` bytes in all is an error."""

    def __init__(self, stream: BinaryIO, limit: int, where: Path) -> None:
        self.stream, self.limit, self.where, self.done = stream, limit, where, 0

    def remaining(self) -> int:
        """Upper bound on the bytes still to come."""
        return self.limit - self.done

    def _count(self, n: int) -> None:
        self.done += n
        if self.done > self.limit:
            raise SlmtokError(f"{self.where}: more than {self.limit} bytes; not a k-means file")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.remaining() + 1
        parts = []
        while n > 0:
            block = self.stream.read(min(n, _CHUNK))
            if not block:
                break
            self._count(len(block))
            parts.append(block)
            n -= len(block)
        return b"".join(parts)

    def readline(self) -> bytes:
        line = self.stream.readline(min(self.remaining() + 1, _CHUNK))
        self._count(len(line))
        return line

    def readinto(self, buffer: Any) -> int:  # the unframer's reads of a bytearray; see _refuse below
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _ZlibReader(io.RawIOBase):
    """Streaming zlib or gzip decompression (joblib's ``compress=`` default and ``"gzip"``)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.decompressor = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self.decompressor.unconsumed_tail:
                data = self.decompressor.decompress(self.decompressor.unconsumed_tail, len(buffer))
            elif self.decompressor.eof:
                return 0
            else:
                block = self.raw.read(1 << 16)
                if not block:
                    return 0
                data = self.decompressor.decompress(block, len(buffer))
            if data:
                buffer[: len(data)] = data
                return len(data)


def _open_stream(raw: BinaryIO, path: Path) -> tuple[BinaryIO, int]:
    """The decompressed stream of a joblib file and the most bytes it may hold."""
    head = raw.read(6)
    raw.seek(0)
    size = os.fstat(raw.fileno()).st_size
    if head[:1] == b"\x80":
        return raw, size
    if head.startswith(b"ZF"):
        raise SlmtokError(f"{path}: joblib files older than joblib 0.10 are not supported")
    if head.startswith(b"\x1f\x8b") or (
        len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0
    ):
        return io.BufferedReader(_ZlibReader(raw)), MAX_STREAM_BYTES
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw), MAX_STREAM_BYTES
    if head.startswith((b"\xfd7zXZ", b"\x5d\x00\x00")):
        return lzma.LZMAFile(raw), MAX_STREAM_BYTES
    raise SlmtokError(f"not a scikit-learn k-means pickle: {path} (unknown format)")


def _raw_array(record: _ArrayRecord, source: _Source, path: Path) -> np.ndarray:
    """The array a joblib ``NumpyArrayWrapper`` record describes, read from the raw bytes after it."""
    state = record.state
    dtype, shape, order = state.get("dtype"), state.get("shape"), state.get("order", "C")
    if state.get("subclass", np.ndarray) is not np.ndarray:
        raise UnsafePickleError(f"refusing {path}: an array of class {state.get('subclass')!r}")
    if not isinstance(dtype, np.dtype):
        raise SlmtokError(f"{path}: malformed joblib array record (dtype {dtype!r})")
    if dtype.hasobject:
        raise UnsafePickleError(
            f"refusing {path}: it stores an array of Python objects (dtype {dtype}), which a k-means file "
            "does not hold; its nested pickle was not read"
        )
    if (
        not isinstance(shape, tuple)
        or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0 for n in shape)
        or order not in ("C", "F")
    ):
        raise SlmtokError(f"{path}: malformed joblib array record (shape {shape!r}, order {order!r})")
    shape = tuple(int(n) for n in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if state.get("numpy_array_alignment_bytes") is not None:
        padding = source.read(1)
        if len(padding) != 1:
            raise SlmtokError(f"{path}: truncated joblib array")
        source.read(padding[0])
    if nbytes > source.remaining():
        raise SlmtokError(
            f"{path}: an array of shape {shape} ({dtype}) needs {nbytes} bytes, more than the file holds; "
            "not a k-means file"
        )
    data = source.read(nbytes)
    if len(data) != nbytes:
        raise SlmtokError(f"{path}: truncated joblib array ({len(data)} of {nbytes} bytes)")
    array = np.frombuffer(data, dtype=dtype).copy()
    array = array.reshape(shape[::-1]).T if order == "F" else array.reshape(shape)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _unpickler_class():
    from slmtok.hub.safe_load import numpy_globals

    allowed = numpy_globals()

    class RestrictedUnpickler(pickle._Unpickler):  # noqa: SLF001 - the pure-Python one: BUILD is overridable
        """``find_class`` limited to an allow-list; joblib's raw arrays read by ``_raw_array``."""

        dispatch = pickle._Unpickler.dispatch.copy()  # noqa: SLF001

        def __init__(self, source: _Source, path: Path) -> None:
            super().__init__(source)
            self.source, self.path = source, path

        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in allowed:
                return allowed[(module, name)]
            if (module, name) == _WRAPPER:
                return _ArrayRecord
            if name in _SKLEARN_CLASSES and module.startswith(_SKLEARN_MODULES):
                return SklearnKMeansState
            raise UnsafePickleError(
                f"refusing to load {self.path}: it names {module}.{name}, which a scikit-learn "
                "k-means file does not contain"
            )

        def load_build(self) -> None:
            pickle._Unpickler.load_build(self)  # noqa: SLF001
            top = self.stack[-1]
            if isinstance(top, _ArrayRecord):
                self.stack[-1] = _raw_array(top, self.source, self.path)
            elif isinstance(top, np.ndarray) and top.dtype.hasobject:
                raise UnsafePickleError(f"refusing {self.path}: it stores an array of Python objects")

        def refuse(self) -> None:
            raise SlmtokError(f"{self.path}: out-of-band or bytearray data; not a k-means file")

        dispatch[pickle.BUILD[0]] = load_build
        dispatch[pickle.BYTEARRAY8[0]] = refuse
        dispatch[pickle.NEXT_BUFFER[0]] = refuse

    return RestrictedUnpickler


def read_sklearn_kmeans(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Centroids ``[K, D]`` and the fitted attributes (``n_clusters``, ``inertia_``...) of a scikit-learn
    k-means pickle (plain or joblib, compressed or not), read without joblib and without running code.

    Raises:
        UnsafePickleError: the file names a global outside the allow-list or stores Python objects
            (nothing was executed).
        SlmtokError: the file is not a pickle of a fitted scikit-learn k-means (or declares more data
            than it holds).
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            stream, limit = _open_stream(raw, path)
            with stream:
                source = _Source(stream, limit, path)
                obj = _unpickler_class()(source, path).load()
    except SlmtokError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OSError,
        zlib.error,
        lzma.LZMAError,
        MemoryError,
        RecursionError,
    ) as error:
        first = (str(error).splitlines() or [""])[0]
        raise SlmtokError(
            f"not a scikit-learn k-means pickle: {path} ({type(error).__name__}: {first})"
        ) from None
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
