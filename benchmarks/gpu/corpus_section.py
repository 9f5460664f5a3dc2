"""P8: ``encode-corpus`` with a codec on the device, local engine vs Ray (one GPU actor): audio hours
per hour, and GPU utilisation sampled while it runs (NVML through ``pynvml``/``nvidia-ml-py``, else
``nvidia-smi``; "not measured" when neither exists). NVML's utilisation is the share of time a kernel
was running on the GPU, over its own sampling period.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import torch
from common import Context, device_name, target, utterances


class UtilisationSampler:
    """Samples GPU utilisation (percent) every ``period`` seconds in a thread between start and stop."""

    def __init__(self, period: float = 0.1) -> None:
        self.period, self.samples = period, []
        self.source, self._read = self._reader()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _reader():
        if not torch.cuda.is_available():
            return "not measured: no CUDA device", None
        index = torch.cuda.current_device()
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            return "nvml (pynvml)", lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # noqa: BLE001 - fall back to nvidia-smi
            pass
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return "not measured: no NVML (pynvml) and no nvidia-smi", None
        command = [smi, "-i", str(index), "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        return "nvidia-smi", lambda: float(subprocess.run(command, capture_output=True, text=True).stdout)

    def __enter__(self) -> UtilisationSampler:
        if self._read is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a failed read is a missing sample
                self.samples.append(self._read())
            self._stop.wait(self.period)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"source": self.source, "mean_percent": None, "samples": 0}
        return {
            "source": self.source,
            "mean_percent": statistics.fmean(self.samples),
            "median_percent": statistics.median(self.samples),
            "max_percent": max(self.samples),
            "samples": len(self.samples),
        }


def write_corpus(folder: Path, count: int, seconds: tuple[float, float]) -> float:
    """``count`` 16 kHz WAV files of real speech; returns their total duration in seconds."""
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i, wav in enumerate(utterances(count, seconds, seed=2)):
        soundfile.write(folder / f"utt{i:05d}.wav", wav.numpy(), 16000, subtype="PCM_16")
        total += wav.numel() / 16000
    return total


def _encode(ctx: Context, corpus: Path, out: Path, engine: str, options: dict) -> dict[str, Any]:
    from slmtok.corpus import encode_corpus

    kwargs = {"actors": 1} if engine == "ray" else {}
    with UtilisationSampler() as sampler:
        start = time.perf_counter()
        summary = encode_corpus([str(corpus)], out, tokenizer=ctx.sizes.corpus_codec, options=options,
                                engine=engine, device=ctx.device, **kwargs)  # fmt: skip
        elapsed = time.perf_counter() - start
    return {
        "engine": engine,
        "encoded": summary["encoded"],
        "audio_seconds": summary["audio_seconds"],
        "wall_s": elapsed,  # Ray: its start-up (ray.init, actor, model load) included
        "audio_hours_per_hour": summary["audio_seconds"] / elapsed,
        "gpu_utilisation": sampler.summary(),
    }


def _same_codes(a: Path, b: Path) -> bool:
    from slmtok.corpus import iter_items

    left = {row["id"]: tokens.codes for row, tokens in iter_items(a)}
    right = {row["id"]: tokens.codes for row, tokens in iter_items(b)}
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def p8_corpus(ctx: Context, over_budget) -> dict[str, Any]:
    from codec_section import _standin

    s = ctx.sizes
    checkpoint = _standin(s.corpus_codec, ctx.work / "codecs", s.codec_tiny)
    options = {"checkpoint": list(checkpoint) if isinstance(checkpoint, tuple) else checkpoint}
    corpus = ctx.work / "corpus"
    seconds = write_corpus(corpus, s.corpus_files, s.codec_seconds)
    runs, not_measured = {}, {}
    for engine in ("local", "ray"):
        if engine == "ray" and not s.corpus_ray:
            not_measured[engine] = (
                "not requested (--no-ray); the Ray engine's codes are tested in tests/test_corpus.py"
            )
        elif engine == "ray" and not _has_ray():
            not_measured[engine] = "Ray is not installed (pip install 'slmtok[ray]')"
        elif over_budget():
            not_measured[engine] = "skipped: over budget"
        else:
            try:
                runs[engine] = _encode(ctx, corpus, ctx.work / f"tokens-{engine}", engine, options)
            except Exception as exc:  # noqa: BLE001 - recorded; the other engine still runs
                not_measured[engine] = f"{type(exc).__name__}: {exc}"
    if len(runs) == 2:
        runs["ray"]["codes_equal_local"] = _same_codes(ctx.work / "tokens-local", ctx.work / "tokens-ray")
    util = [r["gpu_utilisation"]["mean_percent"] for r in runs.values()]
    best = max((u for u in util if u is not None), default=None)
    return {
        "device": ctx.device,
        "device_name": device_name(ctx.device),
        "tokenizer": s.corpus_codec,
        "weights": "random stand-in, " + ("narrow test size" if s.codec_tiny else "published size"),
        "corpus": {"files": s.corpus_files, "audio_seconds": seconds},
        "runs": runs,
        "not_measured": not_measured,
        "target": target(
            ctx,
            "GPU utilisation >= 80 % during encode-corpus with a codec (best engine; both reported)",
            {"gpu_utilisation_mean_percent": (best, lambda v: v >= 80)},
        ),
    }


def _has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None
