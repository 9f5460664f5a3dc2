"""scikit-learn k-means backend: ``MiniBatchKMeans`` with the fairseq HuBERT recipe settings.

fairseq's ``examples/hubert/simple_kmeans/learn_kmeans.py`` (the recipe behind the published HuBERT
k-means files) fits ``MiniBatchKMeans(init="k-means++", max_iter=100, batch_size=10000, tol=0.0,
max_no_improvement=100, n_init=20, reassignment_ratio=0.0, compute_labels=False, init_size=None)``.
Those are the defaults here, so ``backend="sklearn"`` reproduces published units and serves as the
reference that the faster backends are measured against. It runs on the CPU only.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

#: fairseq ``learn_kmeans.py`` defaults
RECIPE: dict[str, Any] = {
    "init": "k-means++",
    "max_iter": 100,
    "batch_size": 10000,
    "tol": 0.0,
    "max_no_improvement": 100,
    "n_init": 20,
    "reassignment_ratio": 0.0,
}


def fit_sklearn(
    data: np.ndarray,
    k: int,
    *,
    device: str | None = None,
    seed: int | None = 0,
    verbose: bool = False,
    **options: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit ``k`` centroids to ``data`` ``[N, D]`` with ``MiniBatchKMeans``.

    ``options`` override the recipe (``batch_size``, ``n_init``, ``max_iter``, ``tol``,
    ``max_no_improvement``, ``reassignment_ratio``, ``init``, ``init_size``). ``seed=None`` leaves the
    random state unset, as the fairseq script does. Returns centroids ``[k, D]`` and an info dict with
    ``inertia`` (sum of squared distances over ``data``), ``n_iter`` and ``n_steps``.
    """
    from sklearn.cluster import MiniBatchKMeans

    if device is not None and not str(device).startswith("cpu"):
        raise ValueError(f"the sklearn k-means backend runs on the CPU only, not {device!r}")
    unknown = set(options) - set(RECIPE) - {"init_size"}
    if unknown:
        raise TypeError(f"unknown sklearn k-means options: {', '.join(sorted(unknown))}")
    settings = {**RECIPE, **options}
    model = MiniBatchKMeans(
        n_clusters=k,
        compute_labels=False,
        verbose=int(verbose),
        random_state=seed,
        init_size=settings.pop("init_size", None),
        **settings,
    )
    start = time.perf_counter()
    model.fit(data)
    seconds = time.perf_counter() - start
    centroids = np.ascontiguousarray(model.cluster_centers_, dtype=np.float32)
    inertia = float(-model.score(data))
    return centroids, {
        "inertia": inertia,
        "n_iter": int(model.n_iter_),
        "n_steps": int(model.n_steps_),
        "seconds": seconds,
        "settings": {key: value for key, value in settings.items()},
    }
