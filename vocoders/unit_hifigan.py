"""``hifigan-unit``: the unit HiFi-GAN of speech-resynthesis and fairseq (CodeHiFiGAN).

Discrete units -> embedding (``dict``) -> HiFi-GAN generator, optionally with a speaker (``spkr``) and a
style (``style``) embedding concatenated to every frame, and a duration predictor (``dur_predictor``)
that re-inflates deduplicated units. Official checkpoints are a ``g_XXXXXXXX`` (or ``generator.pt``)
file holding ``{"generator": state_dict}`` beside a ``config.json``; both load here unchanged, through
``slmtok.hub.safe_load`` (torch's restricted unpickler, no code run). slmtok's own trained vocoders are
``generator.safetensors`` + ``config.json`` with the same keys.

Unit ``u`` of a k-means with K clusters is embedding row ``u`` (no offset), so a vocoder fits a k-means
exactly when ``num_embeddings == K``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slmtok.errors import SlmtokError
from slmtok.vocoders.hifigan import Generator, GeneratorConfig

WEIGHT_FILES = ("generator.safetensors", "generator.pt")


@dataclass(frozen=True)
class UnitVocoderConfig:
    """A unit HiFi-GAN ``config.json``: generator shape, unit vocabulary, conditioning, rates."""

    generator: GeneratorConfig
    num_embeddings: int
    embedding_dim: int = 128
    sampling_rate: int = 16000
    code_hop_size: int = 320
    multispkr: bool = False
    num_speakers: int = 200
    multistyle: bool = False
    num_styles: int = 100
    dur_predictor_params: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitVocoderConfig:
        if "num_embeddings" not in data:
            raise SlmtokError("unit vocoder config.json has no num_embeddings: not a unit HiFi-GAN config")
        if data.get("f0") or data.get("f0_quantizer_path") or data.get("embedder_params"):
            raise SlmtokError("unit vocoders conditioned on F0 or speaker embeddings are not supported")
        generator = GeneratorConfig.from_dict({"model_in_dim": data.get("model_in_dim", 128), **data})
        config = cls(
            generator=generator,
            num_embeddings=int(data["num_embeddings"]),
            embedding_dim=int(data.get("embedding_dim", 128)),
            sampling_rate=int(data.get("sampling_rate", 16000)),
            code_hop_size=int(data.get("code_hop_size", generator.hop_length)),
            multispkr=bool(data.get("multispkr")),
            num_speakers=int(data.get("num_speakers", 200)),
            multistyle=bool(data.get("multistyle")),
            num_styles=int(data.get("num_styles", 100)),
            dur_predictor_params=data.get("dur_predictor_params") or None,
            raw=dict(data),
        )
        expected_in = config.embedding_dim * (1 + config.multispkr + config.multistyle)
        if generator.model_in_dim != expected_in:
            raise SlmtokError(
                f"unit vocoder config: model_in_dim {generator.model_in_dim} != embedding_dim x inputs {expected_in}"
            )
        if generator.hop_length != config.code_hop_size:
            raise SlmtokError(
                f"unit vocoder config: upsampling {generator.hop_length} != code_hop_size {config.code_hop_size}"
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        data = {**self.raw, **self.generator.to_dict()}
        data.update(
            num_embeddings=self.num_embeddings,
            embedding_dim=self.embedding_dim,
            sampling_rate=self.sampling_rate,
            code_hop_size=self.code_hop_size,
        )
        for key in ("multispkr", "multistyle", "dur_predictor_params"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data


class VariancePredictor(nn.Module):
    """fairseq/speech-resynthesis duration predictor: two conv + LayerNorm blocks, a linear head.

    ``[B, T, C]`` unit embeddings -> ``[B, T]`` log(1 + duration in frames). With ``mask`` ``[B, T]``
    the padded steps are zeroed between convolutions (batch == single).
    """

    def __init__(
        self,
        encoder_embed_dim: int,
        var_pred_hidden_dim: int,
        var_pred_kernel_size: int,
        var_pred_dropout: float,
    ) -> None:
        super().__init__()
        k = var_pred_kernel_size
        self.conv1 = nn.Sequential(
            nn.Conv1d(encoder_embed_dim, var_pred_hidden_dim, k, padding=(k - 1) // 2), nn.ReLU()
        )
        self.ln1 = nn.LayerNorm(var_pred_hidden_dim)
        self.dropout = float(var_pred_dropout)
        self.conv2 = nn.Sequential(
            nn.Conv1d(var_pred_hidden_dim, var_pred_hidden_dim, k, padding=1), nn.ReLU()
        )
        self.ln2 = nn.LayerNorm(var_pred_hidden_dim)
        self.proj = nn.Linear(var_pred_hidden_dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = None if mask is None else mask[..., None].to(x.dtype)
        x = x if keep is None else x * keep
        x = self.conv1(x.transpose(1, 2)).transpose(1, 2)
        x = F.dropout(self.ln1(x), p=self.dropout, training=self.training)
        x = x if keep is None else x * keep
        x = self.conv2(x.transpose(1, 2)).transpose(1, 2)
        x = F.dropout(self.ln2(x), p=self.dropout, training=self.training)
        return self.proj(x).squeeze(-1)


class CodeGenerator(Generator):
    """Units ``[B, T]`` -> ``[B, 1, T * code_hop_size]``; parameter names as the official checkpoints."""

    def __init__(self, config: UnitVocoderConfig) -> None:
        super().__init__(config.generator)
        self.unit_config = config
        self.dict = nn.Embedding(config.num_embeddings, config.embedding_dim)
        if config.multispkr:
            self.spkr = nn.Embedding(config.num_speakers, config.embedding_dim)
        if config.multistyle:
            self.style = nn.Embedding(config.num_styles, config.embedding_dim)
        self.dur_predictor = (
            VariancePredictor(**config.dur_predictor_params) if config.dur_predictor_params else None
        )

    def embed(
        self, units: torch.Tensor, speaker: torch.Tensor | None = None, style: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B, T]`` units (padding may be -1) -> generator input ``[B, model_in_dim, T]``."""
        x = self.dict(units.clamp_min(0)).transpose(1, 2)
        parts = [x]
        for name, ids in (("spkr", speaker), ("style", style)):
            if hasattr(self, name):
                ids = (
                    torch.zeros(units.shape[0], dtype=torch.long, device=units.device) if ids is None else ids
                )
                parts.append(
                    getattr(self, name)(ids.to(units.device))[:, :, None].expand(-1, -1, units.shape[1])
                )
        return torch.cat(parts, dim=1)

    def forward(  # type: ignore[override]
        self,
        units: torch.Tensor,
        lengths: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
        style: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return super().forward(self.embed(units, speaker, style), lengths)

    def predict_durations(self, units: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Deduplicated units ``[B, T]`` -> durations in frames ``[B, T]`` (>= 1; 0 past ``lengths``)."""
        if self.dur_predictor is None:
            raise SlmtokError("this unit vocoder has no duration predictor; pass the durations")
        mask = torch.arange(units.shape[1], device=units.device)[None, :] < lengths[:, None]
        log_dur = self.dur_predictor(self.dict(units.clamp_min(0)), mask)
        durations = torch.clamp(torch.round(torch.exp(log_dur) - 1).long(), min=1)
        return durations * mask


def find_checkpoint(path: str | os.PathLike, config: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Resolve ``(weights, config.json)`` from a folder (newest ``g_XXXXXXXX``, ``generator.pt`` or
    ``generator.safetensors``) or from a weights file with ``config.json`` beside it."""
    path = Path(path)
    if path.is_dir():
        numbered = sorted(p for p in path.iterdir() if re.fullmatch(r"g_\d+", p.name))
        named = [path / n for n in WEIGHT_FILES if (path / n).is_file()]
        candidates = named + numbered[-1:]
        if not candidates:
            raise SlmtokError(f"no unit vocoder weights (g_XXXXXXXX, generator.pt/.safetensors) in {path}")
        weights = candidates[0]
    elif path.is_file():
        weights = path
    else:
        raise SlmtokError(f"no such unit vocoder checkpoint: {path}")
    config_path = Path(config) if config is not None else weights.parent / "config.json"
    if not config_path.is_file():
        raise SlmtokError(f"no config.json for unit vocoder {weights} (looked for {config_path})")
    return weights, config_path


def read_generator_state(path: Path) -> dict[str, torch.Tensor]:
    """The generator's state dict from safetensors or an official ``{"generator": ...}`` torch file."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from slmtok.hub.errors import CheckpointError
    from slmtok.hub.safe_load import load_torch_checkpoint

    try:
        data = load_torch_checkpoint(path)
    except CheckpointError as error:
        raise SlmtokError(f"cannot read unit vocoder weights {path}: {error}") from None
    state = data.get("generator", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SlmtokError(f"{path} holds no generator state dict")
    return state


class UnitHiFiGAN:
    """A loaded unit vocoder for inference: weight norm removed, batched with lengths.

    >>> vocoder = UnitHiFiGAN.load("hubert_base_100_lj/")            # g_00500000 + config.json
    >>> wav, lengths = vocoder(units, unit_lengths)                   # [B, T] -> [B, 1, T * 320]
    """

    def __init__(
        self,
        config: UnitVocoderConfig,
        state_dict: dict[str, torch.Tensor] | None = None,
        *,
        device: str | torch.device = "cpu",
        source: str = "",
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.source = source
        model = CodeGenerator(config)
        if state_dict is not None:
            try:
                missing, unexpected = model.load_state_dict(state_dict, strict=False)
            except RuntimeError as error:  # shape mismatch: name the first one
                detail = next(
                    (ln.strip() for ln in str(error).splitlines() if "size mismatch" in ln), str(error)
                )
                raise SlmtokError(
                    f"unit vocoder weights {source} do not fit their config.json: {detail}"
                ) from None
            if missing or unexpected:
                key = (missing or unexpected)[0]
                what = "misses" if missing else "has an unexpected"
                raise SlmtokError(
                    f"unit vocoder weights {source or ''} {what} parameter {key!r} for its config.json".replace(
                        "  ", " "
                    )
                )
            self.state_hash = _state_hash(config, state_dict)
        else:
            self.state_hash = ""
        model.eval()
        model.remove_weight_norm()
        self.model = model.to(self.device)

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike,
        *,
        config: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> UnitHiFiGAN:
        """Load an official (``g_XXXXXXXX`` / ``generator.pt`` + ``config.json``) or slmtok-trained unit
        vocoder from a folder or a weights file."""
        weights, config_path = find_checkpoint(checkpoint, config)
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise SlmtokError(f"cannot read {config_path}: {error}") from None
        return cls(
            UnitVocoderConfig.from_dict(raw),
            read_generator_state(weights),
            device=device,
            source=str(weights),
        )

    @property
    def num_units(self) -> int:
        """Size of the unit vocabulary (must equal the k-means K)."""
        return self.config.num_embeddings

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def hop_length(self) -> int:
        """Output samples per unit frame."""
        return self.config.code_hop_size

    @property
    def frame_rate(self) -> float:
        """Unit frames per second the vocoder expects."""
        return self.sample_rate / self.hop_length

    @property
    def has_duration_predictor(self) -> bool:
        return self.model.dur_predictor is not None

    @torch.inference_mode()
    def __call__(
        self,
        units: torch.Tensor,
        lengths: torch.Tensor,
        *,
        durations: torch.Tensor | None = None,
        predict_durations: bool = False,
        speaker: int | torch.Tensor = 0,
        style: int | torch.Tensor = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Units -> waveform.

        Args:
            units: ``[B, T]`` int64 unit ids in ``[0, num_units)``; padding past ``lengths`` is ignored.
            lengths: ``[B]`` valid units per item.
            durations: ``[B, T]`` frames per unit (deduplicated units); expanded before vocoding.
            predict_durations: expand deduplicated units with the duration predictor instead.
            speaker, style: ids (or ``[B]`` tensors) for multi-speaker / multi-style vocoders.

        Returns:
            ``wav`` ``[B, 1, S]`` float in [-1, 1] (zero past each item's end) and ``lengths`` ``[B]`` in
            samples (frames x ``hop_length``).
        """
        units = units.to(self.device).long()
        lengths = lengths.to(self.device).long()
        if predict_durations and durations is None:
            durations = self.model.predict_durations(units, lengths)
        if durations is not None:
            units, lengths = _expand(units, lengths, durations.to(self.device))
        batch = units.shape[0]
        speaker_ids = torch.as_tensor(speaker, device=self.device).long().expand(batch)
        style_ids = torch.as_tensor(style, device=self.device).long().expand(batch)
        if units.shape[1] == 0:
            return torch.zeros(batch, 1, 0, device=self.device), torch.zeros(batch, dtype=torch.long)
        wav = self.model(units, lengths, speaker_ids, style_ids)
        return wav, lengths.cpu() * self.hop_length


def _expand(
    units: torch.Tensor, lengths: torch.Tensor, durations: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat each unit by its duration: ``[B, T]`` -> ``[B, T']`` padded with -1, new lengths ``[B]``."""
    from slmtok.batching import pad_stack

    items = [
        torch.repeat_interleave(units[i, : int(lengths[i])], durations[i, : int(lengths[i])].clamp_min(0))
        for i in range(units.shape[0])
    ]
    new_lengths = torch.tensor([x.numel() for x in items], device=units.device)
    if not items or int(new_lengths.max()) == 0:
        return units[:, :0], new_lengths
    return pad_stack(items, -1), new_lengths


def _state_hash(config: UnitVocoderConfig, state: dict[str, torch.Tensor]) -> str:
    from slmtok.tokenizer import content_hash

    return content_hash({"unit_vocoder": config.to_dict()}, state)


def load_unit_vocoder(
    checkpoint: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> UnitHiFiGAN:
    """Registry factory of ``hifigan-unit`` (``slmtok.registry.VOCODERS``)."""
    return UnitHiFiGAN.load(checkpoint, config=config, device=device)
