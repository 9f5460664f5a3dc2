"""Read and write the safetensors weight files of the embedded baselines (tensors + JSON config)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def default_weights(name: str) -> Path:
    """Path of the weights shipped for baseline ``name`` (e.g. ``"mel-rvq"``)."""
    return WEIGHTS_DIR / f"{name}.safetensors"


def load_weights(path: str | os.PathLike, *, expect: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(tensors, config)`` from a baseline weights file; ``config["tokenizer"]`` must equal ``expect``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SlmtokError(f"no such weights file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
        config = json.loads(meta["config"])
    except Exception:  # noqa: BLE001
        raise SlmtokError(f"not a slmtok weights file: {path}") from None
    if config.get("tokenizer") != expect:
        raise SlmtokError(f"{path} holds weights for {config.get('tokenizer')!r}, not {expect!r}")
    return tensors, config


def save_weights(path: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Atomically write ``tensors`` with ``config`` (JSON, must name its ``tokenizer``)."""
    from safetensors.torch import save

    if "tokenizer" not in config:
        raise ValueError("config must name its tokenizer")
    blob = save(
        {k: v.contiguous().cpu() for k, v in tensors.items()}, metadata={"config": json.dumps(config)}
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
    return path
