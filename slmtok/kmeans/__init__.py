"""K-means: fit centroids with a registered backend, assign frames exactly, save as safetensors.

>>> km = slmtok.kmeans.fit(features, 100, backend="faiss", seed=0)   # features [N, D]
>>> units = km.assign(frames)                                         # LongTensor [N]
>>> km.save("km100.safetensors"); km = slmtok.kmeans.load("km100.safetensors")
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError
from slmtok.registry import KMEANS_BACKENDS

__all__ = ["KMeans", "fit", "fit_stream", "load", "assign_nearest", "nearest_with_margin"]

# Rows whose best and second-best squared distances are closer than this (relative) are recomputed in
# float64, so an assignment never depends on how many other rows were in the same matrix product.
_TIE_TOLERANCE = 1e-4


class KMeans:
    """Centroids ``[K, D]`` plus how they were fitted (``info``: backend, inertia, iterations ...)."""

    def __init__(self, centroids: torch.Tensor, info: dict[str, Any] | None = None) -> None:
        if centroids.ndim != 2 or centroids.shape[0] < 1:
            raise ValueError(f"centroids must be [K, D], got {tuple(centroids.shape)}")
        self.centroids = centroids.float().contiguous()
        self.info = dict(info or {})

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def to(self, device: str | torch.device) -> KMeans:
        return KMeans(self.centroids.to(device), self.info)

    def assign(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Nearest centroid (squared Euclidean) of each row of ``x`` ``[N, D]`` -> LongTensor ``[N]``."""
        return assign_nearest(torch.as_tensor(x), self.centroids)

    def inertia(self, x: torch.Tensor | np.ndarray) -> float:
        """Sum of squared distances of the rows of ``x`` to their nearest centroid."""
        _, _, nearest = _nearest(torch.as_tensor(x), self.centroids, 4096)
        return float(nearest.sum(dtype=torch.float64))

    def save(self, path: str | os.PathLike, *, card: bool = False) -> Path:
        """Write ``centroids`` as safetensors with ``info`` as a JSON header, atomically.

        With ``card=True`` also write ``<path>.json``: the info plus K, D and the file's sha256.
        """
        import hashlib

        from safetensors.torch import save

        blob = save(
            {"centroids": self.centroids.cpu()},
            metadata={"format": "slmtok-kmeans", "info": json.dumps(self.info)},
        )
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_bytes(blob)
        if card:
            data = {
                "format": "slmtok-kmeans",
                "file": path.name,
                "sha256": hashlib.sha256(blob).hexdigest(),
                "k": self.k,
                "dim": self.dim,
                **self.info,
            }
            with atomic_path(path.with_name(path.name + ".json")) as tmp:
                tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return path


def assign_nearest(x: torch.Tensor, centroids: torch.Tensor, *, chunk: int = 4096) -> torch.Tensor:
    """Index of the nearest row of ``centroids`` ``[K, D]`` for each row of ``x`` ``[N, D]`` -> ``[N]``.

    float32 matrix products, with near-ties re-decided in float64: each row's answer is the same whether
    it is assigned alone or in a batch.
    """
    return nearest_with_margin(x, centroids, chunk=chunk)[0]


