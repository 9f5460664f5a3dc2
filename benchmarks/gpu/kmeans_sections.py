"""P1 (k-means fit: FAISS on the device vs FAISS CPU vs the fairseq scikit-learn recipe) and P2
(assignment: ``KMeans.assign`` on the device vs scikit-learn ``predict``).

Frames: the seeded HuBERT-shaped Gaussian mixture of ``benchmarks/semantic_kmeans.py`` (768-d, 1,000
components, decaying spectrum). The CPU references run on ``ctx.cpu_threads`` threads (2: the targets
say "on 2 cores"); the device side gets every core for its CPU parts (k-means++ seeding).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch
from common import Context, device_name, sync, target, timed
from semantic_kmeans import RESULTS, frames

D = 768
#: smoke runs cut the recipe's 20 restarts x 100 iterations (seconds, not minutes, on 2 cores)
SMOKE_RECIPE = {"n_init": 1, "max_iter": 5}


def _cpu_threads(n: int):
    """Limit BLAS/OpenMP (scikit-learn, numpy), FAISS and torch to ``n`` threads for a ``with`` block."""
    import contextlib

    import faiss
    from threadpoolctl import threadpool_limits

    @contextlib.contextmanager
    def limited():
        torch_before, faiss_before = torch.get_num_threads(), faiss.omp_get_max_threads()
        torch.set_num_threads(n)
        faiss.omp_set_num_threads(n)
        try:
            with threadpool_limits(n):
                yield
        finally:
            torch.set_num_threads(torch_before)
            faiss.omp_set_num_threads(faiss_before)

    return limited()


def _inertia(x: np.ndarray, centroids: torch.Tensor, device: str) -> float:
    """Mean squared distance to the nearest centroid (exact assignment, the same code for every side)."""
    from slmtok.kmeans import KMeans

    total = 0.0
    km = KMeans(centroids.float()).to(device)
    for start in range(0, x.shape[0], 500_000):
        total += km.inertia(torch.from_numpy(x[start : start + 500_000]).to(device))
    return total / x.shape[0]


def _sklearn_reference(ctx: Context, x: np.ndarray, k: int, live: bool) -> dict[str, Any]:
    """The fairseq recipe on ``cpu_threads`` threads: run here (``live``) or read from the recorded file."""
    from slmtok.kmeans.sklearn_backend import RECIPE, fit_sklearn

    if not live:
        path = RESULTS / "semantic_kmeans_fit-sklearn.json"
        recorded = json.loads(path.read_text())
        return {
            "source": f"recorded: {path.relative_to(ctx.repo)} (same frames, N=200000, K=500; "
            f"{recorded['machine']}, {recorded['threads']} threads); pass --sklearn-live to run it here",
            "seconds": recorded["seconds"],
            "inertia_per_frame": recorded["inertia_per_frame"],
            "settings": recorded["settings"],
        }
    options = SMOKE_RECIPE if ctx.smoke else {}
    with _cpu_threads(ctx.cpu_threads), timed("cpu") as t:
        centroids, info = fit_sklearn(x, k, seed=0, **options)
    return {
        "source": f"run in this suite on {ctx.cpu_threads} CPU threads"
        + (f" (smoke: recipe cut to {SMOKE_RECIPE})" if ctx.smoke else ""),
        "seconds": t["s"],
        "inertia_per_frame": _inertia(x, torch.as_tensor(centroids), ctx.device),
        "settings": {**RECIPE, **options},
        "n_steps": info.get("n_steps"),
    }


def p1_fit(ctx: Context, sklearn_live: bool) -> dict[str, Any]:
    """FAISS k-means on ``ctx.device`` vs FAISS CPU (2 threads) vs the scikit-learn recipe."""
    import slmtok.kmeans as kmeans

    s = ctx.sizes
    n, k = s.kmeans_frames, s.kmeans_k
    x = frames(n, seed=0)
    options = {"n_iter": s.kmeans_n_iter, "max_points_per_centroid": n // k + 1}  # every frame, no subsample
    with _cpu_threads(ctx.cpu_threads), timed("cpu") as t_cpu:
        km_cpu = kmeans.fit(x, k, backend="faiss", device=None, seed=0, **options)
    with timed(ctx.device) as t_dev:
        km_dev = kmeans.fit(x, k, backend="faiss", device=ctx.device, seed=0, **options)
    sk = _sklearn_reference(ctx, x, k, sklearn_live or ctx.smoke)
    inertia_cpu = _inertia(x, km_cpu.centroids, ctx.device)
    inertia_dev = _inertia(x, km_dev.centroids, ctx.device)
    comparable = sk["source"].startswith("run") or (n, k) == (200_000, 500)
    big: dict[str, Any] = {"skipped": "GPU only (2M x 768 on the CPU would not fit the budget)"}
    if ctx.on_gpu and s.kmeans_big_frames:
        xb = frames(s.kmeans_big_frames, seed=3)
        with timed(ctx.device) as t_big:
            km_big = kmeans.fit(xb, k, backend="faiss", device=ctx.device, seed=0, **options)
        big = {
            "frames": s.kmeans_big_frames,
            "seconds": t_big["s"],
            "faiss_device": km_big.info.get("device"),
            "inertia_per_frame": _inertia(xb, km_big.centroids, ctx.device),
        }
        del xb
    speed_cpu = t_cpu["s"] / t_dev["s"]
    speed_sk = sk["seconds"] / t_dev["s"] if comparable else None
    ratio_sk = inertia_dev / sk["inertia_per_frame"] if comparable else None
    used_gpu = km_dev.info.get("device") == "cuda"
    return {
        "device": ctx.device,
        "device_name": device_name(ctx.device),
        "sizes": {"frames": n, "dim": D, "k": k, "options": options},
        "faiss_device": {
            "seconds": t_dev["s"],
            "faiss_ran_on": km_dev.info.get("device"),
            "inertia_per_frame": inertia_dev,
        },
        "faiss_cpu": {"seconds": t_cpu["s"], "threads": ctx.cpu_threads, "inertia_per_frame": inertia_cpu},
        "sklearn_recipe": sk,
        "big_fit_device_only": big,
        "speedup_vs_faiss_cpu": speed_cpu,
        "speedup_vs_sklearn": speed_sk,
        "inertia_ratio_device_vs_faiss_cpu": inertia_dev / inertia_cpu,
        "inertia_ratio_device_vs_sklearn": ratio_sk,
        "target": target(
            ctx,
            ">= 20x FAISS CPU on 2 cores, >= 500x the scikit-learn recipe, inertia within 1 % (FAISS on the GPU)",
            {
                "faiss_used_gpu": (float(used_gpu), lambda v: v == 1.0),
                "speedup_vs_faiss_cpu": (speed_cpu, lambda v: v >= 20),
                "speedup_vs_sklearn": (speed_sk, lambda v: v >= 500),
                "inertia_ratio_vs_sklearn": (ratio_sk, lambda v: abs(v - 1) <= 0.01),
            },
        ),
    }


def torch_frames(n: int, device: str, seed: int = 1, chunk: int = 1_000_000) -> torch.Tensor:
    """``[n, 768]`` float32 on ``device`` from the same kind of mixture as ``semantic_kmeans.frames``
    (1,000 components, decaying spectrum), drawn with torch so 10M frames take seconds, not minutes."""
    g = torch.Generator().manual_seed(seed)
    spectrum = 1.0 / torch.sqrt(1.0 + torch.arange(D, dtype=torch.float32))
    means = (torch.randn(1000, D, generator=g) * spectrum * 4.0).to(device)
    weights = torch.from_numpy(np.random.default_rng(seed).dirichlet(np.full(1000, 2.0))).float().to(device)
    spectrum = spectrum.to(device)
    dg = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(n, D, device=device)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        idx = torch.multinomial(weights, m, replacement=True, generator=dg)
        noise = torch.randn(m, D, device=device, generator=dg) * spectrum * 2.0
        out[start : start + m] = means[idx] + noise
    return out


def p2_assign(ctx: Context) -> dict[str, Any]:
    """``KMeans.assign`` on the device (all frames resident there) vs scikit-learn ``predict`` on
    ``cpu_threads`` threads (a prefix of the same frames); per-frame throughput ratio and agreement."""
    from sklearn.cluster import MiniBatchKMeans

    from slmtok.kmeans import KMeans

    s = ctx.sizes
    k = s.kmeans_k if ctx.smoke else 500
    centroids = frames(k, seed=2)
    x = torch_frames(s.assign_frames, ctx.device)
    sync(ctx.device)
    x_sk = x[: s.assign_sklearn_frames].cpu().numpy()
    sk = MiniBatchKMeans(k, n_init=1, max_iter=1, batch_size=2048, random_state=0).fit(x_sk[: 20 * k])
    sk.cluster_centers_ = centroids.copy()
    with _cpu_threads(ctx.cpu_threads), timed("cpu") as t_sk:
        labels_sk = sk.predict(x_sk)
    km = KMeans(torch.from_numpy(centroids)).to(ctx.device)
    km.assign(x[:4096])  # warm-up (kernels, cuBLAS handles)
    with timed(ctx.device) as t_dev:
        labels = km.assign(x)
    agreement = float((labels[: s.assign_sklearn_frames].cpu().numpy() == labels_sk).mean())
    sk_rate = s.assign_sklearn_frames / t_sk["s"]
    dev_rate = s.assign_frames / t_dev["s"]
    del x
    return {
        "device": ctx.device,
        "device_name": device_name(ctx.device),
        "sizes": {"frames": s.assign_frames, "sklearn_frames": s.assign_sklearn_frames, "dim": D, "k": k},
        "slmtok_assign": {"seconds": t_dev["s"], "frames_per_second": dev_rate},
        "sklearn_predict": {"seconds": t_sk["s"], "frames_per_second": sk_rate, "threads": ctx.cpu_threads},
        "speedup_per_frame": dev_rate / sk_rate,
        "agreement_with_sklearn": agreement,
        "host_threads": os.cpu_count(),
        "target": target(
            ctx,
            ">= 50x scikit-learn predict on 2 cores (frames per second), agreement >= 0.9999",
            {
                "speedup_per_frame": (dev_rate / sk_rate, lambda v: v >= 50),
                "agreement": (agreement, lambda v: v >= 0.9999),
            },
        ),
    }
