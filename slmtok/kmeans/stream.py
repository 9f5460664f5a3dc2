"""Fit k-means on features streamed from a corpus: uniform sampling to a frame budget, restarts, a log.

A corpus rarely fits in memory as features (1,000 h of HuBERT-base frames are 500 GB), and k-means does
not need all of it: ``FrameSampler`` keeps a uniform sample of at most ``budget`` frames from a stream of
batches (bottom-k sampling: every frame gets a random key, the ``budget`` smallest keys are kept), so the
sample does not depend on how the stream was cut into batches, and two samplers merge exactly (resume).
``fit_stream`` then fits ``restarts`` times with different seeds and keeps the lowest inertia.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from slmtok.errors import SlmtokError


class FrameSampler:
    """Uniform sample without replacement of at most ``budget`` rows from batches ``[n_i, D]``."""

    def __init__(self, budget: int, seed: int = 0) -> None:
        if budget < 1:
            raise ValueError(f"budget must be >= 1 frame, got {budget}")
        self.budget = int(budget)
        self.rng = np.random.default_rng(seed)
        self.keys = np.empty(0, dtype=np.float64)
        self.rows: np.ndarray | None = None
        self.seen = 0

    def add(self, batch: torch.Tensor | np.ndarray) -> None:
        """Offer the rows of ``batch`` ``[n, D]`` to the sample."""
        rows = np.asarray(batch.detach().cpu() if isinstance(batch, torch.Tensor) else batch, np.float32)
        if rows.ndim != 2:
            raise SlmtokError(f"k-means: features must be [N, D], got shape {rows.shape}")
        if self.rows is not None and rows.shape[1] != self.rows.shape[1]:
            raise SlmtokError(f"k-means: features of dimension {rows.shape[1]} after {self.rows.shape[1]}")
        if not np.isfinite(rows).all():
            raise SlmtokError("k-means: features contain NaN or Inf")
        self.seen += rows.shape[0]
        self.merge(self.rng.random(rows.shape[0]), rows)

    def merge(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Merge another sample (its keys ``[n]`` and rows ``[n, D]``), keeping the ``budget`` smallest keys."""
        keys = np.concatenate([self.keys, keys])
        rows = rows if self.rows is None else np.concatenate([self.rows, rows])
        if keys.shape[0] > self.budget:
            keep = np.argpartition(keys, self.budget - 1)[: self.budget]
            keys, rows = keys[keep], rows[keep]
        order = np.argsort(keys, kind="stable")
        self.keys, self.rows = keys[order], np.ascontiguousarray(rows[order])

    @property
    def sample(self) -> np.ndarray:
        """The sampled rows ``[min(budget, seen), D]`` (float32), in key order."""
        if self.rows is None:
            raise SlmtokError("k-means: no features were streamed")
        return self.rows


def fit_stream(
    batches: Iterable[torch.Tensor | np.ndarray],
    k: int,
    *,
    budget: int = 1_000_000,
    restarts: int = 1,
    backend: str = "faiss",
    device: str | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    sampler: FrameSampler | None = None,
    **options: Any,
):
    """Fit ``k`` centroids to frames streamed as ``[n_i, D]`` batches.

    Args:
        budget: at most this many frames (sampled uniformly over the whole stream) are kept for fitting.
        restarts: independent fits with seeds ``seed, seed + 1, ...``; the lowest inertia wins.
        sampler: a ``FrameSampler`` already holding part of the stream (to resume); ``batches`` add to it.
        log: called with one line per restart (and the sampling summary).
        **options: passed to the backend (``n_iter``, ``max_points_per_centroid``, ...).

    Returns:
        ``slmtok.kmeans.KMeans`` whose ``info`` has ``inertia`` (per frame of the sample),
        ``restarts`` (seed, inertia, seconds, per-iteration objective of each run) and ``frames_seen``.
    """
    from slmtok.kmeans import fit

    say = log or (lambda line: None)
    sampler = sampler or FrameSampler(budget, seed)
    for batch in batches:
        sampler.add(batch)
    data = sampler.sample
    if data.shape[0] < k:
        raise SlmtokError(f"k-means: {data.shape[0]} frames cannot make {k} clusters")
    say(
        f"sampled {data.shape[0]:,} of {sampler.seen:,} frames (budget {sampler.budget:,}), dim {data.shape[1]}"
    )
    best = None
    runs = []
    for attempt in range(max(1, restarts)):
        start = time.perf_counter()
        km = fit(data, k, backend=backend, device=device, seed=seed + attempt, **options)
        per_frame = km.inertia(data) / data.shape[0]
        seconds = time.perf_counter() - start
        objective = [float(o) / data.shape[0] for o in km.info.get("objective", [])]
        runs.append(
            {"seed": seed + attempt, "inertia": per_frame, "seconds": seconds, "objective": objective}
        )
        say(f"restart {attempt + 1}/{max(1, restarts)}: inertia {per_frame:.6g} per frame in {seconds:.1f} s")
        if best is None or per_frame < best[1]:
            best = (km, per_frame)
    km, per_frame = best
    km.info.pop("objective", None)
    km.info.update(inertia=per_frame, inertia_unit="per frame", restarts=runs, frames_seen=sampler.seen)
    return km
