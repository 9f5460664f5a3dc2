"""Hugging Face-format EnCodec and DAC checkpoints, read into the upstream packages' models.

A ``save_pretrained`` folder of ``transformers.EncodecModel`` / ``DacModel`` (``config.json`` +
``model.safetensors``, as ``facebook/encodec_24khz``, ``facebook/encodec_48khz`` and ``descript/dac_*``
publish them) holds the same layers as the ``encodec`` / ``dac`` packages' models under other names. This
module reads such a folder (JSON and safetensors: no pickle), refuses a folder of another model type with
one line, checks that its architecture is one the upstream model can represent, and renames its tensors
to the upstream names, so ``encodec-*`` and ``dac-*`` keep running the upstream packages' own models.

Weight norm: transformers writes a weight-normed convolution as ``parametrizations.weight.original0/1``
(or, in older files, ``weight_g`` / ``weight_v``); DAC files written by ``DacModel`` hold plain weights.
EnCodec keeps ``weight_g`` / ``weight_v`` (its tokenizer folds them itself); for DAC every convolution
becomes a plain ``weight``, computed as ``torch._weight_norm(v, g, dim)``: the very call both weight-norm
implementations make, so the weights keep their bits.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from slmtok.codecs import transformers_codec
from slmtok.codecs.loading import CheckpointError, CodecSource, resolve_source
from slmtok.codecs.transformers_codec import CONFIG_NAME, WEIGHTS_NAME

# config fields of transformers' EncodecConfig that the ``encodec`` package's SEANet fixes (its defaults,
# which ``codecs.encodec.build_model`` uses): a checkpoint with other values cannot be represented
ENCODEC_FIXED = {
    "num_residual_layers": 1,
    "upsampling_ratios": [8, 5, 4, 2],
    "kernel_size": 7,
    "last_kernel_size": 7,
    "residual_kernel_size": 3,
    "dilation_growth_rate": 2,
    "compress": 2,
    "pad_mode": "reflect",
    "use_conv_shortcut": True,
    "trim_right_ratio": 1.0,
}

TITLES = {"encodec": "EnCodec", "dac": "DAC"}


def is_hf_checkpoint(checkpoint: Any) -> bool:
    """Whether ``checkpoint=`` names a ``save_pretrained`` folder (or its ``(config, weights)`` pair)."""
    if checkpoint is None:
        return False
    if isinstance(checkpoint, (list, tuple)):
        return True
    return Path(os.fspath(checkpoint)).is_dir()


def card_has_config(name: str, card: Any) -> bool:
    """Whether the hub card (``card``, default the card named ``name``) lists a ``config`` file: the
    card of a Hugging Face-format checkpoint (``config.json`` + ``model.safetensors``)."""
    from slmtok import hub

    model_card = hub.get_card(card if card is not None else name)
    return any(f.role == "config" for f in model_card.files)


def resolve_hf(name: str, *, checkpoint: Any, card: Any, trust: bool) -> CodecSource | None:
    """The ``config`` + ``weights`` files of ``name`` when they are a transformers ``save_pretrained``
    checkpoint (a folder or pair given as ``checkpoint=``, or a card listing a ``config`` file); ``None``
    when the checkpoint is in the upstream package's own format."""
    if not (is_hf_checkpoint(checkpoint) or (checkpoint is None and card_has_config(name, card))):
        return None
    return resolve_source(
        name,
        checkpoint=checkpoint,
        card=card,
        trust=trust,
        roles=("config", "weights"),
        split_checkpoint=split_checkpoint,
    )


def split_checkpoint(checkpoint: Any) -> dict[str, Path]:
    """``{"config", "weights"}`` paths of a ``save_pretrained`` folder, or of a ``(config, weights)`` pair."""
    if isinstance(checkpoint, (list, tuple)):
        if len(checkpoint) != 2:
            raise CheckpointError(
                "checkpoint= takes a save_pretrained folder (config.json + model.safetensors) or a file"
            )
        return {"config": Path(os.fspath(checkpoint[0])), "weights": Path(os.fspath(checkpoint[1]))}
    folder = Path(os.fspath(checkpoint))
    return {"config": folder / CONFIG_NAME, "weights": folder / WEIGHTS_NAME}


def read_config(path: Path, label: str, model_type: str) -> dict[str, Any]:
    """``config.json`` as a dict; ``CheckpointError`` unless its ``model_type`` is ``model_type``."""
    return transformers_codec.read_config(path, label, model_type, f"Hugging Face {TITLES[model_type]}")


def read_weights(path: Path, label: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (``CheckpointError`` if it cannot be read)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError, ValueError, RuntimeError) as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"cannot read weights of {label}: {first}") from None


