"""Cost metrics: real-time factor, peak memory, parameter count, and a name for the device they ran on.

Timings mean nothing without the machine: every figure the bench reports is stored next to
``device_name(device)`` (CPU model and torch threads, or the GPU's name).
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Iterable
from typing import Any

import torch


def real_time_factor(compute_seconds: float, audio_seconds: float) -> float:
    """Seconds of compute per second of audio (below 1 is faster than real time)."""
    if audio_seconds <= 0:
        raise ValueError(f"audio_seconds must be positive, got {audio_seconds}")
    return compute_seconds / audio_seconds


def cpu_name() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str | torch.device = "cpu") -> str:
    """Human-readable device: ``"cpu: <model>, N cores, T torch threads"`` or ``"cuda:0: <GPU name>"``."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}: {torch.cuda.get_device_name(index)}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu: {cpu_name()}, {cores} cores, {torch.get_num_threads()} torch threads"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Context manager measuring the peak memory a block adds, in bytes (``.peak_bytes``).

    On CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated on entry (exact, tensors only).
    On CPU: the process's peak resident set size minus the value on entry. On Linux the kernel's own
    high-water mark is reset on entry and read on exit (``/proc/self/clear_refs``, ``VmHWM``), so no
    spike is missed; elsewhere the RSS is sampled every ``interval`` s by a thread (which can miss spikes
    shorter than that). Either way it counts every allocation of the process, and is 0 when the block
    reuses memory already held.
    """

    def __init__(self, device: str | torch.device = "cpu", interval: float = 0.005) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        self._kernel_peak = _reset_peak_rss()
        self._start = self._peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = max(0, torch.cuda.max_memory_allocated(self.device) - self._start)
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        if self._kernel_peak:
            self._peak = max(self._peak, _peak_rss_bytes())
        self.peak_bytes = max(0, self._peak - self._start)


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux ``clear_refs`` 5); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """The kernel's resident-set high-water mark since the last reset (``VmHWM``), in bytes; 0 if unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Timer:
    """Context manager: wall-clock seconds of a block (``.seconds``), synchronising CUDA on exit."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def _tensors(obj: Any, seen: set[int], depth: int) -> Iterable[torch.Tensor]:
    if id(obj) in seen or depth < 0:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, torch.nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item, seen, depth - 1)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item, seen, depth - 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for item in vars(obj).values():
            yield from _tensors(item, seen, depth - 1)


def count_parameters(obj: Any, *, include_buffers: bool = False, max_depth: int = 4) -> int:
    """Numbers held as model weights by ``obj`` (a tokenizer, module, or any object holding them).

    Walks attributes (``max_depth`` levels) for ``nn.Module`` parameters and plain float tensors
    (codebooks, centroids), each counted once. Buffers of modules (running statistics, fixed filters)
    count only with ``include_buffers``; integer tensors (indices) never count.
    """
    if isinstance(obj, torch.nn.Module) and not include_buffers:
        return sum(p.numel() for p in obj.parameters())
    seen_storage: set[tuple[int, int]] = set()
    buffers: set[int] = set()
    if not include_buffers:
        for item in _walk_modules(obj, set(), max_depth):
            buffers.update(id(b) for b in item.buffers())
    total = 0
    for t in _tensors(obj, set(), max_depth):
        if not t.is_floating_point() and not t.is_complex() or id(t) in buffers:
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (id(t), 0)
        if key in seen_storage:
            continue
        seen_storage.add(key)
        total += t.numel()
    return total


def _walk_modules(obj: Any, seen: set[int], depth: int) -> Iterable[torch.nn.Module]:
    if id(obj) in seen or depth < 0:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        yield obj
        return
    values: Iterable[Any] = ()
    if isinstance(obj, (list, tuple)):
        values = obj
    elif isinstance(obj, dict):
        values = obj.values()
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.Tensor)):
        values = vars(obj).values()
    for item in values:
        yield from _walk_modules(item, seen, depth - 1)
