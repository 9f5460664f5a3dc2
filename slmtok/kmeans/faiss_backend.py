"""FAISS k-means backend (CPU, or GPU when ``device`` is a CUDA device and FAISS has GPUs)."""

from __future__ import annotations

from typing import Any

import numpy as np


def fit_faiss(
    data: np.ndarray,
    k: int,
    *,
    device: str | None = None,
    seed: int = 0,
    n_iter: int = 25,
    n_redo: int = 1,
    max_points_per_centroid: int = 256,
    verbose: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Lloyd iterations with FAISS. Returns centroids ``[k, D]`` and ``{"inertia", "n_iter", ...}``.

    FAISS subsamples to ``k * max_points_per_centroid`` points per iteration (its default is 256).
    """
    import faiss

    use_gpu = bool(device and str(device).startswith("cuda") and faiss.get_num_gpus() > 0)
    km = faiss.Kmeans(
        data.shape[1],
        k,
        niter=n_iter,
        nredo=n_redo,
        seed=seed,
        verbose=verbose,
        gpu=use_gpu,
        max_points_per_centroid=max_points_per_centroid,
    )
    km.train(data)
    objective = list(km.obj) if km.obj is not None else []
    return km.centroids.copy(), {
        "inertia": float(objective[-1]) if objective else float("nan"),
        "n_iter": n_iter,
        "n_redo": n_redo,
        "device": "cuda" if use_gpu else "cpu",
        "objective": [float(o) for o in objective],
    }
