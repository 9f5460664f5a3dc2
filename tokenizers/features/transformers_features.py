"""Self-supervised speech features through Hugging Face ``transformers`` (``WavLMModel``, ``Wav2Vec2Model``,
``HubertModel``): ``wavlm-base-plus``, ``wavlm-large``, ``wav2vec2-base``, ``xlsr-300m``, ``mhubert-147`` (and its 2nd iteration, ``mhubert-147-iter2``).

Layer ``L`` is transformers' ``output_hidden_states=True`` ``hidden_states[L]`` (0: the transformer's
input after the positional convolution; ``L >= 1``: the output of transformer layer ``L``), 16 kHz
input, one frame per 320 samples (``model._get_feat_extract_output_lengths``).

Batch ≡ single, and the condition: models whose convolutional feature encoder uses LayerNorm
(``config.feat_extract_norm == "layer"``: WavLM Large, XLS-R) run padded batches with
``attention_mask``; transformers zeroes padded frames before the positional convolution and masks them
out of attention, so each item's frames equal its solo frames within float rounding. Models with a
GroupNorm over time in the first convolution (``"group"``: wav2vec 2.0 Base, WavLM Base+, HuBERT Base /
mHuBERT-147) would mix padding into every frame, so each item runs alone at its own length: exact.

Input normalisation (zero mean, unit variance per item over its valid samples, the Hugging Face feature
extractor's ``do_normalize``) follows ``preprocessor_config.json`` in the checkpoint folder when present,
else the variant's default.

Weights: ``checkpoint=`` a Hugging Face folder (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``, read with ``from_pretrained(local_files_only=True)``; a ``.bin`` is read by
transformers with ``torch.load(weights_only=True)``); without it, the files of the variant's hub card.
A folder of another model type is refused with one line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slmtok.errors import SlmtokError

SAMPLE_RATE = 16000
RECEPTIVE_FIELD = 400  # samples seen by one frame of the standard 7-layer convolution stack


@dataclass(frozen=True)
class Variant:
    """A published model: hub card, transformers ``model_type``, layers, width, default normalisation."""

    name: str
    card: str
    model_type: str
    layers: int
    dim: int
    normalize: bool


VARIANTS = {
    "wavlm-base-plus": Variant("wavlm-base-plus", "wavlm-base-plus", "wavlm", 12, 768, False),
    "wavlm-large": Variant("wavlm-large", "wavlm-large", "wavlm", 24, 1024, True),
    "wav2vec2-base": Variant("wav2vec2-base", "wav2vec2-base", "wav2vec2", 12, 768, True),
    "xlsr-300m": Variant("xlsr-300m", "xlsr-300m", "wav2vec2", 24, 1024, True),
    "mhubert-147": Variant("mhubert-147", "mhubert-147-3rd-iter", "hubert", 12, 768, True),
    "mhubert-147-iter2": Variant("mhubert-147-iter2", "mhubert-147-iter2-base", "hubert", 12, 768, True),
}

_CLASSES = {"wavlm": "WavLMModel", "wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel"}
_MODEL_CACHE: dict[tuple, Any] = {}


def read_model_type(folder: Path) -> str:
    """``model_type`` of ``folder/config.json``; one line when it is missing or unreadable."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SlmtokError(
            f"{folder} is not a Hugging Face checkpoint folder (config.json: {error})"
        ) from None
    if not isinstance(config, dict):
        raise SlmtokError(f"{folder}/config.json is not a JSON object")
    return str(config.get("model_type"))


