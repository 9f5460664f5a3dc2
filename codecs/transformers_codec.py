"""Shared pieces of the codecs wrapped from Hugging Face ``transformers`` (``mimi``, ``xcodec2``,
``wavtokenizer-*``, ``xcodec``): a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``)
as checkpoint, its ``model_type`` checked, the model built by ``Model.from_pretrained`` (local files only,
safetensors: no pickle) and refused in one line when its weights do not fill it; per-item outputs
stacked with their lengths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from slmtok.codecs.loading import CheckpointError, CodecSource, resolve_source

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def split_folder(checkpoint: Any, name: str) -> dict[str, Path]:
    """A ``save_pretrained`` folder, or its ``(config.json, model.safetensors)`` pair (one folder)."""
    usage = f"{name} checkpoint= takes a save_pretrained folder ({CONFIG_NAME} + {WEIGHTS_NAME})"
    if isinstance(checkpoint, (list, tuple)):
        if len(checkpoint) != 2:
            raise CheckpointError(usage)
        return {"config": Path(os.fspath(checkpoint[0])), "weights": Path(os.fspath(checkpoint[1]))}
    folder = Path(os.fspath(checkpoint))
    if not folder.is_dir():
        raise CheckpointError(f"{usage}, got {folder}")
    return {"config": folder / CONFIG_NAME, "weights": folder / WEIGHTS_NAME}


def read_config(path: Path, label: str, model_type: str, title: str, article: str = "a") -> dict[str, Any]:
    """``config.json`` as a dict, refused unless its ``model_type`` is ``model_type`` ("... is a 'mimi'
    checkpoint, not {article} {title} one")."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {title} config {path}: {error}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a transformers config (a JSON object)")
    found = config.get("model_type")
    if found != model_type:
        raise CheckpointError(
            f"{label} is a {found!r} checkpoint, not {article} {title} one (model_type {model_type!r})"
        )
    return config


def load_pretrained(model_class, paths: dict[str, Path], label: str, title: str):
    """``model_class.from_pretrained`` on the folder holding both files (float32, eval mode, local files
    only); refused when weights are missing, unexpected or of the wrong shape."""
    folder = paths["config"].parent
    if (
        paths["config"].name != CONFIG_NAME
        or paths["weights"].name != WEIGHTS_NAME
        or paths["weights"].parent != folder
    ):
        raise CheckpointError(f"{label}: {title} needs {CONFIG_NAME} and {WEIGHTS_NAME} in one folder")
    try:
        model, info = model_class.from_pretrained(
            str(folder), local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError, TypeError, KeyError, AttributeError) as error:
        if "ignore_mismatched_sizes" in str(error):  # transformers' wording for weights of other shapes
            raise CheckpointError(f"{label} does not match its config: weights of other shapes") from None
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"cannot load {title} checkpoint {label}: {first}") from None
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or ())
        if keys:
            shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
            raise CheckpointError(f"{label} does not match its config: {kind.replace('_', ' ')}: {shown}")
    return model.eval()


def stack_padded(items: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """``[C, L_i]`` tensors -> ``[N, C, max L]`` zero-padded, and the lengths ``L_i``."""
    lengths = [x.shape[-1] for x in items]
    width = max(lengths)
    return torch.stack([torch.nn.functional.pad(x, (0, width - x.shape[-1])) for x in items]), lengths


def resolve_folder(name: str, *, checkpoint: Any, card: Any, trust: bool) -> CodecSource:
    """The ``config`` and ``weights`` files of tokenizer ``name``: a ``checkpoint=`` folder (or pair), else
    its hub card's files (``slmtok.codecs.loading.resolve_source``)."""
    return resolve_source(
        name,
        checkpoint=checkpoint,
        card=card,
        trust=trust,
        roles=("config", "weights"),
        split_checkpoint=lambda c: split_folder(c, name),
    )
