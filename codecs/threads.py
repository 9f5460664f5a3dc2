"""Run work on dedicated threads that each use one intra-op thread, without touching any other thread.

``torch.set_num_threads`` is process-wide state: besides the calling thread's OpenMP setting it stores
ATen's global default, which every thread that starts using torch later picks up (called from a worker,
it leaves new threads on one thread for the rest of the process). A library must not change that.

With ATen's OpenMP backend (the PyTorch wheels) the intra-op thread count a kernel uses is the calling
thread's own OpenMP ``nthreads`` setting (``omp_get_max_threads``), and MKL's BLAS takes a thread-local
count (``mkl_set_num_threads_local``) over its global one. So each pool thread here first lets ATen run
its per-thread initialisation (``torch.get_num_threads()``, which would otherwise reset the setting on
the thread's first parallel kernel), then sets both per-thread values to 1 through the C functions that
``libtorch_cpu`` itself links. The caller's thread, ATen's global default and every other thread keep
their settings; the pool threads end with the call.

Where those functions are not found (a torch build without OpenMP or without MKL), the missing setting
is left alone and ``one_thread_here`` reports whether the thread ended up on one intra-op thread.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


@functools.cache
def _native_setters() -> tuple[Any, Any]:
    """``omp_set_num_threads`` and MKL's C ``mkl_set_num_threads_local`` as resolved from
    ``libtorch_cpu`` (the OpenMP runtime and MKL torch runs on), or ``None`` each where absent."""
    for path in sorted((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*")):
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        omp = getattr(lib, "omp_set_num_threads", None)
        # the mixed-case name is MKL's C interface (by value); the lower-case export is the Fortran one
        mkl = getattr(lib, "MKL_Set_Num_Threads_Local", None)
        if omp is not None:
            omp.argtypes, omp.restype = [ctypes.c_int], None
        if mkl is not None:
            mkl.argtypes, mkl.restype = [ctypes.c_int], ctypes.c_int
        return omp, mkl
    return None, None


def one_thread_here() -> bool:
    """Put the *calling* thread (only) on one intra-op thread; return whether torch now reports 1.

    Meant for threads this module starts: it never calls ``torch.set_num_threads``."""
    torch.get_num_threads()  # ATen's lazy per-thread init first, so it cannot undo what follows
    omp, mkl = _native_setters()
    if omp is not None:
        omp(1)
    if mkl is not None:
        mkl(1)
    return torch.get_num_threads() == 1


def map_single_threaded(work: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[work(x) for x in items]``, run on up to ``workers`` new threads that each use one intra-op
    thread (``one_thread_here``), in order. The caller's grad / inference mode is carried over (it is
    per thread in torch). No thread but the pool's own changes any setting."""
    inference = torch.is_inference_mode_enabled()
    grad = torch.is_grad_enabled()

    def run(x: T) -> R:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return work(x)

    with ThreadPoolExecutor(
        max_workers=max(1, min(workers, len(items))), initializer=one_thread_here
    ) as pool:
        return list(pool.map(run, items))