def _param(name: str) -> str:
    """A weight-norm parameter under its classic name (``weight_g`` / ``weight_v``)."""
    return {
        "parametrizations.weight.original0": "weight_g",
        "parametrizations.weight.original1": "weight_v",
    }.get(name, name)


def _unmapped(label: str, keys: list[str]) -> CheckpointError:
    shown = ", ".join(sorted(keys)[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
    return CheckpointError(f"{label}: tensors with no place in the upstream model: {shown}")


# ------------------------------------------------------------------------------------------ EnCodec
_ENCODEC_LAYER = re.compile(
    r"(encoder|decoder)\.layers\.(\d+)((?:\.block\.\d+|\.shortcut)?)\.(conv|norm|lstm)\.(.+)"
)
_ENCODEC_BOOK = re.compile(r"quantizer\.layers\.(\d+)\.codebook\.(inited|cluster_size|embed|embed_avg)")


def encodec_key(key: str, transposed: bool) -> str | None:
    """The ``encodec`` package's name for transformers' EnCodec tensor ``key`` (``None``: no such place).

    ``encoder.layers.{i}[.block.{j}|.shortcut].conv.{p}`` -> ``encoder.model.{i}[...].conv.conv.{p}``
    (``.convtr.convtr.`` for the decoder's transposed convolutions), ``.norm.`` -> ``.conv.norm.`` (or
    ``.convtr.norm.``), ``.lstm.`` unchanged; ``quantizer.layers.{k}.codebook.{b}`` ->
    ``quantizer.vq.layers.{k}._codebook.{b}``."""
    if m := _ENCODEC_BOOK.fullmatch(key):
        return f"quantizer.vq.layers.{m[1]}._codebook.{m[2]}"
    m = _ENCODEC_LAYER.fullmatch(key)
    if m is None:
        return None
    side, index, sub, part, param = m.groups()
    base = f"{side}.model.{index}{sub}"
    if part == "lstm":
        return f"{base}.lstm.{param}"
    outer = "convtr" if transposed else "conv"
    return f"{base}.{outer}.{outer if part == 'conv' else 'norm'}.{_param(param)}"


def encodec_state_dict(state: dict[str, torch.Tensor], label: str) -> dict[str, torch.Tensor]:
    """transformers' EnCodec tensors under the ``encodec`` package's names (``encodec.EncodecModel``)."""
    transposed = _encodec_transposed(state)
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        target = encodec_key(key, key.split(".layers.")[0] == "decoder" and key.split(".")[2] in transposed)
        if target is None or target in out:
            unmapped.append(key)
        else:
            out[target] = value
    if unmapped:
        raise _unmapped(label, unmapped)
    return out


def _encodec_transposed(state: dict[str, torch.Tensor]) -> set[str]:
    """Indices of the decoder layers that are transposed convolutions: the one ``conv`` layer after each
    LSTM / before each residual block in SEANet's decoder (``ConvTranspose1d`` weights are
    ``[in, out, k]``, with ``k = 2 * ratio``). Read from the layer order: in the decoder, a plain
    convolution layer directly followed by a residual block is an upsampling (transposed) one."""
    layers: dict[int, str] = {}
    for key in state:
        if m := re.match(r"decoder\.layers\.(\d+)\.(block|shortcut|conv|lstm|norm)", key):
            kind = "block" if m[2] in ("block", "shortcut") else ("lstm" if m[2] == "lstm" else "conv")
            layers[int(m[1])] = kind
    order = sorted(layers)
    return {
        str(i) for i, j in zip(order, order[1:], strict=False) if layers[i] == "conv" and layers[j] == "block"
    }


def encodec_check_config(config: dict[str, Any], label: str, variant: Any, name: str) -> None:
    """``CheckpointError`` unless ``config`` is an EnCodec the ``encodec`` package builds as ``name``
    (``variant``: ``codecs.encodec.Variant``)."""
    expected: dict[str, Any] = {
        "sampling_rate": variant.sample_rate,
        "audio_channels": variant.channels,
        "norm_type": variant.norm,
        "use_causal_conv": variant.causal,
        "normalize": variant.normalize,
        "chunk_length_s": variant.segment,
        **ENCODEC_FIXED,
    }
    if variant.segment is not None:
        expected["overlap"] = 0.01
    for key, value in expected.items():
        found = config.get(key, value)
        if isinstance(value, list):
            same = isinstance(found, list) and [float(x) for x in found] == [float(x) for x in value]
        elif isinstance(value, (bool, str)) or value is None:
            same = found == value
        else:
            same = isinstance(found, (int, float)) and float(found) == float(value)
        if not same:
            raise CheckpointError(f"{label} is not {name}: config {key} is {found!r}, {name} has {value!r}")
    if config.get("codebook_dim", config.get("hidden_size")) != config.get("hidden_size"):
        raise CheckpointError(
            f"{label}: codebook_dim differs from hidden_size; the encodec package ties them"
        )


# ------------------------------------------------------------------------------------------ DAC
def dac_kwargs(config: dict[str, Any], label: str) -> dict[str, Any]:
    """``dac.DAC`` arguments for transformers' ``DacConfig`` ``config``."""
    try:
        down = [int(r) for r in config["downsampling_ratios"]]
        up = [int(r) for r in config["upsampling_ratios"]]
        return {
            "encoder_dim": int(config["encoder_hidden_size"]),
            "encoder_rates": down,
            "latent_dim": int(config["hidden_size"]),
            "decoder_dim": int(config["decoder_hidden_size"]),
            "decoder_rates": up,
            "n_codebooks": int(config["n_codebooks"]),
            "codebook_size": int(config["codebook_size"]),
            "codebook_dim": int(config["codebook_dim"]),
            "sample_rate": int(config["sampling_rate"]),
        }
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{label}: DAC config lacks or mangles {error}") from None


_DAC_UNIT = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}


def dac_key(key: str, n_down: int, n_up: int) -> str | None:
    """The ``dac`` package's module path + parameter for transformers' DAC tensor ``key`` (with
    ``weight_g`` / ``weight_v`` / ``parametrizations...`` left to the caller), ``None``: no such place.

    Encoder: ``conv1`` -> ``block.0``; ``block.{i}`` -> ``block.{i+1}`` with ``res_unit{j}`` ->
    ``block.{j-1}`` (its ``snake1 / conv1 / snake2 / conv2`` -> ``block.0..3``), ``snake1`` -> ``block.3``,
    ``conv1`` -> ``block.4``; ``snake1`` / ``conv2`` -> ``block.{n+1}`` / ``block.{n+2}``. Decoder: the same
    under ``model.``, a block being ``snake1 / conv_t1 / res_unit1..3`` -> ``block.0..4``. The quantizer's
    names are the same."""
    if key.startswith("quantizer.quantizers."):
        return key
    parts = key.split(".")
    side = parts[0]
    if side not in ("encoder", "decoder"):
        return None
    top = "block" if side == "encoder" else "model"
    n = n_down if side == "encoder" else n_up
    rest = parts[1:]
    if rest[0] == "conv1" and len(rest) == 2:
        return f"{side}.{top}.0.{rest[1]}"
    if rest[0] == "snake1" and len(rest) == 2:
        return f"{side}.{top}.{n + 1}.{rest[1]}"
    if rest[0] == "conv2" and len(rest) == 2:
        return f"{side}.{top}.{n + 2}.{rest[1]}"
    if rest[0] != "block" or len(rest) < 4 or not rest[1].isdigit() or int(rest[1]) >= n:
        return None
    block = f"{side}.{top}.{int(rest[1]) + 1}.block"
    inner = rest[2]
    if m := re.fullmatch(r"res_unit([123])", inner):
        if len(rest) != 5 or rest[3] not in _DAC_UNIT:
            return None
        unit = int(m[1]) - 1 if side == "encoder" else int(m[1]) + 1
        return f"{block}.{unit}.block.{_DAC_UNIT[rest[3]]}.{rest[4]}"
    if len(rest) != 4:
        return None
    places = {"snake1": 3, "conv1": 4} if side == "encoder" else {"snake1": 0, "conv_t1": 1}
    if inner not in places:
        return None
    return f"{block}.{places[inner]}.{rest[3]}"


def dac_state_dict(
    state: dict[str, torch.Tensor], kwargs: dict[str, Any], label: str
) -> dict[str, torch.Tensor]:
    """transformers' DAC tensors as a plain-weight state dict of ``dac.DAC`` (weight norm folded:
    ``weight = torch._weight_norm(v, g, dim)``, ``dim`` the axis ``g`` keeps)."""
    n_down, n_up = len(kwargs["encoder_rates"]), len(kwargs["decoder_rates"])
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        for suffix, role in (
            (".parametrizations.weight.original0", "g"),
            (".parametrizations.weight.original1", "v"),
            (".weight_g", "g"),
            (".weight_v", "v"),
        ):
            if key.endswith(suffix):
                pairs.setdefault(key[: -len(suffix)], {})[role] = value
                break
        else:
            target = dac_key(key, n_down, n_up)
            if target is None or target in out:
                unmapped.append(key)
            else:
                out[target] = value
    for module, pair in pairs.items():
        target = dac_key(f"{module}.weight", n_down, n_up)
        if target is None or set(pair) != {"g", "v"} or target in out:
            unmapped.append(f"{module}.weight")
            continue
        g, v = pair["g"], pair["v"]
        keep = [d for d in range(g.ndim) if g.shape[d] != 1]
        out[target] = torch._weight_norm(v, g, keep[0] if keep else 0)
    if unmapped:
        raise _unmapped(label, unmapped)
    return out
