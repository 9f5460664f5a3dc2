"""K-means fit and assignment: slmtok's FAISS backend vs the fairseq scikit-learn recipe.

    python benchmarks/semantic_kmeans.py fit-sklearn   # the reference, ~16 min on 2 cores: run it once
    python benchmarks/semantic_kmeans.py fit-faiss --n-iter 12 --points-per-centroid 128 --refine 3
    python benchmarks/semantic_kmeans.py assign        # 1M frames -> 500 centroids vs sklearn predict
    python benchmarks/semantic_kmeans.py report        # ratio and inertia gap from the JSON files

Data: 200,000 x 768 float32 frames drawn from a seeded Gaussian mixture shaped like HuBERT-base features
(1,000 components whose means have a decaying spectrum, overlapping clusters, per-frame noise), K=500 —
the size of fairseq's HuBERT layer-9 km500 recipe. (No pretrained HuBERT can be downloaded on this
machine, so the frames are synthetic; timing depends only on N, D and K, and the inertia comparison is
like for like.) Each step writes ``benchmarks/results/semantic_kmeans_<step>.json``; ``report`` combines.
Inertia is reported per frame, computed the same way (exact nearest centroid) for every method.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

N, D, K = 200_000, 768, 500
RESULTS = Path(__file__).resolve().parent / "results"


def frames(n: int = N, seed: int = 0) -> np.ndarray:
    """``[n, 768]`` float32 from a 1,000-component Gaussian mixture with a decaying spectrum."""
    rng = np.random.default_rng(seed)
    spectrum = (1.0 / np.sqrt(1.0 + np.arange(D))).astype(np.float32)
    means = rng.standard_normal((1000, D), dtype=np.float32) * spectrum * 4.0
    weights = rng.dirichlet(np.full(1000, 2.0))
    out = np.empty((n, D), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        idx = rng.choice(1000, m, p=weights)
        out[start : start + m] = means[idx] + rng.standard_normal((m, D), dtype=np.float32) * spectrum * 2.0
    return out


def _machine(threads: int) -> dict:
    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared, busy)",
        "threads": threads,
        "load_average_at_end": os.getloadavg(),
    }


def _inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    import torch

    from slmtok.kmeans import KMeans

    return KMeans(torch.from_numpy(centroids)).inertia(x) / x.shape[0]


def fit_sklearn(threads: int) -> dict:
    from slmtok.kmeans.sklearn_backend import RECIPE, fit_sklearn

    x = frames()
    start, cpu = time.perf_counter(), time.process_time()
    centroids, info = fit_sklearn(x, K, seed=0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "method": "scikit-learn MiniBatchKMeans, fairseq HuBERT recipe",
        "settings": RECIPE,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "inertia_per_frame": _inertia(x, centroids),
        "n_iter": info["n_iter"],
        "n_steps": info["n_steps"],
        **_machine(threads),
    }


def fit_faiss(
    threads: int, n_iters: list[int], restarts: int, points_per_centroid: int, seeds: list[int], refine: int
) -> dict:
    import slmtok.kmeans as kmeans

    x = frames()
    rows = []
    for n_iter in n_iters:
        for seed in seeds:
            backend = "faiss"
            options = {
                "n_iter": n_iter,
                "max_points_per_centroid": points_per_centroid,
                "refine_iter": refine,
            }
            start, cpu = time.perf_counter(), time.process_time()
            km = kmeans.fit_stream([x], K, budget=N, restarts=restarts, backend=backend, seed=seed, **options)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            used = min(N, K * points_per_centroid)
            rows.append(
                {
                    "method": f"slmtok {backend} (k-means++ seeding, {n_iter} Lloyd iterations on {used} of {N} "
                    f"frames, then {refine} on all, {restarts} restart(s))",
                    "backend": backend,
                    "seed": seed,
                    "options": options,
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "inertia_per_frame": _inertia(x, km.centroids.numpy()),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return {"runs": rows, **_machine(threads)}


def assign(threads: int, n_frames: int) -> dict:
    import torch
    from sklearn.cluster import MiniBatchKMeans

    import slmtok.kmeans as kmeans

    x = frames(n_frames, seed=1)
    centroids = frames(K, seed=2)
    sk = MiniBatchKMeans(K, n_init=1, max_iter=1, batch_size=2048, random_state=0).fit(x[:20_000])
    sk.cluster_centers_ = centroids.copy()
    start = time.perf_counter()
    labels_sk = sk.predict(x)
    t_sk = time.perf_counter() - start
    km = kmeans.KMeans(torch.from_numpy(centroids))
    xt = torch.from_numpy(x)
    start = time.perf_counter()
    labels = km.assign(xt)
    t_ours = time.perf_counter() - start
    # per utterance (GSLM's quantize loop): 2,000 calls of 500 frames
    n_utt = min(2000, n_frames // 500)
    start = time.perf_counter()
    for i in range(n_utt):
        sk.predict(x[i * 500 : (i + 1) * 500])
    t_sk_utt = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(n_utt):
        km.assign(xt[i * 500 : (i + 1) * 500])
    t_ours_utt = time.perf_counter() - start
    return {
        "frames": n_frames,
        "k": K,
        "dim": D,
        "sklearn_predict_seconds": t_sk,
        "slmtok_assign_seconds": t_ours,
        "ratio_one_call": t_sk / t_ours,
        "agreement_with_sklearn": float((labels.numpy() == labels_sk).mean()),
        "per_utterance": {
            "utterances": n_utt,
            "frames_each": 500,
            "sklearn_predict_seconds": t_sk_utt,
            "slmtok_assign_seconds": t_ours_utt,
            "ratio": t_sk_utt / t_ours_utt,
        },
        **_machine(threads),
    }


def report() -> dict:
    sk = json.loads((RESULTS / "semantic_kmeans_fit-sklearn.json").read_text())
    fa = json.loads((RESULTS / "semantic_kmeans_fit-faiss.json").read_text())
    out = {"sklearn": sk, "faiss": fa, "comparison": []}
    methods: dict[str, list[dict]] = {}
    for run in fa["runs"]:
        methods.setdefault(run["method"], []).append(run)
    for method, runs in methods.items():
        seconds = [r["seconds"] for r in runs]
        gaps = [100.0 * (r["inertia_per_frame"] / sk["inertia_per_frame"] - 1.0) for r in runs]
        out["comparison"].append(
            {
                "method": method,
                "seeds": [r.get("seed", 0) for r in runs],
                "speedup_vs_sklearn": [sk["seconds"] / s for s in seconds],
                "speedup_vs_sklearn_of_mean_time": sk["seconds"] / (sum(seconds) / len(seconds)),
                "inertia_vs_sklearn_percent": gaps,
                "inertia_vs_sklearn_percent_mean": sum(gaps) / len(gaps),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["fit-sklearn", "fit-faiss", "assign", "report"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--n-iter", type=int, nargs="+", default=[10, 20], help="FAISS Lloyd iterations (runs)"
    )
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--refine", type=int, default=0, help="FAISS iterations on all frames afterwards")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one FAISS run per seed")
    parser.add_argument(
        "--points-per-centroid", type=int, default=N // K + 1, help="FAISS subsample: K x this many frames"
    )
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames to assign (default 1M)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    if args.step == "fit-sklearn":
        result = fit_sklearn(args.threads)
    elif args.step == "fit-faiss":
        result = fit_faiss(
            args.threads, args.n_iter, args.restarts, args.points_per_centroid, args.seeds, args.refine
        )
    elif args.step == "assign":
        result = assign(args.threads, args.frames)
    else:
        result = report()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"semantic_kmeans_{args.step}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
