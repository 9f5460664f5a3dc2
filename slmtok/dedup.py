"""Run-length deduplication of unit sequences (GSLM's "deduplicated units") and its inverse."""

from __future__ import annotations

import torch


def deduplicate(units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T]`` units -> (``[R]`` units with repeats collapsed, ``[R]`` durations in frames)."""
    values, counts = torch.unique_consecutive(units, return_counts=True)
    return values, counts


def expand(units: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """Inverse of ``deduplicate``: ``[R]`` units, ``[R]`` durations -> ``[sum(durations)]`` units."""
    return torch.repeat_interleave(units, durations.clamp_min(0))
