"""HuBERT features (``hubert-base``, ``hubert-large``, ``mhubert-base``) on torchaudio's architecture.

Any transformer layer, batched with padding masks, chunked for long audio:

- the first convolution's GroupNorm (base models) normalises over time, so a padded batch would mix
  padding into every frame; here it is computed per item over its valid frames only, and the later
  convolutions are unpadded (``valid``), so each item's frames depend on its own samples alone; the
  transformer masks padded frames out of attention (torchaudio). A batch gives each item the features
  it gets alone, within float rounding.
- ``hubert-large`` normalises each waveform to zero mean and unit variance first (fairseq
  ``task.normalize``), over the valid samples of each item.
- items longer than ``chunk_seconds`` are cut into chunks aligned to the 320-sample frame grid, each fed
  with ``context_seconds`` of audio on both sides whose frames are dropped, so the frame count equals
  the unchunked one; attention is then local to a chunk plus its context.

Weights: ``checkpoint=`` a fairseq ``.pt`` or a Hugging Face folder/file (``hubert_checkpoint``);
without it, the published file of the variant's card is fetched through ``slmtok.hub``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from slmtok.errors import SlmtokError

SAMPLE_RATE = 16000
HOP = 320  # samples per frame (product of the convolution strides)
RECEPTIVE_FIELD = 400  # samples seen by one frame


@dataclass(frozen=True)
class Variant:
    """A published HuBERT model: its hub card, layer count, width, and input normalisation."""

    name: str
    card: str
    layers: int
    dim: int
    normalize: bool
    description: str


VARIANTS = {
    "hubert-base": Variant(
        "hubert-base", "hubert-base-ls960", 12, 768, False, "HuBERT Base, LibriSpeech 960 h"
    ),
    "hubert-large": Variant(
        "hubert-large", "hubert-large-ll60k", 24, 1024, True, "HuBERT Large, Libri-Light 60k h"
    ),
    "mhubert-base": Variant(
        "mhubert-base", "mhubert-base-vp-en-es-fr-it3", 12, 768, False, "mHuBERT Base, VoxPopuli en/es/fr"
    ),
}

_MODEL_CACHE: dict[tuple, tuple[Any, bool, str]] = {}


def _cached_model(path: str, trust: bool, sha256: str | None, device: torch.device):
    """Load (once per file and device) a torchaudio ``Wav2Vec2Model`` from a HuBERT checkpoint."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, str(device), trust, sha256)
    if key not in _MODEL_CACHE:
        import torchaudio

        from slmtok.tokenizer import content_hash
        from slmtok.tokenizers.features.hubert_checkpoint import load_hubert_weights

        config, state, normalize, fmt = load_hubert_weights(path, trust=trust, sha256=sha256)
        with torch.device("meta"):  # no random init of 95M+ parameters: the checkpoint replaces them all
            model = torchaudio.models.wav2vec2_model(**config, aux_num_out=None)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if missing or unexpected:
            raise SlmtokError(
                f"{fmt} HuBERT weights {path} do not fit their config: {(missing or unexpected)[0]!r}"
            )
        model.eval().to(device)
        digest = content_hash({"hubert": config}, model.state_dict())
        if len(_MODEL_CACHE) >= 2:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = (model, normalize, digest)
    return _MODEL_CACHE[key]


