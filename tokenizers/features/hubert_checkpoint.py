"""Read HuBERT checkpoints (fairseq and Hugging Face) safely and convert them to torchaudio's model.

fairseq ``.pt`` files (``hubert_base_ls960.pt``, ``mhubert_base_vp_en_es_fr_it3.pt``, ...) hold the
weights under ``["model"]`` with fairseq names, and their configuration as Python objects (an omegaconf
``DictConfig`` under ``"cfg"``, or an ``argparse.Namespace`` under ``"args"``). They are read through
slmtok's one checkpoint policy, ``slmtok.hub.safe_load`` (``torch.load(weights_only=True)``, torch's
restricted unpickler); when the file names such configuration classes, each is replaced by an
inert record (``ConfigRecord``: it stores what the pickle gives it and runs nothing) — and only for a file
whose sha256 matches its card, or with ``trust=True``. Globals outside configuration modules (``os``,
``builtins.eval``...) are refused in any case.

Hugging Face checkpoints (``facebook/hubert-base-ls960``: ``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``) are state dicts with ``transformers`` names. Both are converted to
``torchaudio.models.wav2vec2_model`` with torchaudio's own key mapping; no fairseq or transformers import.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from slmtok.errors import SlmtokError

#: modules whose classes a fairseq checkpoint's configuration may contain (read as inert records)
CONFIG_MODULES = ("argparse", "omegaconf", "typing", "fairseq", "enum", "collections", "pathlib", "numpy")
#: builtin types that omegaconf metadata refers to (``object_type=dict``); also read as inert records
BUILTIN_TYPES = {
    f"builtins.{n}"
    for n in (
        "list",
        "dict",
        "tuple",
        "set",
        "frozenset",
        "int",
        "float",
        "str",
        "bool",
        "bytes",
        "object",
        "NoneType",
    )
}


class ConfigRecord:
    """Inert stand-in for a configuration object of a checkpoint: keeps its arguments and state."""

    def __new__(cls, *args: Any, **kwargs: Any) -> ConfigRecord:
        self = object.__new__(cls)
        self.args = args
        self.state = {}
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} record>"


def _record_class(full_name: str) -> type:
    module, _, name = full_name.rpartition(".")
    return type(name, (ConfigRecord,), {"__module__": module, "__qualname__": name})


def _admit_config(full_name: str) -> type | None:
    """An inert record class for a configuration class a fairseq checkpoint may name; ``None`` (refused)
    for anything else."""
    if full_name.split(".")[0] in CONFIG_MODULES or full_name in BUILTIN_TYPES:
        return _record_class(full_name)
    return None


def read_torch_checkpoint(path: str | os.PathLike, *, trust: bool = False, sha256: str | None = None) -> Any:
    """Read a HuBERT ``.pt`` / ``pytorch_model.bin`` through slmtok's one checkpoint policy
    (``slmtok.hub.safe_load.load_torch_checkpoint``: torch's restricted unpickler), admitting fairseq's
    configuration classes as inert records when the file is trusted (``trust=True``), its sha256 equals
    ``sha256``, or its card verified it. Any other global is refused (``UntrustedCheckpointError``)."""
    from slmtok.hub.safe_load import load_torch_checkpoint

    path = Path(path)
    if not path.is_file():
        raise SlmtokError(f"no such checkpoint: {path}")
    return load_torch_checkpoint(path, trust=trust, sha256=sha256, admit=_admit_config)


def plain(obj: Any) -> Any:
    """Configuration records (omegaconf nodes, ``Namespace``...) -> plain dicts, lists and scalars."""
    if isinstance(obj, ConfigRecord):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "_content" in state:  # omegaconf DictConfig / ListConfig
            return plain(state["_content"])
        if "_val" in state:  # omegaconf value node
            return plain(state["_val"])
        if state:
            return {k: plain(v) for k, v in state.items() if not str(k).startswith("_")}
        return plain(obj.args[0]) if len(obj.args) == 1 else None
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def _literal(text: str) -> Any:
    """Evaluate fairseq's ``conv_feature_layers`` string (lists, tuples, ints, + and *) without eval."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [walk(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = walk(node.left), walk(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise SlmtokError(f"unsupported conv_feature_layers expression: {text!r}")

    return walk(ast.parse(text, mode="eval"))


def fairseq_model_config(checkpoint: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """torchaudio ``wav2vec2_model`` arguments and the ``normalize`` flag from a fairseq checkpoint."""
    cfg = plain(checkpoint.get("cfg"))
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        model, task = cfg["model"], cfg.get("task") or {}
    elif checkpoint.get("args") is not None:
        model = plain(checkpoint["args"]) or {}
        task = model
    else:
        raise SlmtokError("fairseq checkpoint has neither 'cfg' nor 'args': cannot tell its architecture")
    get = model.get
    conv = get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")
    conv_layers = _literal(conv) if isinstance(conv, str) else conv
    config = {
        "extractor_mode": "layer_norm" if get("extractor_mode", "default") == "layer_norm" else "group_norm",
        "extractor_conv_layer_config": [tuple(int(v) for v in layer) for layer in conv_layers],
        "extractor_conv_bias": bool(get("conv_bias", False)),
        "encoder_embed_dim": int(get("encoder_embed_dim", 768)),
        "encoder_projection_dropout": 0.0,
        "encoder_pos_conv_kernel": int(get("conv_pos", 128)),
        "encoder_pos_conv_groups": int(get("conv_pos_groups", 16)),
        "encoder_num_layers": int(get("encoder_layers", 12)),
        "encoder_num_heads": int(get("encoder_attention_heads", 12)),
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": int(get("encoder_ffn_embed_dim", 3072)),
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.0,
        "encoder_layer_norm_first": bool(get("layer_norm_first", False)),
        "encoder_layer_drop": 0.0,
    }
    return config, bool((task or {}).get("normalize", False))


def fairseq_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """fairseq HuBERT weights -> torchaudio names (pre-training heads dropped)."""
    from torchaudio.models.wav2vec2.utils.import_fairseq import _map_key

    out = {}
    for key, value in checkpoint["model"].items():
        if key.startswith(("label_embs_concat", "final_proj.", "mask_emb")):
            continue
        try:
            mapped = _map_key(key)
        except ValueError:
            raise SlmtokError(f"unexpected key {key!r} in fairseq HuBERT weights") from None
        if mapped is not None and not mapped.startswith("aux."):
            out[mapped] = value
    return out


_HF_RULES = [
    (r"feature_extractor\.(.*)", r"feature_extractor.\1"),
    (r"feature_projection\.(.*)", r"encoder.feature_projection.\1"),
    (r"encoder\.pos_conv_embed\.conv\.(.*)", r"encoder.transformer.pos_conv_embed.conv.\1"),
    (r"encoder\.layer_norm\.(.*)", r"encoder.transformer.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.(.*)", r"encoder.transformer.layers.\1.\2"),
]


def huggingface_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``transformers`` HuBERT weights (``HubertModel`` or ``hubert.``-prefixed) -> torchaudio names."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("hubert.")
        if key in ("masked_spec_embed",) or key.startswith(("lm_head.", "project_hid", "quantizer")):
            continue
        for pattern, target in _HF_RULES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, target, key)] = value
                break
        else:
            raise SlmtokError(f"unexpected key {key!r} in Hugging Face HuBERT weights")
    return out


