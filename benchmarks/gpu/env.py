"""Environment check: torch and its CUDA, FAISS and its GPU build, and whether both run in one process.

``probe()`` runs in a child process (``python env.py``) so that a FAISS GPU build that crashes next to
torch's CUDA (e.g. faiss-gpu built for CUDA 12 beside torch built for CUDA 13) is reported, not fatal.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _requires(dist: str) -> list[str] | None:
    try:
        return metadata.requires(dist)
    except metadata.PackageNotFoundError:
        return None


def _cuda_runtime_wheels() -> dict[str, str]:
    """Installed ``nvidia-*`` runtime wheels (their names carry the CUDA major, e.g. ``-cu12``)."""
    out = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("nvidia-cuda-runtime") or name.startswith("nvidia-cublas"):
            out[name] = dist.version
    return out


def probe() -> dict[str, Any]:
    """Versions, GPU builds, and one tiny GPU op each of torch and FAISS in this one process."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "packages": {
            name: _version(name)
            for name in ("faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu13", "faiss-cpu", "ray", "nvidia-ml-py")
        },
        "cuda_runtime_wheels": _cuda_runtime_wheels(),
        "faiss_gpu_requires": [r for r in (_requires("faiss-gpu") or []) if "nvidia" in r],
    }
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "bf16": torch.cuda.is_bf16_supported(),
            "count": torch.cuda.device_count(),
        }
    try:
        import faiss

        info["faiss"] = {
            "version": faiss.__version__,
            "compile_options": faiss.get_compile_options(),
            "gpu_build": hasattr(faiss, "StandardGpuResources"),
            "num_gpus": faiss.get_num_gpus(),
        }
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        info["faiss"] = {"error": f"{type(exc).__name__}: {exc}"}
    info["coexist"] = _coexist(info)
    return info


def _coexist(info: dict[str, Any]) -> dict[str, Any]:
    """Run a torch CUDA matmul, a FAISS GPU search, and torch again, in this process."""
    if not info["cuda_available"]:
        return {"tested": False, "why": "no CUDA device: torch + FAISS GPU in one process not tested"}
    faiss_info = info.get("faiss", {})
    if "error" in faiss_info or not faiss_info.get("gpu_build"):
        return {"tested": False, "ok": False, "why": "FAISS has no GPU build here"}
    import faiss
    import numpy as np
    import torch

    steps = {}
    try:
        a = torch.randn(256, 256, device="cuda")
        steps["torch_before"] = float((a @ a).sum().item()) == float((a @ a).sum().item())
        if faiss.get_num_gpus() < 1:
            return {
                "tested": True,
                "ok": False,
                "why": "faiss.get_num_gpus() == 0 beside torch's CUDA",
                **steps,
            }
        res = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatL2(res, 16)
        x = np.random.default_rng(0).standard_normal((100, 16)).astype("float32")
        index.add(x)
        _, ids = index.search(x[:5], 1)
        steps["faiss_gpu_search_exact"] = bool((ids[:, 0] == np.arange(5)).all())
        steps["torch_after"] = bool(torch.isfinite((a @ a).sum()).item())
        return {"tested": True, "ok": all(steps.values()), **steps}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"tested": True, "ok": False, "error": f"{type(exc).__name__}: {exc}", **steps}


def check(timeout: float = 180) -> dict[str, Any]:
    """``probe()`` in a child process; a crash or hang comes back as an error record."""
    try:
        done = subprocess.run(
            [sys.executable, __file__], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"environment probe did not finish in {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"environment probe exited {done.returncode}: {done.stderr.strip()[-800:]}"}
    return json.loads(lines[-1])


if __name__ == "__main__":
    print(json.dumps(probe()))
