"""One command that measures every GPU claim of slmtok (issue #13), each beside its reference.

    python benchmarks/gpu_suite.py --device cuda                      # the full suite, <= 8 min on an H100/H200
    python benchmarks/gpu_suite.py --device cpu --smoke               # tiny sizes, end to end on the CPU (CI)
    python benchmarks/gpu_suite.py --device cuda --only P1 P2 --budget-minutes 3

Sections (each a JSON record with ``device``, its figures and its ``target``):

- ``env``: torch and its CUDA, FAISS and its GPU build, and whether both run in one process;
- ``gpu_tests``: ``pytest -m gpu`` (``tests/test_gpu.py``), pass/fail counts;
- ``P1`` k-means fit: FAISS on the device vs FAISS CPU (2 threads) vs the fairseq scikit-learn recipe;
- ``P2`` assignment: ``KMeans.assign`` on the device vs scikit-learn ``predict`` (2 threads);
- ``P6`` HuBERT Base/Large features: x real time at layers 6/9/12;
- ``P5`` LM trainer: tokens/s and MFU of a ~100M-parameter model (bf16, ``torch.compile``);
- ``P8`` ``encode-corpus`` with a codec: audio hours per hour and GPU utilisation, local vs Ray;
- ``P3`` codec encoding: slmtok batched vs the upstream package per file, same weights, codes compared
  (last: the longest section, it starts codecs while budget is left).

A target's ``met`` is ``true``/``false`` only for a full-size run on a GPU; on the CPU or at smoke sizes
it is ``null`` (a CPU figure never stands for a GPU claim). Sections run in the order above; once the
``--budget-minutes`` are spent no new section (nor codec, nor HuBERT variant) starts, and the skipped
ones are listed. A section that fails is recorded with its error and the others still run. Results go
to ``benchmarks/results/gpu/<device>[-smoke]-<UTC time>.json`` and ``latest-<device>[-smoke].json``.
Installs nothing: it uses only what ``pip install slmtok[test,ray]`` brings (NVML through ``pynvml`` if
present, else ``nvidia-smi``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the section modules live in benchmarks/gpu/, the shared ones in benchmarks/
    sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "gpu"))

SECTIONS = ("env", "gpu_tests", "P1", "P2", "P6", "P5", "P8", "P3")
RESULTS = HERE / "results" / "gpu"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], required=True, help="where the claims run")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU CI); never a GPU figure")
    parser.add_argument("--budget-minutes", type=float, default=8.0, help="start no section after this")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections (env always)")
    parser.add_argument("--sklearn-live", action="store_true",
                        help="P1: run the scikit-learn recipe here (~16 min on 2 cores) instead of reading "
                        "the recorded 2-core figure")  # fmt: skip
    parser.add_argument("--no-ray", action="store_true", help="P8: local engine only (Ray starts in ~20 s)")
    parser.add_argument("--cpu-threads", type=int, default=2, help="threads of the CPU references (2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_suite: error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 1
    if args.budget_minutes <= 0 or args.cpu_threads < 1:
        print("gpu_suite: error: --budget-minutes must be > 0 and --cpu-threads >= 1", file=sys.stderr)
        return 1
    from common import Context, Sizes

    sizes = Sizes.smoke() if args.smoke else Sizes()
    if args.no_ray:
        sizes = dataclasses.replace(sizes, corpus_ray=False)
    start = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    budget_s = args.budget_minutes * 60

    def over_budget() -> bool:
        return time.perf_counter() - start > budget_s

    with tempfile.TemporaryDirectory(prefix="slmtok-gpu-suite-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ctx = Context(args.device, sizes, args.smoke, work, HERE.parent, cpu_threads=args.cpu_threads)
        result: dict[str, Any] = {
            "suite": "slmtok GPU suite (issue #13)",
            "device": args.device,
            "smoke": args.smoke,
            "label": "CPU SMOKE RUN: tiny sizes, no GPU figure"
            if args.device == "cpu" or args.smoke
            else "GPU run at the issue's sizes",
            "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "budget_minutes": args.budget_minutes,
            "sizes": sizes.to_dict(),
            "sections": {},
            "skipped_for_budget": [],
            "complete": False,  # true once every section has run or been skipped
        }
        for name in SECTIONS:
            if args.only and name != "env" and name not in args.only:
                result["sections"][name] = {"status": "not requested", "device": args.device}
                continue
            if name != "env" and over_budget():
                result["skipped_for_budget"].append(name)
                result["sections"][name] = {"status": "skipped: over budget", "device": args.device}
                continue
            crashed = result["sections"].get("env", {}).get("error")
            if name == "P1" and args.device == "cuda" and crashed:
                result["sections"][name] = {"status": f"skipped: the environment probe crashed ({crashed[:200]}); "
                                            "FAISS GPU next to torch's CUDA would take this process down",
                                            "device": args.device}  # fmt: skip
                continue
            print(f"gpu_suite: {name} ...", file=sys.stderr, flush=True)
            began = time.perf_counter()
            try:
                record = {
                    "status": "ran",
                    **run_section(name, ctx, args, over_budget, budget_s - (began - start)),
                }
            except Exception as exc:  # noqa: BLE001 - recorded; the remaining sections still run
                record = {"status": "error", "device": args.device, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()[-3000:]}  # fmt: skip
            record["seconds"] = time.perf_counter() - began
            result["sections"][name] = record
            print(f"gpu_suite: {name} {record['status']} in {record['seconds']:.1f} s", file=sys.stderr)
            write(result, args.out, stamp)  # after every section: a crash later still leaves these figures
            if args.device == "cuda":
                torch.cuda.empty_cache()
        result["total_seconds"] = time.perf_counter() - start
        result["summary"] = summary(result)
        result["complete"] = True
    path = write(result, args.out, stamp)
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {path}")
    return 0


def run_section(name: str, ctx, args: argparse.Namespace, over_budget, left_s: float) -> dict[str, Any]:
    if name == "env":
        import env

        info = env.probe() if ctx.device == "cpu" else env.check()  # CUDA: in a child, a crash is a record
        return {"device": ctx.device, **info}
    if name == "gpu_tests":
        from tests_section import gpu_tests

        return gpu_tests(ctx, timeout=max(30.0, min(ctx.sizes.gpu_tests_timeout_s, left_s)))
    if name in ("P1", "P2"):
        import kmeans_sections

        return (
            kmeans_sections.p1_fit(ctx, args.sklearn_live) if name == "P1" else kmeans_sections.p2_assign(ctx)
        )
    if name == "P3":
        from codec_section import p3_codecs

        return p3_codecs(ctx, over_budget)
    if name == "P5":
        from lm_section import p5_lm

        return p5_lm(ctx)
    if name == "P6":
        from hubert_section import p6_hubert

        return p6_hubert(ctx, over_budget)
    from corpus_section import p8_corpus

    return p8_corpus(ctx, over_budget)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """One line per section: status, and for the P sections the target's ``met`` and values."""
    out = {}
    for name, record in result["sections"].items():
        row: dict[str, Any] = {"status": record["status"]}
        if "target" in record:
            row.update(met=record["target"]["met"], values=record["target"]["values"])
        if name == "gpu_tests" and "collected" in record:
            row.update({k: record[k] for k in ("collected", "passed", "failure", "error", "skipped")})
        if name == "env" and "coexist" in record:
            row["torch_and_faiss_gpu_in_one_process"] = record["coexist"]
        out[name] = row
    return out


def write(result: dict[str, Any], folder: Path, stamp: str) -> Path:
    """``<device>[-smoke]-<stamp>.json`` and ``latest-<device>[-smoke].json``, each written atomically."""
    from slmtok.atomic import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    kind = result["device"] + ("-smoke" if result["smoke"] or result["device"] == "cpu" else "")
    text = json.dumps(result, indent=1, default=str) + "\n"
    path = folder / f"{kind}-{stamp}.json"
    for target in (path, folder / f"latest-{kind}.json"):
        with atomic_path(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return path


if __name__ == "__main__":
    sys.exit(main())
