"""Where a vocoder training process runs: device, arithmetic, and its place in a torchrun process group.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process joins one group (NCCL on GPUs, one per local rank;
gloo on CPU) and trains on its rows of each step's batch; DDP averages the gradients, so ``world``
processes with ``B / world`` rows each take the step one process takes with all ``B`` rows.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from slmtok.errors import SlmtokError

PRECISIONS = ("bf16", "fp32")


@dataclass(frozen=True)
class Placement:
    """One process's ``rank`` of ``world``, its ``device``, and its ``precision``: ``"bf16"`` (autocast of
    the generator and discriminator forward passes; weights, optimizer, STFT and losses stay fp32) or
    ``"fp32"``."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> Any:
        """The context of the forward passes: bf16 autocast, or nothing in fp32."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records (a resume under another world size, device type or precision is
        refused: its batches or its arithmetic would not be the run's)."""
        return {"world_size": self.world, "device_type": self.device.type, "precision": self.precision}


def resolve_device(requested: str) -> torch.device:
    """``"auto"`` (CUDA when there is one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; one clear error when the
    device does not exist here."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise SlmtokError(f"unknown device {requested!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SlmtokError(f"--device {requested}: no CUDA GPU is usable here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SlmtokError(f"--device {requested}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    elif device.type != "cpu":
        raise SlmtokError(f"unsupported device {requested!r}; use cpu, cuda, cuda:N or auto")
    return device


def resolve_precision(requested: str | None, device: torch.device) -> str:
    """``None`` picks bf16 on a GPU that has it, else fp32. bf16 on CPU is allowed (it runs, with fp32
    master weights, and is fast only on processors with bf16 units)."""
    if requested is None:
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if bf16 else "fp32"
    if requested not in PRECISIONS:
        raise SlmtokError(f"unknown precision {requested!r}; use {' or '.join(PRECISIONS)}")
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SlmtokError(f"{torch.cuda.get_device_name(device)} has no bf16; use --precision fp32")
    return requested


def setup(device: str = "auto", precision: str | None = None) -> Placement:
    """This process's placement; joins the torchrun process group when ``WORLD_SIZE`` > 1."""
    import torch.distributed as dist

    where = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Placement(0, 1, where, resolve_precision(precision, where))
    if where.type == "cuda":
        where = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if where.index >= torch.cuda.device_count():
            raise SlmtokError(
                f"local rank {where.index} has no GPU ({torch.cuda.device_count()} here); "
                "start at most one process per GPU"
            )
        torch.cuda.set_device(where)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
    return Placement(dist.get_rank(), dist.get_world_size(), where, resolve_precision(precision, where))


def barrier(placement: Placement) -> None:
    """Wait for every process (nothing in a single process)."""
    if placement.world > 1:
        import torch.distributed as dist

        dist.barrier()


def all_sum(tensor: torch.Tensor, placement: Placement) -> torch.Tensor:
    """``tensor`` summed over the processes, in place (gloo has no average); unchanged in one process."""
    if placement.world > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def wrap(module: torch.nn.Module, placement: Placement) -> torch.nn.Module:
    """``module`` in DistributedDataParallel under torchrun, else itself."""
    if placement.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [placement.device] if placement.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)
