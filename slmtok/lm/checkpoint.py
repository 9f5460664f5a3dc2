"""Run folders: model weights and full training state in safetensors, configs in JSON.

A run folder holds
- ``config.json``: the model config, the training config, and the data manifest (tokenizer, pattern,
  rates), so a run decodes and generates from its folder alone;
- ``model.safetensors``: the weights, with the model config in the file's metadata;
- ``checkpoint.safetensors``: weights, AdamW moments, the RNG states and the step, for exact resume;
- ``metrics.jsonl``: one JSON object per log or evaluation.
Every file is written atomically; nothing is a pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError
from slmtok.lm.model import ModelConfig, SpeechLM

RUN_FORMAT = "slmtok-lm-run"
MODEL_FORMAT = "slmtok-lm"
CHECKPOINT_FORMAT = "slmtok-lm-checkpoint"
CONFIG, MODEL, CHECKPOINT, METRICS = (
    "config.json",
    "model.safetensors",
    "checkpoint.safetensors",
    "metrics.jsonl",
)


def _weights(model: SpeechLM) -> dict[str, torch.Tensor]:
    """State dict on CPU without the tied output weight (safetensors stores no shared tensors)."""
    state = model.state_dict()
    if model.config.tie_embeddings:
        state.pop("head.weight", None)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _load_weights(model: SpeechLM, tensors: dict[str, torch.Tensor], source: Path) -> None:
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"head.weight"} if model.config.tie_embeddings else set()
    if set(missing) - tied or unexpected:
        raise SlmtokError(
            f"{source} does not match the model config (missing {missing}, unexpected {unexpected})"
        )


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save

    blob = save(tensors, metadata=metadata)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())


def _read(path: Path, expect: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    if not path.exists():
        raise SlmtokError(f"no {path.name} in {path.parent}: not a trained LM run")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as error:  # noqa: BLE001 - safetensors raises several types for junk input
        raise SlmtokError(f"unreadable {path}: {error}") from None
    if metadata.get("format") != expect:
        raise SlmtokError(f"{path} is not an slmtok LM file ({expect})")
    return tensors, metadata


def write_run_config(run: Path, config: dict[str, Any]) -> None:
    with atomic_path(run / CONFIG) as tmp:
        tmp.write_text(json.dumps({"format": RUN_FORMAT, **config}, indent=1), encoding="utf-8")


def read_run_config(run: str | os.PathLike) -> dict[str, Any]:
    path = Path(run) / CONFIG
    if not path.exists():
        raise SlmtokError(f"{run} is not an LM run folder (no {CONFIG}); train one with slmtok lm train")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("format") != RUN_FORMAT:
        raise SlmtokError(f"{path} is not an slmtok LM run config")
    return config


def save_model(run: Path, model: SpeechLM, step: int) -> None:
    """``model.safetensors``: weights plus the model config (JSON) and step in its metadata."""
    meta = {"format": MODEL_FORMAT, "config": json.dumps(model.config.to_dict()), "step": str(step)}
    _save(run / MODEL, _weights(model), meta)


def load_model(run: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[SpeechLM, int]:
    """The model of a run folder (eval mode) and the step its weights come from."""
    path = Path(run) / MODEL
    tensors, meta = _read(path, MODEL_FORMAT)
    model = SpeechLM(ModelConfig.from_dict(json.loads(meta["config"])))
    _load_weights(model, tensors, path)
    return model.to(device).eval(), int(meta.get("step", 0))


def save_checkpoint(
    run: Path, model: SpeechLM, optimizer: torch.optim.Optimizer, step: int, info: dict[str, Any]
) -> None:
    """``checkpoint.safetensors``: everything needed to continue exactly after ``step`` optimizer steps."""
    tensors = {f"model.{k}": v for k, v in _weights(model).items()}
    state = optimizer.state_dict()
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    meta = {
        "format": CHECKPOINT_FORMAT,
        "step": str(step),
        "param_groups": json.dumps(state["param_groups"]),
        "info": json.dumps(info),
    }
    _save(run / CHECKPOINT, tensors, meta)


def load_checkpoint(
    run: Path, model: SpeechLM, optimizer: torch.optim.Optimizer
) -> tuple[int, dict[str, Any]]:
    """Restore weights, optimizer moments and RNG states in place; return (step, info)."""
    path = run / CHECKPOINT
    tensors, meta = _read(path, CHECKPOINT_FORMAT)
    _load_weights(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    return int(meta["step"]), json.loads(meta["info"])
