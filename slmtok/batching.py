"""Helpers to move between lists of variable-length items and padded batches."""

from __future__ import annotations

import torch


def pad_stack(items: list[torch.Tensor], value: float = 0.0) -> torch.Tensor:
    """Stack ``[..., T_i]`` tensors into ``[B, ..., max T_i]``, padding the last axis with ``value``."""
    width = max(x.shape[-1] for x in items)
    out = items[0].new_full((len(items), *items[0].shape[:-1], width), value)
    for i, x in enumerate(items):
        out[i, ..., : x.shape[-1]] = x
    return out
