"""What every section of the GPU suite shares: sizes, timing with CUDA sync, the result record, audio."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run: ``full`` (the issue's sizes, for one H100/H200) or ``smoke`` (CPU CI)."""

    kmeans_frames: int = 200_000  # P1: frames fitted on every side
    kmeans_k: int = 500
    kmeans_big_frames: int = 2_000_000  # P1: GPU-only fit
    kmeans_n_iter: int = 20
    assign_frames: int = 10_000_000  # P2: frames assigned on the device
    assign_sklearn_frames: int = 1_000_000  # P2: the prefix scikit-learn predicts (same frames)
    codec_utterances: int = 1000  # P3
    codec_seconds: tuple[float, float] = (1.0, 20.0)
    codec_tiny: bool = False  # random weights at narrow test size (smoke) instead of the published size
    codecs: tuple[str, ...] = ("encodec-24khz", "dac-16khz", "speechtokenizer", "snac-24khz")
    lm_config: str = "base"  # P5 (~85M parameters + embeddings)
    lm_block: int = 1024
    lm_batch: int = 16
    lm_steps: int = 40
    lm_log_every: int = 10
    lm_compile: bool = True
    hubert_variants: tuple[str, ...] = ("hubert-base", "hubert-large")  # P6
    hubert_layers: tuple[int, ...] = (6, 9, 12)
    hubert_utterances: int = 200
    hubert_seconds: tuple[float, float] = (1.0, 20.0)
    hubert_batch: int = 16
    corpus_files: int = 400  # P8
    corpus_codec: str = "encodec-24khz"
    corpus_ray: bool = True  # also run the Ray engine (one GPU actor)
    gpu_tests_timeout_s: int = 240

    @classmethod
    def smoke(cls) -> Sizes:
        """Tiny sizes that run end to end on 2 CPU cores in well under a minute."""
        return cls(
            kmeans_frames=2000,
            kmeans_k=8,
            kmeans_big_frames=0,
            kmeans_n_iter=4,
            assign_frames=20_000,
            assign_sklearn_frames=5000,
            codec_utterances=2,
            codec_seconds=(0.4, 0.8),
            codec_tiny=True,
            lm_config="tiny",
            lm_block=64,
            lm_batch=2,
            lm_steps=4,
            lm_log_every=1,
            lm_compile=False,
            hubert_variants=("hubert-base",),
            hubert_utterances=2,
            hubert_seconds=(0.3, 0.5),
            hubert_batch=2,
            corpus_files=3,
            gpu_tests_timeout_s=120,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    """Where and how a section runs: ``device`` (``cpu`` / ``cuda``), sizes, a scratch folder, the clock."""

    device: str
    sizes: Sizes
    smoke: bool
    work: Any  # pathlib.Path
    repo: Any  # pathlib.Path
    cpu_threads: int = 2  # threads of the CPU references ("on 2 cores" in the targets)
    notes: list[str] = field(default_factory=list)

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


def sync(device: str) -> None:
    """Wait for queued CUDA work, so wall-clock timings hold the whole computation."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def timed(device: str) -> Iterator[dict[str, float]]:
    """``with timed(dev) as t: ...`` then ``t["s"]``: wall seconds, CUDA work included."""
    out: dict[str, float] = {}
    sync(device)
    start = time.perf_counter()
    try:
        yield out
    finally:
        sync(device)
        out["s"] = time.perf_counter() - start


def device_name(device: str) -> str:
    """``torch.cuda.get_device_name`` on CUDA, else ``cpu (<machine>)``."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"


def target(ctx: Context, text: str, checks: dict[str, tuple[float | None, Callable[[float], bool]]]) -> dict:
    """The target record: each check ``name -> (value, predicate)``; ``met`` only for a full GPU run.

    On the CPU (or at smoke sizes) ``met`` is ``None``: a CPU figure never stands for a GPU claim.
    """
    values = {name: value for name, (value, _) in checks.items()}
    if not ctx.on_gpu or ctx.smoke:
        why = "ran on the CPU" if not ctx.on_gpu else "smoke sizes"
        return {"text": text, "values": values, "met": None, "not_judged": f"{why}: not a GPU figure"}
    missing = [name for name, (value, _) in checks.items() if value is None]
    if missing:
        return {"text": text, "values": values, "met": False, "not_judged": f"not measured: {missing}"}
    each = {name: bool(ok(value)) for name, (value, ok) in checks.items()}
    return {"text": text, "values": values, "each": each, "met": all(each.values())}


def speech_pool(count: int = 48) -> list[torch.Tensor]:
    """``count`` real prompts (16 kHz mono ``[T]``, >= 0.5 s) taken in turn from four talkers."""
    import slmtok
    from slmtok.corpora import asterisk_prompts

    files = {lang: asterisk_prompts(lang) for lang in ("en", "fr", "it", "ru")}
    out: list[torch.Tensor] = []
    index = 0
    while len(out) < count and index < 500:
        for lang in files:
            if index < len(files[lang]) and len(out) < count:
                try:
                    wav, rate = slmtok.read_audio(files[lang][index])
                except slmtok.AudioError:
                    continue
                if rate == 16000 and wav.shape[-1] >= rate // 2:
                    out.append(wav[0])
        index += 1
    return out


def utterances(count: int, seconds: tuple[float, float], seed: int = 0) -> list[torch.Tensor]:
    """``count`` utterances (16 kHz ``[T]``) of uniformly drawn lengths in ``seconds``: real prompts of
    four talkers joined end to end and cut to length (seeded)."""
    pool = speech_pool()
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        n = int((seconds[0] + (seconds[1] - seconds[0]) * float(torch.rand((), generator=g))) * 16000)
        parts, have = [], 0
        while have < n:
            clip = pool[int(torch.randint(len(pool), (), generator=g))]
            parts.append(clip)
            have += clip.numel()
        out.append(torch.cat(parts)[:n].clone())
    return out