def read_normalize(folder: Path, default: bool) -> bool:
    """``do_normalize`` of ``folder/preprocessor_config.json`` if the file exists, else ``default``."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return default
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("do_normalize", default)
    except (OSError, ValueError, AttributeError):
        raise SlmtokError(f"{path} is not a readable preprocessor config") from None
    return bool(value)


def check_sizes(folder: Path, variant: Variant) -> None:
    """Refuse, before any weight is read, a checkpoint whose ``config.json`` gives the transformer of another
    published variant (``num_hidden_layers`` x ``hidden_size``): a WavLM Large folder must not pass for
    ``wavlm-base-plus``, nor an XLS-R for ``wav2vec2-base``, nor a HuBERT Large for ``mhubert-147`` (its
    layers, width and any k-means over them would all be another model's). A size no published variant
    has (a distilled or a small test model) is taken as given: its features are ``hidden_size`` wide."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    layers, dim = config.get("num_hidden_layers"), config.get("hidden_size")
    if (layers, dim) == (variant.layers, variant.dim):
        return
    from slmtok.tokenizers.features import hubert

    published = [v for v in VARIANTS.values() if v.model_type == variant.model_type]
    published += list(hubert.VARIANTS.values()) if variant.model_type == "hubert" else []
    fits = sorted({v.name for v in published if (v.layers, v.dim) == (layers, dim)})
    if fits:
        raise SlmtokError(
            f"{folder} is a {layers}-layer, {dim}-wide {variant.model_type} model, not {variant.name} "
            f"({variant.layers} layers, {variant.dim} wide); load it as {' or '.join(fits)}"
        )


def load_model(folder: Path, variant: Variant, device: torch.device):
    """The transformers model of ``folder`` (float32, eval), cached per folder state and device; refused
    when it is of another model type or the size of another published variant (``check_sizes``)."""
    model_type = read_model_type(folder)
    if model_type != variant.model_type:
        raise SlmtokError(
            f"{folder} is a {model_type!r} checkpoint, not {variant.name} (model_type {variant.model_type!r})"
        )
    check_sizes(folder, variant)
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    key = (str(folder.resolve()), tuple(files), str(device))
    if key not in _MODEL_CACHE:
        import transformers

        cls = getattr(transformers, _CLASSES[model_type])
        try:
            model, info = cls.from_pretrained(
                str(folder), local_files_only=True, dtype=torch.float32, output_loading_info=True
            )
        except (OSError, ValueError, RuntimeError, TypeError, KeyError) as error:
            first = (str(error).splitlines() or [type(error).__name__])[0]
            raise SlmtokError(f"cannot load {variant.name} checkpoint {folder}: {first}") from None
        bad = [
            k for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") for k in info.get(kind) or ()
        ]
        bad = [k for k in bad if "masked_spec_embed" not in str(k)]  # unused at inference
        if bad:
            raise SlmtokError(f"{folder} does not match its config: {sorted(map(str, bad))[0]!r}")
        if len(_MODEL_CACHE) >= 2:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = model.eval().to(device)
    return _MODEL_CACHE[key]


class TransformersFeatures:
    """``[T]`` 16 kHz mono audio -> ``[T', D]`` frames of ``hidden_states[layer]`` (50 frames/s).

    Args:
        variant: a name of ``VARIANTS``.
        layer: ``0..num_layers`` (``hidden_states`` index); default the last layer.
        checkpoint: a Hugging Face folder; default: the files of the variant's hub card.
        card: another hub card (name or ``.toml`` path) to fetch the files from.
        normalize: override the input normalisation (default: ``preprocessor_config.json`` / variant).
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        variant: str,
        *,
        layer: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        card: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        normalize: bool | None = None,
        trust: bool = False,
        offline: bool | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise SlmtokError(f"unknown feature extractor {variant!r}; one of {', '.join(VARIANTS)}")
        self.variant = VARIANTS[variant]
        self.device = torch.device(device)
        folder = Path(checkpoint) if checkpoint is not None else _fetch(card or self.variant.card, offline)
        if not folder.is_dir():
            raise SlmtokError(f"{variant} checkpoint= takes a Hugging Face folder (config.json + weights)")
        self.checkpoint = str(folder)
        self.model = load_model(folder, self.variant, self.device)
        self.normalize = read_normalize(folder, self.variant.normalize) if normalize is None else normalize
        self.num_layers = int(self.model.config.num_hidden_layers)
        self.dim = int(self.model.config.hidden_size)
        self.layer = self.num_layers if layer is None else int(layer)
        if not 0 <= self.layer <= self.num_layers:
            raise SlmtokError(f"{variant} has layers 0 to {self.num_layers}; layer={layer} is out of range")
        self.hop = int(torch.tensor(self.model.config.conv_stride).prod())
        self.frame_rate = SAMPLE_RATE / self.hop
        self.batched = self.model.config.feat_extract_norm == "layer"
        from slmtok.tokenizer import content_hash

        self.weights_hash = content_hash({"model": self.model.config.to_dict()}, self.model.state_dict())

    def num_frames(self, n_samples: int) -> int:
        """Frames transformers gives for ``n_samples`` samples (at least one receptive field)."""
        n = torch.tensor([max(int(n_samples), RECEPTIVE_FIELD)])
        return int(self.model._get_feat_extract_output_lengths(n)[0])

    def config(self) -> dict[str, Any]:
        """What determines the features: variant, layer, weights hash, normalisation."""
        return {
            "features": self.variant.name,
            "layer": self.layer,
            "weights": self.weights_hash,
            "normalize": self.normalize,
        }

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """``[T]`` -> ``[num_frames(T), D]``."""
        feats, frames = self.extract(wav.reshape(1, -1), torch.tensor([wav.numel()]))
        return feats[0, : int(frames[0])]

    @torch.inference_mode()
    def extract(
        self, wav: torch.Tensor, lengths: torch.Tensor, layer: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav`` ``[B, T]`` zero-padded, ``lengths`` ``[B]`` samples -> ``[B, T', D]`` and frames ``[B]``.

        Frames past an item's length are zero; items shorter than 400 samples are zero-padded to 400.
        """
        layer = self.layer if layer is None else int(layer)
        lengths = lengths.to(torch.long).clamp_min(RECEPTIVE_FIELD)
        width = int(lengths.max())
        wav = torch.nn.functional.pad(wav.to(torch.float32), (0, max(0, width - wav.shape[-1])))[:, :width]
        valid = torch.arange(width)[None, :] < lengths[:, None]
        wav = (wav * valid).to(self.device)
        frames = torch.tensor([self.num_frames(int(n)) for n in lengths])
        out = torch.zeros(wav.shape[0], int(frames.max()), self.dim, device=self.device)
        groups = [list(range(wav.shape[0]))] if self.batched else [[i] for i in range(wav.shape[0])]
        for items in groups:
            n = int(lengths[items].max())
            feats = self._forward(wav[items, :n], lengths[items].to(self.device), layer)
            for j, i in enumerate(items):
                out[i, : frames[i]] = feats[j, : frames[i]]
        return out, frames

    def _forward(self, wav: torch.Tensor, lengths: torch.Tensor, layer: int) -> torch.Tensor:
        """``[B, T]``, ``[B]`` -> ``hidden_states[layer]`` ``[B, T', D]``."""
        mask = (torch.arange(wav.shape[-1], device=wav.device)[None, :] < lengths[:, None]).long()
        if self.normalize:
            n = lengths[:, None].float()
            mean = (wav * mask).sum(-1, keepdim=True) / n
            var = ((wav - mean) * mask).pow(2).sum(-1, keepdim=True) / n
            wav = (wav - mean) / torch.sqrt(var + 1e-7) * mask
        kwargs = {"attention_mask": mask} if self.batched else {}
        return self.model(wav, output_hidden_states=True, **kwargs).hidden_states[layer]


def _fetch(card: str | os.PathLike, offline: bool | None) -> Path:
    """The card's ``config`` + ``weights`` (+ ``preprocessor``) files, in one folder of the slmtok cache."""
    from slmtok import hub

    roles = [f.role for f in hub.get_card(card).files if f.role in ("config", "weights", "preprocessor")]
    paths = [Path(hub.fetch(card, role, offline=offline)) for role in roles]
    if "config" not in roles or "weights" not in roles or len({p.parent for p in paths}) != 1:
        raise SlmtokError(f"hub card {card}: needs config.json and weights files (one cache folder)")
    return paths[0].parent


def _factory(name: str):
    def create(**options: Any) -> TransformersFeatures:
        return TransformersFeatures(name, **options)

    create.__name__ = name.replace("-", "_")
    create.__doc__ = f"``FEATURES`` factory of ``{name}``."
    return create


wavlm_base_plus = _factory("wavlm-base-plus")
wavlm_large = _factory("wavlm-large")
wav2vec2_base = _factory("wav2vec2-base")
xlsr_300m = _factory("xlsr-300m")
mhubert_147 = _factory("mhubert-147")
mhubert_147_iter2 = _factory("mhubert-147-iter2")
