"""FAISS k-means backend (CPU, or GPU when ``device`` is a CUDA device and FAISS has GPUs)."""

from __future__ import annotations

from typing import Any

import numpy as np

from slmtok.errors import SlmtokError


def fit_faiss(
    data: np.ndarray,
    k: int,
    *,
    device: str | None = None,
    seed: int = 0,
    n_iter: int = 25,
    n_redo: int = 1,
    max_points_per_centroid: int = 256,
    init: str = "k-means++",
    refine_iter: int = 0,
    verbose: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Lloyd iterations with FAISS. Returns centroids ``[k, D]`` and ``{"inertia", "n_iter", ...}``.

    ``init="k-means++"`` (default) seeds with k-means++ on a subsample of ``k * 32`` rows; ``"random"``
    uses FAISS's own random rows, restarted ``n_redo`` times. FAISS trains on at most
    ``k * max_points_per_centroid`` rows; ``refine_iter`` more iterations then run on every row, starting
    from those centroids (cheap, and it removes most of the subsample's bias: see
    ``benchmarks/semantic_kmeans.py``).
    """
    import faiss
    import torch

    from slmtok.kmeans.init import kmeans_plus_plus

    if init not in ("k-means++", "random"):
        raise ValueError(f"init must be 'k-means++' or 'random', got {init!r}")

    use_gpu = bool(device and str(device).startswith("cuda"))
    if use_gpu and faiss.get_num_gpus() == 0:  # never fall back to the CPU behind the caller's back
        raise SlmtokError(
            f"k-means on {device}: FAISS sees no GPU (faiss.get_num_gpus() == 0; a CPU-only FAISS build or "
            "no CUDA device here); use device='cpu', or backend='torch' on the GPU"
        )
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
    seeds = None
    if init == "k-means++":
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randperm(data.shape[0], generator=gen)[: k * 32]
        seeds = kmeans_plus_plus(torch.from_numpy(data)[rows], k, gen).numpy()
    km.train(data, init_centroids=seeds)
    objective = list(km.obj) if km.obj is not None else []
    if refine_iter > 0 and data.shape[0] > k * max_points_per_centroid:
        full = faiss.Kmeans(
            data.shape[1], k, niter=refine_iter, seed=seed, verbose=verbose, gpu=use_gpu,
            max_points_per_centroid=-(-data.shape[0] // k),
        )  # fmt: skip
        full.train(data, init_centroids=km.centroids)
        km = full
        objective += list(km.obj) if km.obj is not None else []
    return km.centroids.copy(), {
        "inertia": float(objective[-1]) if objective else float("nan"),
        "n_iter": n_iter,
        "refine_iter": refine_iter,
        "n_redo": n_redo,
        "init": init,
        "device": "cuda" if use_gpu else "cpu",
        "objective": [float(o) for o in objective],
    }
