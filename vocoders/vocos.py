"""Vocos (``pip install vocos``) mel vocoder: log-mel frames -> audio through the vocos package's own model.

A checkpoint is the folder the vocos authors publish (``charactr/vocos-mel-24khz``): ``config.yaml``
(``feature_extractor`` / ``backbone`` / ``head``, each a ``class_path`` + ``init_args``) and
``pytorch_model.bin`` (a state dict). Safety: ``class_path`` must name a class of the ``vocos`` package
(``vocos.`` prefix; anything else is refused before anything is imported or built), and the weights are
read by ``slmtok.hub.safe_load.load_torch_checkpoint`` (torch's restricted unpickler, like every
checkpoint slmtok reads). The model is ``vocos.Vocos`` built from those classes.

Vocos's EnCodec-token decoder (``charactr/vocos-encodec-24khz``) is ``slmtok.vocoders.vocos_encodec``,
used as ``slmtok.load("encodec-24khz", vocoder="vocos")``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from slmtok.errors import SlmtokError

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "pytorch_model.bin"


def _build(init: Any, part: str, config: Path):
    """``vocos``'s ``instantiate_class`` for ``init`` after checking its ``class_path`` is vocos's own."""
    from vocos.pretrained import instantiate_class

    if not isinstance(init, dict) or not isinstance(init.get("class_path"), str):
        raise SlmtokError(f"{config}: {part} needs a class_path")
    if not init["class_path"].startswith("vocos.") or init["class_path"].count(".") < 2:
        raise SlmtokError(f"{config}: {part} class_path {init['class_path']!r} is not a class of vocos")
    if part == "feature_extractor" and init["class_path"].endswith("EncodecFeatures"):
        raise SlmtokError(
            f"{config}: an EnCodec-token Vocos; load it with slmtok.load('encodec-24khz', vocoder=FOLDER)"
        )
    try:
        return instantiate_class(args=(), init=init)
    except (AttributeError, ImportError, TypeError, ValueError) as error:
        raise SlmtokError(f"{config}: cannot build {part}: {error}") from None


class VocosMel:
    """Mel frames -> audio with ``vocos.Vocos`` (mel feature extractor, Vocos backbone, ISTFT head)."""

    def __init__(self, model, *, device: str | torch.device = "cpu", source: str = "") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.source = source
        mel = model.feature_extractor.mel_spec
        self.sample_rate = int(mel.sample_rate)
        self.hop_length = int(mel.hop_length)
        self.num_mels = int(mel.n_mels)

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, *, device: str | torch.device = "cpu") -> VocosMel:
        """A published folder: ``config.yaml`` + ``pytorch_model.bin``."""
        import yaml
        from vocos import Vocos

        from slmtok.hub.safe_load import load_torch_checkpoint

        folder = Path(checkpoint)
        config, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not config.is_file() or not weights.is_file():
            raise SlmtokError(
                f"a Vocos checkpoint is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}: {folder}"
            )
        try:
            raw = yaml.safe_load(config.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise SlmtokError(f"cannot read {config}: {str(error).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise SlmtokError(f"{config} is not a Vocos config")
        parts = {p: _build(raw.get(p), p, config) for p in ("feature_extractor", "backbone", "head")}
        model = Vocos(**parts)
        try:
            state = load_torch_checkpoint(weights)  # slmtok's one checkpoint policy
            model.load_state_dict(state, strict=True)
        except Exception as error:  # noqa: BLE001 (unpickling / shape errors: one line)
            first = (str(error).splitlines() or [type(error).__name__])[0]
            raise SlmtokError(f"cannot load Vocos weights {weights}: {first}") from None
        return cls(model, device=device, source=str(folder))

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` audio at ``sample_rate`` -> ``[B, num_mels, T // hop + 1]`` (vocos's own features)."""
        with torch.inference_mode():
            return self.model.feature_extractor(wav.to(self.device))

    @torch.inference_mode()
    def __call__(
        self, mel: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``mel`` ``[B, num_mels, T]``, ``lengths`` ``[B]`` frames -> wav ``[B, 1, T * hop]``, sample lengths
        ``[B]`` (``lengths * hop``). Items run alone at their own length (the backbone's convolutions and
        ISTFT would otherwise see the padding), so a batch gives each item its solo audio."""
        if mel.ndim != 3 or mel.shape[1] != self.num_mels:
            raise SlmtokError(f"Vocos takes [B, {self.num_mels}, T] mel frames, got {tuple(mel.shape)}")
        if lengths is None:
            lengths = torch.full((mel.shape[0],), mel.shape[-1], dtype=torch.long)
        out = torch.zeros(mel.shape[0], 1, mel.shape[-1] * self.hop_length, device=self.device)
        for i, n in enumerate(lengths.tolist()):
            wav = self.model.decode(mel[i : i + 1, :, :n].to(self.device))[0]
            out[i, 0, : wav.numel()] = wav[: out.shape[-1]]
        return out, lengths.cpu() * self.hop_length


def load_vocos(
    checkpoint: str | os.PathLike | None = None,
    *,
    card: str | os.PathLike = "vocos-mel-24khz",
    device: str | torch.device = "cpu",
    offline: bool | None = None,
) -> VocosMel:
    """Registry factory of ``vocos``: ``checkpoint`` folder, else the card's files from the slmtok cache."""
    return VocosMel.load(checkpoint or card_folder(card, offline=offline), device=device)


def card_folder(card: str | os.PathLike, *, offline: bool | None = None) -> Path:
    """The cache folder holding a Vocos hub card's ``config.yaml`` and ``pytorch_model.bin`` (fetched if
    needed): the layout every published Vocos checkpoint has."""
    from slmtok import hub

    config = Path(hub.fetch(card, "config", offline=offline))
    weights = Path(hub.fetch(card, "weights", offline=offline))
    if config.parent != weights.parent or config.name != CONFIG_NAME or weights.name != WEIGHTS_NAME:
        raise SlmtokError(f"hub card {card}: needs {CONFIG_NAME} and {WEIGHTS_NAME} in one cache folder")
    return config.parent