def nearest_with_margin(
    x: torch.Tensor, centroids: torch.Tensor, *, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """``assign_nearest`` plus each row's margin: (second-best - best squared distance) / scale ``[N]``.

    The margin says how far a row is from a decision boundary, relative to the size of the distances;
    callers whose features carry float noise (a padded batch vs one item) use it to find rows whose unit
    could flip. Near-ties (margin below 1e-4) are decided exactly in float64.
    """
    labels, margin, _ = _nearest(x, centroids, chunk)
    return labels, margin


def _nearest(
    x: torch.Tensor, centroids: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labels ``[N]``, margins ``[N]`` and squared distances to the chosen centroid ``[N]`` (float32).

    Rows go through in chunks of ``chunk`` (4096 keeps each ``[chunk, K]`` block in cache)."""
    x = x.to(centroids.device, torch.float32)
    if x.ndim != 2 or x.shape[1] != centroids.shape[1]:
        raise ValueError(f"features must be [N, {centroids.shape[1]}], got {tuple(x.shape)}")
    n = x.shape[0]
    out = torch.zeros(n, dtype=torch.long, device=centroids.device)
    margin = torch.full((n,), float("inf"), device=centroids.device)
    nearest = torch.zeros(n, device=centroids.device)
    c_norm = centroids.pow(2).sum(1)
    c64 = None
    for start in range(0, n, chunk):
        xs = x[start : start + chunk]
        x_norm = xs.pow(2).sum(1)
        dist = torch.addmm(c_norm[None, :], xs, centroids.T, alpha=-2.0)
        if centroids.shape[0] == 1:
            nearest[start : start + xs.shape[0]] = (dist[:, 0] + x_norm).clamp_min(0)
            continue
        top = dist.topk(2, dim=1, largest=False)
        best = top.indices[:, 0]
        scale = top.values.abs().amax(1) + x_norm + 1e-12
        gap = (top.values[:, 1] - top.values[:, 0]) / scale
        close = gap <= _TIE_TOLERANCE
        if bool(close.any()):
            if c64 is None:
                c64 = centroids.double()
                c64_norm = c64.pow(2).sum(1)
            rows = xs[close].double()
            exact = torch.addmm(c64_norm[None, :], rows, c64.T, alpha=-2.0)
            best[close] = exact.argmin(1)
        out[start : start + xs.shape[0]] = best
        margin[start : start + xs.shape[0]] = gap
        nearest[start : start + xs.shape[0]] = (dist.gather(1, best[:, None])[:, 0] + x_norm).clamp_min(0)
    return out, margin, nearest


def _as_matrix(features: Any, max_samples: int | None, seed: int) -> np.ndarray:
    """Stack ``[N, D]`` tensors/arrays (or an iterable of them) into float32 ``[N, D]``, subsampled."""
    if isinstance(features, (torch.Tensor, np.ndarray)):
        parts: Iterable[Any] = [features]
    else:
        parts = features
    arrays = [
        np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float32) for p in parts
    ]
    if not arrays:
        raise SlmtokError("k-means: no features given")
    dims = {a.shape[-1] for a in arrays if a.ndim == 2}
    if any(a.ndim != 2 for a in arrays) or len(dims) != 1:
        raise SlmtokError("k-means: features must be [N, D] matrices with one D")
    data = np.concatenate(arrays)
    if not np.isfinite(data).all():
        raise SlmtokError("k-means: features contain NaN or Inf")
    if max_samples is not None and data.shape[0] > max_samples:
        rng = np.random.default_rng(seed)
        data = data[np.sort(rng.choice(data.shape[0], max_samples, replace=False))]
    return np.ascontiguousarray(data)


def fit(
    features: Any,
    k: int,
    *,
    backend: str = "faiss",
    device: str | None = None,
    seed: int = 0,
    max_samples: int | None = None,
    **options: Any,
) -> KMeans:
    """Fit ``k`` centroids to ``features`` (``[N, D]`` tensor/array, or an iterable of such batches).

    Args:
        backend: a registered k-means backend (``slmtok.registry.KMEANS_BACKENDS``): ``faiss``, ``torch``.
        device: ``"cuda"`` to fit on a GPU where the backend can; ``None`` picks the CPU.
        max_samples: subsample to at most this many rows (uniformly, seeded) before fitting.
        **options: passed to the backend (e.g. ``n_iter``, ``n_redo``).
    """
    data = _as_matrix(features, max_samples, seed)
    if data.shape[0] < k:
        raise SlmtokError(f"k-means: {data.shape[0]} samples cannot make {k} clusters")
    fit_fn = KMEANS_BACKENDS.get(backend).resolve()
    centroids, info = fit_fn(data, k, device=device, seed=seed, **options)
    info = {
        "backend": backend,
        "k": k,
        "dim": int(data.shape[1]),
        "n_samples": int(data.shape[0]),
        "seed": seed,
        **info,
    }
    return KMeans(torch.as_tensor(centroids), info)


def load(path: str | os.PathLike) -> KMeans:
    """Read a k-means file: slmtok's own (``KMeans.save``, safetensors) or a published scikit-learn
    pickle (GSLM/textlesslib ``km.bin``, fairseq ``*_km500.bin``), the latter through a restricted
    unpickler that executes nothing (``slmtok.kmeans.sklearn_import``)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SlmtokError(f"no such k-means file: {path}")
    if _is_pickle(path):
        from slmtok.kmeans.sklearn_import import read_sklearn_kmeans

        centers, fitted = read_sklearn_kmeans(path)
        info = {"backend": "sklearn-import", "source": str(path), **fitted}
        return KMeans(_checked_centroids(torch.from_numpy(centers), path), info)
    _check_safetensors_size(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            centroids = f.get_tensor("centroids")
    except Exception:  # noqa: BLE001
        raise SlmtokError(f"not a slmtok k-means file: {path}") from None
    if meta.get("format") != "slmtok-kmeans":
        raise SlmtokError(f"not a slmtok k-means file: {path}")
    try:
        info = json.loads(meta.get("info", "{}"))
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise SlmtokError(f"{path}: its k-means info header is not a JSON object")
    return KMeans(_checked_centroids(centroids, path), info)


def _checked_centroids(centroids: torch.Tensor, path: Path) -> torch.Tensor:
    """``centroids`` ``[K, D]`` with K, D >= 1, floating point and finite; else one line naming the file."""
    if centroids.ndim != 2 or min(centroids.shape) < 1 or not centroids.is_floating_point():
        raise SlmtokError(
            f"{path}: centroids must be a non-empty float [K, D] matrix, got {tuple(centroids.shape)}"
        )
    if not bool(torch.isfinite(centroids).all()):
        raise SlmtokError(f"{path}: centroids contain NaN or Inf")
    return centroids


_ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
#: a safetensors header larger than this is not a k-means file (safetensors' own limit is 100 MB)
_MAX_HEADER = 100_000_000


def _check_safetensors_size(path: Path) -> None:
    """Refuse, in one line and before any allocation, a safetensors file whose header is malformed or
    declares ``centroids`` needing more bytes than the file holds (e.g. ``[10**12, 768]``)."""
    import math
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise SlmtokError(f"not a slmtok k-means file: {path} (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise SlmtokError(
                f"not a slmtok k-means file: {path} (header of {n} bytes in a {size}-byte file)"
            )
        try:
            header = json.loads(f.read(n))
            entry = header["centroids"]
            shape = [int(d) for d in entry["shape"]]
            itemsize = _ITEMSIZE[entry["dtype"]]
        except (ValueError, KeyError, TypeError):
            raise SlmtokError(
                f"not a slmtok k-means file: {path} (no centroids tensor in its header)"
            ) from None
    nbytes = math.prod(shape) * itemsize
    if len(shape) != 2 or min(shape) < 0 or nbytes > size - 8 - n:
        raise SlmtokError(
            f"{path}: centroids of shape {shape} ({entry['dtype']}) need {nbytes} bytes, the file holds "
            f"{size - 8 - n}; not a k-means file"
        )


def _is_pickle(path: Path) -> bool:
    """A pickle (protocol 2+ starts with ``0x80``) or a joblib file compressed with zlib, gzip, bz2, xz or
    lzma; safetensors starts with a little-endian header length followed by ``{``."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        return False
    zlib_header = len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0
    compressed = head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"ZF"))
    return head[:1] == b"\x80" or zlib_header or compressed


def fit_stream(*args: Any, **kwargs: Any) -> KMeans:
    """Fit on features streamed from a corpus; see ``slmtok.kmeans.stream.fit_stream``."""
    from slmtok.kmeans.stream import fit_stream as _fit_stream

    return _fit_stream(*args, **kwargs)
