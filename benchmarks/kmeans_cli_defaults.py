"""K-means fit with the ``slmtok kmeans fit`` defaults on real speech features, vs the fairseq recipe.

    python benchmarks/kmeans_cli_defaults.py [--languages en fr it ru] [--threads 2]

Data: real features — slmtok's ``mfcc`` extractor (Kaldi MFCC + deltas, 39 dims at 100 Hz, as in fairseq's
``dump_mfcc_feature.py``) over every Asterisk G.722 prompt (16 kHz studio speech) of the languages asked
for. This is the first iteration of the HuBERT recipe (MFCC features, K=100), so both sides are run on a
problem people really solve. (No pretrained HuBERT can be downloaded here, so HuBERT features of real
speech are not available; ``semantic_kmeans.py`` measures the HuBERT-sized problem on synthetic frames.)

Both sides fit the same feature matrix (extraction is timed apart):
- reference: scikit-learn ``MiniBatchKMeans`` with fairseq's ``learn_kmeans.py`` settings
  (``slmtok.kmeans.sklearn_backend.RECIPE``), K = the CLI's default ``-k``;
- slmtok: ``fit_stream`` with every setting taken from the ``slmtok kmeans fit`` parser's defaults
  (backend, restarts, iterations, refine iterations, frame budget, seed), as the command runs it.
Inertia is per frame over all frames, computed the same way (exact nearest centroid) for both.
Writes ``benchmarks/results/kmeans_cli_defaults.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cli_defaults() -> dict:
    """The defaults of ``slmtok kmeans fit``, read from the real argument parser."""
    from slmtok.cli.main import build_parser

    args = build_parser().parse_args(["kmeans", "fit", "corpus", "-o", "out", "--features", "mfcc"])
    return {
        "clusters": args.clusters,
        "backend": args.backend,
        "restarts": args.restarts,
        "iterations": args.iterations,
        "refine_iterations": args.refine_iterations,
        "max_frames": args.max_frames,
        "seed": args.seed,
    }


def mfcc_frames(languages: list[str]):
    """``[N, 39]`` float32 MFCC frames of every prompt, and (files, seconds of audio)."""
    import numpy as np
    import torch

    from slmtok.audio import read_audio
    from slmtok.corpora import asterisk_prompts
    from slmtok.errors import AudioError
    from slmtok.registry import FEATURES

    features = FEATURES.create("mfcc", device=torch.device("cpu"))
    chunks, files, seconds = [], 0, 0.0
    for language in languages:
        for path in asterisk_prompts(language):
            try:
                wav, rate = read_audio(path)
            except AudioError:  # a few prompts are empty files
                continue
            seconds += wav.shape[-1] / rate
            files += 1
            if rate != features.sample_rate:
                raise SystemExit(f"{path}: {rate} Hz, expected {features.sample_rate} Hz (G.722 prompts)")
            chunks.append(features(wav.mean(0)).numpy().astype(np.float32, copy=False))
    return np.concatenate(chunks), files, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", nargs="+", default=["en", "fr", "it", "ru"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import faiss
    import torch

    from slmtok.kmeans import KMeans
    from slmtok.kmeans.sklearn_backend import RECIPE, fit_sklearn
    from slmtok.kmeans.stream import fit_stream

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    defaults = cli_defaults()
    k = defaults["clusters"]

    start = time.perf_counter()
    x, files, audio_seconds = mfcc_frames(args.languages)
    extract_seconds = time.perf_counter() - start
    print(f"{x.shape[0]} frames x {x.shape[1]} from {files} files ({audio_seconds / 60:.1f} min)", flush=True)

    def inertia(centroids) -> float:
        return KMeans(torch.as_tensor(centroids)).inertia(x) / x.shape[0]

    start, cpu = time.perf_counter(), time.process_time()
    centroids, info = fit_sklearn(x, k, seed=defaults["seed"])
    sk = {
        "method": "scikit-learn MiniBatchKMeans, fairseq learn_kmeans.py settings",
        "settings": RECIPE,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "inertia_per_frame": inertia(centroids),
        "n_iter": info.get("n_iter"),
    }
    print(json.dumps(sk), flush=True)

    start, cpu = time.perf_counter(), time.process_time()
    km = fit_stream(
        [x],
        k,
        budget=defaults["max_frames"],
        restarts=defaults["restarts"],
        backend=defaults["backend"],
        seed=defaults["seed"],
        n_iter=defaults["iterations"],
        refine_iter=defaults["refine_iterations"],
    )
    ours = {
        "method": "slmtok kmeans fit defaults (fit_stream with the parser's defaults)",
        "settings": defaults,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "inertia_per_frame": inertia(km.centroids.numpy()),
        "frames_fitted": km.info["n_samples"],
    }
    print(json.dumps(ours), flush=True)

    result = {
        "data": {
            "kind": "real speech",
            "corpus": f"Asterisk G.722 prompts ({', '.join(args.languages)}), 16 kHz",
            "files": files,
            "audio_minutes": audio_seconds / 60,
            "features": "slmtok mfcc (39 dims, 100 Hz)",
            "frames": int(x.shape[0]),
            "extract_seconds": extract_seconds,
        },
        "k": k,
        "sklearn": sk,
        "slmtok": ours,
        "speedup_vs_sklearn": sk["seconds"] / ours["seconds"],
        "inertia_vs_sklearn_percent": 100.0 * (ours["inertia_per_frame"] / sk["inertia_per_frame"] - 1.0),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "threads": args.threads,
        "load_average_at_end": os.getloadavg(),
        "command": "python benchmarks/kmeans_cli_defaults.py "
        + " ".join(["--languages", *args.languages, "--threads", str(args.threads)]),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kmeans_cli_defaults.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("speedup_vs_sklearn", "inertia_vs_sklearn_percent")}, indent=2))


if __name__ == "__main__":
    main()