class HuBERTFeatures:
    """``[T]`` 16 kHz mono audio -> ``[T', D]`` frames of one transformer layer (50 frames/s).

    Args:
        variant: ``hubert-base``, ``hubert-large`` or ``mhubert-base``.
        layer: transformer layer, 1-based (fairseq's ``output_layer``); default the last.
        checkpoint: local weights (fairseq ``.pt`` or Hugging Face); default: the card's published file.
        trust: read configuration objects of an unverified fairseq checkpoint (as inert records).
        chunk_seconds, context_seconds: long-audio chunking (see the module docstring).
    """

    sample_rate = SAMPLE_RATE
    frame_rate = SAMPLE_RATE / HOP

    def __init__(
        self,
        variant: str = "hubert-base",
        *,
        layer: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        trust: bool = False,
        chunk_seconds: float = 60.0,
        context_seconds: float = 2.0,
        offline: bool | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise SlmtokError(f"unknown HuBERT variant {variant!r}; one of {', '.join(VARIANTS)}")
        self.variant = VARIANTS[variant]
        self.device = torch.device(device)
        sha256 = None
        if checkpoint is None:
            checkpoint, sha256 = _fetch(self.variant.card, offline)
        self.checkpoint = str(checkpoint)
        self.model, self.normalize, self.weights_hash = _cached_model(
            self.checkpoint, trust, sha256, self.device
        )
        self.num_layers = len(self.model.encoder.transformer.layers)
        check_architecture(self.variant, self.num_layers, self.dim, self.checkpoint)
        self.layer = self.num_layers if layer is None else int(layer)
        if not 1 <= self.layer <= self.num_layers:
            raise SlmtokError(f"{variant} has layers 1 to {self.num_layers}; layer={layer} is out of range")
        if chunk_seconds <= 0 or context_seconds < 0:
            raise ValueError("chunk_seconds must be > 0 and context_seconds >= 0")
        self.chunk = max(1, round(chunk_seconds * SAMPLE_RATE / HOP)) * HOP
        self.context = round(context_seconds * SAMPLE_RATE / HOP) * HOP

    @cached_property
    def dim(self) -> int:
        return self.model.encoder.feature_projection.projection.out_features

    @staticmethod
    def num_frames(n_samples: int) -> int:
        """Frames for ``n_samples`` samples: ``(n - 400) // 320 + 1`` (0 below one receptive field)."""
        return max(0, (n_samples - RECEPTIVE_FIELD) // HOP + 1)

    def config(self) -> dict[str, Any]:
        """What determines the features: variant, layer, weights hash, normalisation, chunking."""
        return {
            "features": self.variant.name,
            "layer": self.layer,
            "weights": self.weights_hash,
            "normalize": self.normalize,
            "chunk": self.chunk,
            "context": self.context,
        }

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """``[T]`` -> ``[num_frames(T), D]`` (items shorter than 400 samples are zero-padded to 400)."""
        feats, lengths = self.extract(wav.reshape(1, -1), torch.tensor([wav.numel()]))
        return feats[0, : int(lengths[0])]

    @torch.inference_mode()
    def extract(
        self, wav: torch.Tensor, lengths: torch.Tensor, layer: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav`` ``[B, T]`` zero-padded, ``lengths`` ``[B]`` samples -> ``[B, T', D]`` and frames ``[B]``.

        Frames past an item's length are zero. Items longer than the chunk size run alone, chunked.
        """
        layer = self.layer if layer is None else layer
        wav = wav.to(self.device, torch.float32)
        lengths = lengths.to(torch.long).clamp_min(RECEPTIVE_FIELD)
        if wav.shape[-1] < RECEPTIVE_FIELD:
            wav = F.pad(wav, (0, RECEPTIVE_FIELD - wav.shape[-1]))
        frames = torch.tensor([self.num_frames(int(n)) for n in lengths])
        out = torch.zeros(wav.shape[0], int(frames.max()), self.dim, device=self.device)
        short = [i for i in range(wav.shape[0]) if int(lengths[i]) <= self.chunk + self.context]
        if short:
            width = int(lengths[short].max())
            feats = self._forward(wav[short, :width], lengths[short], layer)
            for j, i in enumerate(short):
                out[i, : frames[i]] = feats[j, : frames[i]]
        for i in sorted(set(range(wav.shape[0])) - set(short)):
            out[i, : frames[i]] = self._chunked(wav[i, : int(lengths[i])], layer)
        return out, frames

    def _chunked(self, wav: torch.Tensor, layer: int) -> torch.Tensor:
        n_frames = self.num_frames(wav.numel())
        pieces = []
        for first in range(0, n_frames, self.chunk // HOP):
            count = min(self.chunk // HOP, n_frames - first)
            start = max(0, first * HOP - self.context)
            stop = min(wav.numel(), (first + count - 1) * HOP + RECEPTIVE_FIELD + self.context)
            piece = wav[start:stop]
            feats = self._forward(piece[None], torch.tensor([piece.numel()]), layer)[0]
            skip = (first * HOP - start) // HOP
            pieces.append(feats[skip : skip + count])
        return torch.cat(pieces)

    def _forward(self, wav: torch.Tensor, lengths: torch.Tensor, layer: int) -> torch.Tensor:
        """``[B, T]``, ``[B]`` -> ``[B, T', D]`` at ``layer`` (1-based), batch-independent per item."""
        lengths = lengths.to(self.device)
        valid = torch.arange(wav.shape[-1], device=self.device)[None, :] < lengths[:, None]
        wav = wav * valid
        if self.normalize:
            n = lengths[:, None].float()
            mean = wav.sum(-1, keepdim=True) / n
            var = ((wav - mean) * valid).pow(2).sum(-1, keepdim=True) / n
            wav = (wav - mean) / torch.sqrt(var + 1e-5) * valid
        x, frame_lengths = _conv_features(self.model.feature_extractor, wav, lengths)
        layers = self.model.encoder.extract_features(x, frame_lengths, num_layers=layer)
        return layers[layer - 1]


def check_architecture(variant: Variant, layers: int, dim: int, checkpoint: str) -> None:
    """Refuse weights whose transformer (``layers`` x ``dim``) is not the named variant's: a HuBERT Large
    checkpoint must not pass for ``hubert-base`` (its features, layers and k-means would all be wrong)."""
    if (layers, dim) == (variant.layers, variant.dim):
        return
    fits = [v.name for v in VARIANTS.values() if (v.layers, v.dim) == (layers, dim)]
    hint = f"; load it as {' or '.join(fits)}" if fits else ""
    raise SlmtokError(
        f"{checkpoint} is a {layers}-layer, {dim}-wide HuBERT, not {variant.name} "
        f"({variant.layers} layers, {variant.dim} wide){hint}"
    )


def _conv_features(extractor, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torchaudio's convolutional feature extractor with a per-item (masked) GroupNorm."""
    x = wav[:, None]
    for block in extractor.conv_layers:
        x = block.conv(x)
        lengths = torch.div(lengths - block.kernel_size, block.stride, rounding_mode="floor") + 1
        norm = block.layer_norm
        if isinstance(norm, torch.nn.GroupNorm):
            x = _masked_group_norm(x, lengths, norm)
        elif norm is not None:
            x = norm(x)
        x = F.gelu(x)
    return x.transpose(1, 2), lengths.clamp_min(0)


def _masked_group_norm(x: torch.Tensor, lengths: torch.Tensor, norm: torch.nn.GroupNorm) -> torch.Tensor:
    """GroupNorm of ``[B, C, T]`` with statistics over each item's first ``lengths`` frames only."""
    b, c, t = x.shape
    g = norm.num_groups
    mask = (torch.arange(t, device=x.device)[None, :] < lengths[:, None]).to(x.dtype)  # [B, T]
    xg = x.reshape(b, g, c // g, t)
    m = mask[:, None, None, :]
    count = m.sum((2, 3), keepdim=True) * (c // g)
    mean = (xg * m).sum((2, 3), keepdim=True) / count
    var = ((xg - mean).pow(2) * m).sum((2, 3), keepdim=True) / count
    y = ((xg - mean) / torch.sqrt(var + norm.eps)).reshape(b, c, t)
    if norm.affine:
        y = y * norm.weight[None, :, None] + norm.bias[None, :, None]
    return y * mask[:, None, :]


def _fetch(card: str, offline: bool | None) -> tuple[str, str | None]:
    """Published weights of ``card`` through ``slmtok.hub`` (downloaded once, then from the cache)."""
    from slmtok import hub

    return str(hub.fetch(card, "weights", offline=offline)), None


def hubert_base(**options: Any) -> HuBERTFeatures:
    """``FEATURES`` factory of ``hubert-base``."""
    return HuBERTFeatures("hubert-base", **options)


def hubert_large(**options: Any) -> HuBERTFeatures:
    """``FEATURES`` factory of ``hubert-large``."""
    return HuBERTFeatures("hubert-large", **options)


def mhubert_base(**options: Any) -> HuBERTFeatures:
    """``FEATURES`` factory of ``mhubert-base``."""
    return HuBERTFeatures("mhubert-base", **options)
