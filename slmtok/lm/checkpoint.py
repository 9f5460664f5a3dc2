"""Run folders: model weights and full training state in safetensors, configs in JSON.

A run folder holds
- ``config.json``: the model config, the training config, and the data manifest (tokenizer, pattern,
  rates), so a run decodes and generates from its folder alone;
- ``model.safetensors``: the weights, with the model config in the file's metadata;
- ``checkpoint.safetensors``: weights, AdamW moments, every rank's RNG states, the step, and the world
  size, device type and precision it was trained with, for exact resume;
- ``metrics.jsonl``: one JSON object per log or evaluation (appended, never through a symlink).
Every other file is written atomically and durably (``slmtok.atomic``); nothing is a pickle. The
checkpoint is written before the model, so a kill between them leaves the model one save behind; the
next run sees the step in the model's metadata differ from the checkpoint's and rewrites the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from slmtok.atomic import atomic_path, open_append
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
    with atomic_path(path) as tmp:  # fsync-ed, renamed, folder fsync-ed
        tmp.write_bytes(blob)


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


def open_metrics(run: Path):
    """``metrics.jsonl`` opened for appending; a symlink there is refused (``OutputError``), not followed."""
    return open_append(run / METRICS)


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


def model_step(run: str | os.PathLike) -> int | None:
    """The step recorded in ``model.safetensors`` (``None`` if the file is missing or unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(Path(run) / MODEL), framework="pt") as f:
            meta = f.metadata() or {}
        return int(meta["step"]) if meta.get("format") == MODEL_FORMAT else None
    except Exception:  # noqa: BLE001 - missing, truncated or foreign: rewritten from the checkpoint
        return None


def checkpoint_info(run: str | os.PathLike) -> tuple[int, dict[str, Any]]:
    """(step, info) of ``checkpoint.safetensors`` from its header alone (no tensor is read)."""
    from safetensors import safe_open

    path = Path(run) / CHECKPOINT
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as error:  # noqa: BLE001
        raise SlmtokError(f"unreadable {path}: {error}") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise SlmtokError(f"{path} is not an slmtok LM file ({CHECKPOINT_FORMAT})")
    return int(meta["step"]), json.loads(meta.get("info", "{}"))


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's random generator states: CPU, and its own CUDA device's when it trains on one."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def load_model(run: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[SpeechLM, int]:
    """The model of a run folder (eval mode) and the step its weights come from."""
    path = Path(run) / MODEL
    tensors, meta = _read(path, MODEL_FORMAT)
    model = SpeechLM(ModelConfig.from_dict(json.loads(meta["config"])))
    _load_weights(model, tensors, path)
    return model.to(device).eval(), int(meta.get("step", 0))


def save_checkpoint(
    run: Path,
    model: SpeechLM,
    optimizer: torch.optim.Optimizer,
    step: int,
    info: dict[str, Any],
    rng_states: list[dict[str, torch.Tensor]] | None = None,
) -> None:
    """``checkpoint.safetensors``: everything needed to continue exactly after ``step`` optimizer steps.

    ``rng_states[r]`` is rank ``r``'s ``rng_state`` (default: this process's, as rank 0); each rank gets
    its own back on resume, so dropout draws continue as if the run had never stopped.
    """
    tensors = {f"model.{k}": v for k, v in _weights(model).items()}
    state = optimizer.state_dict()
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    device = next(model.parameters()).device
    for rank, states in enumerate(rng_states or [rng_state(device)]):
        for kind, value in states.items():
            tensors[f"rng.rank{rank}.{kind}"] = value.cpu().contiguous()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "step": str(step),
        "param_groups": json.dumps(state["param_groups"]),
        "info": json.dumps({**info, "rng_ranks": len(rng_states or [None])}),
    }
    _save(run / CHECKPOINT, tensors, meta)


def load_checkpoint(
    run: Path, model: SpeechLM, optimizer: torch.optim.Optimizer, rank: int = 0
) -> tuple[int, dict[str, Any]]:
    """Restore weights, optimizer moments and rank ``rank``'s RNG states in place; return (step, info)."""
    path = run / CHECKPOINT
    tensors, meta = _read(path, CHECKPOINT_FORMAT)
    _load_weights(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    device = next(model.parameters()).device
    if f"rng.rank{rank}.torch" in tensors:
        torch.set_rng_state(tensors[f"rng.rank{rank}.torch"])
        if device.type == "cuda" and f"rng.rank{rank}.cuda" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng.rank{rank}.cuda"], device)
    else:  # written by slmtok before per-rank states: rank 0's CPU state and every visible GPU's
        torch.set_rng_state(tensors["rng.torch"])
        cuda = [
            tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors
        ]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    return int(meta["step"]), json.loads(meta["info"])


def restore_model(run: Path, model: SpeechLM, step: int) -> bool:
    """Make ``model.safetensors`` hold the checkpoint's weights: a run killed between writing its
    checkpoint and its model (or while writing the model) left it missing or from an earlier step.
    ``model`` holds the weights just loaded from the checkpoint of ``step``. Returns whether it wrote."""
    if model_step(run) == step:
        return False
    save_model(run, model, step)
    return True