def huggingface_model_config(config: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """torchaudio ``wav2vec2_model`` arguments and ``normalize`` from a ``transformers`` ``config.json``."""
    from types import SimpleNamespace

    from torchaudio.models.wav2vec2.utils.import_huggingface import _get_config

    defaults = {
        "conv_bias": False,
        "do_stable_layer_norm": False,
        "layerdrop": 0.0,
        "feat_extract_norm": "group",
    }
    args = _get_config(SimpleNamespace(**{**defaults, **config}))
    for key in ("encoder_projection_dropout", "encoder_attention_dropout", "encoder_ff_interm_dropout"):
        args[key] = 0.0
    args.update(encoder_dropout=0.0, encoder_layer_drop=0.0)
    return args, bool(config.get("feat_extract_norm") == "layer")


def load_hubert_weights(
    path: str | os.PathLike, *, trust: bool = False, sha256: str | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor], bool, str]:
    """Read any supported HuBERT checkpoint: ``(model config, torchaudio state dict, normalize, format)``.

    ``path``: a fairseq ``.pt``; a Hugging Face folder (``config.json`` + ``model.safetensors`` or
    ``pytorch_model.bin``) or one of those two files with ``config.json`` beside it.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise SlmtokError(f"no model.safetensors or pytorch_model.bin in {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            data: Any = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - truncated or not safetensors: one line
            text = str(error).strip().splitlines()
            raise SlmtokError(
                f"not a readable safetensors file: {path} ({text[0] if text else error})"
            ) from None
    else:
        data = read_torch_checkpoint(path, trust=trust, sha256=sha256)
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        config, normalize = fairseq_model_config(data)
        return config, fairseq_state_dict(data), normalize, "fairseq"
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        config_path = path.parent / "config.json"
        if not config_path.is_file():
            raise SlmtokError(f"Hugging Face HuBERT weights {path} need the config.json beside them")
        hf_config = json.loads(config_path.read_text(encoding="utf-8"))
        config, normalize = huggingface_model_config(hf_config)
        return config, huggingface_state_dict(data), normalize, "huggingface"
    raise SlmtokError(f"{path} is neither a fairseq nor a Hugging Face HuBERT checkpoint")
