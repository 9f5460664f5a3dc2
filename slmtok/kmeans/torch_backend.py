"""Plain Lloyd k-means in torch (k-means++ initialisation), on any device."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def fit_torch(
    data: np.ndarray, k: int, *, device: str | None = None, seed: int = 0, n_iter: int = 25, tol: float = 1e-6
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit ``k`` centroids to ``data`` ``[N, D]``. Returns centroids ``[k, D]`` and ``{"inertia", "n_iter",
    "objective"}`` (the inertia after each iteration)."""
    from slmtok.kmeans import assign_nearest
    from slmtok.kmeans.init import kmeans_plus_plus

    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(data).to(device or "cpu")
    centroids = kmeans_plus_plus(x, k, gen)
    previous = float("inf")
    inertia = previous
    iterations = 0
    objective: list[float] = []
    for iterations in range(1, n_iter + 1):  # noqa: B007 - the count is reported below
        labels = assign_nearest(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
        inertia = float((x - centroids[labels]).double().pow(2).sum())
        objective.append(inertia)
        if previous - inertia <= tol * max(previous, 1e-12):
            break
        previous = inertia
    return centroids.cpu().numpy(), {"inertia": inertia, "n_iter": iterations, "objective": objective}
