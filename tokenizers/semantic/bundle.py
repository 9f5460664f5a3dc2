"""``SemanticTokenizer``: a bundle of feature extractor + layer + k-means + dedup policy + unit vocoder.

Three ways to name a bundle, one class:

- a published one (``slmtok.load("hubert-base-l6-km100")``): features, k-means and vocoder come from hub
  cards (``published.BUNDLES``), or from local files in the upstream formats: ``checkpoint=`` (HuBERT
  weights), ``kmeans=`` (km.bin or slmtok safetensors), ``vocoder=`` (g_XXXXXXXX + config.json folder);
- a bundle folder (``slmtok.load("semantic-bundle", bundle="DIR")``) written by ``slmtok kmeans fit``:
  ``bundle.json`` + ``kmeans.safetensors`` (+ the vocoder ``slmtok vocoder train`` added);
- a bundle folder registered under a name (``slmtok kmeans fit ... --name NAME``; ``slmtok.load(NAME)``).

Encode: features ``[T', D]`` -> nearest centroid per frame -> units ``[B, 1, T']``; with ``dedup=True``
runs of a unit collapse to one token and ``tokens.extras["durations"]`` ``[B, 1, T']`` keeps their
lengths in frames. Batches equal single items exactly: frames whose nearest centroid is within float
noise of a tie are re-decided on the item alone. Decode: units (expanded by their durations, or by the
vocoder's duration predictor with ``predict_durations=True``) -> unit HiFi-GAN. The bundle refuses a
vocoder whose unit count differs from K or whose frame rate differs from the features'.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from slmtok.batching import pad_stack
from slmtok.dedup import deduplicate
from slmtok.errors import SlmtokError
from slmtok.kmeans import KMeans, nearest_with_margin
from slmtok.tokenizer import Tokenizer, content_hash
from slmtok.types import PAD_CODE, TokenizerCard

BUNDLE_FILE = "bundle.json"
GENERIC_NAME = "semantic-bundle"
#: frames closer than this (relative) to a tie between two centroids are re-decided on their item alone
BATCH_MARGIN = 1e-4


class SemanticTokenizer(Tokenizer):
    """Units of a k-means over frame features; decoded by a unit vocoder. See the module docstring.

    Args:
        spec: a published bundle name (``published.BUNDLES``); set by the registry.
        bundle: a bundle folder (``bundle.json``).
        name: the registry name (set by the registry for user-registered bundles).
        checkpoint: feature-extractor weights in the upstream format (fairseq ``.pt`` / Hugging Face).
        kmeans: k-means file (slmtok safetensors, or a published scikit-learn pickle).
        vocoder: unit vocoder folder or weights file (``g_XXXXXXXX`` + ``config.json``); ``"none"``: none.
        dedup: collapse repeated units into run-length durations.
        trust: read configuration objects of an unverified fairseq checkpoint (as inert records).
        speaker, style: ids for multi-speaker / multi-style vocoders.
        predict_durations: decode deduplicated units without durations with the vocoder's predictor.
    """

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        spec: str | None = None,
        bundle: str | os.PathLike | None = None,
        name: str | None = None,
        checkpoint: str | os.PathLike | None = None,
        kmeans: str | os.PathLike | None = None,
        vocoder: str | os.PathLike | None = None,
        dedup: bool | None = None,
        trust: bool = False,
        speaker: int = 0,
        style: int = 0,
        predict_durations: bool = False,
        offline: bool | None = None,
        n_codebooks: int | None = None,
    ) -> None:
        options: dict[str, Any] = {}
        if spec is None and name is None and bundle is not None:
            options["bundle"] = str(Path(bundle).resolve())
        for key, value in (("checkpoint", checkpoint), ("kmeans", kmeans), ("vocoder", vocoder)):
            if value is not None:
                options[key] = str(value) if str(value) == "none" else str(Path(value).resolve())
        options.update({k: v for k, v in (("trust", trust), ("speaker", speaker), ("style", style)) if v})
        if predict_durations:
            options["predict_durations"] = True
        if dedup is not None:
            options["dedup"] = bool(dedup)
        super().__init__(device=device, load_options=options)
        if n_codebooks not in (None, 1):
            raise ValueError(
                f"a semantic tokenizer has one codebook; n_codebooks={n_codebooks} is out of range"
            )
        self.offline = offline
        self.speaker, self.style, self.predict_durations = int(speaker), int(style), bool(predict_durations)
        self._vocoder_card: str | None = None
        self._vocoder: Any = None
        if spec is not None:
            self._init_published(spec, checkpoint, kmeans, trust)
        else:
            if bundle is None and name is not None:
                from slmtok.tokenizers.semantic.user_registry import bundle_folder

                bundle = bundle_folder(name)
            if bundle is None:
                raise SlmtokError(
                    f"{GENERIC_NAME!r} needs bundle=FOLDER (a folder written by slmtok kmeans fit)"
                )
            self._init_folder(Path(bundle), checkpoint, kmeans, trust)
        self.dedup = bool(self.default_dedup if dedup is None else dedup)
        self.card_name = spec or name or GENERIC_NAME
        self.centroids = self.kmeans.centroids.to(self.device)
        self.kmeans_hash = content_hash({"k": self.kmeans.k}, {"centroids": self.kmeans.centroids})
        config = {"features": self.features_config, "k": self.kmeans.k, "dedup": self.dedup}
        self.card = TokenizerCard(
            name=self.card_name,
            kind="semantic",
            sample_rate=int(self.features.sample_rate),
            channels=1,
            frame_rate=float(self.features.frame_rate),
            codebook_sizes=(self.kmeans.k,),
            max_codebooks=1,
            semantic_codebooks=(0,),
            license=self.license,
            source=self.source,
            description=self.description + (", deduplicated" if self.dedup else ""),
            hash=content_hash(config, {"centroids": self.kmeans.centroids}),
        )
        self._resolve_vocoder(vocoder)

    # ------------------------------------------------------------------------------ construction
    def _init_published(self, spec_name: str, checkpoint, kmeans, trust: bool) -> None:
        from slmtok.registry import FEATURES
        from slmtok.tokenizers.semantic.published import BUNDLES

        if spec_name not in BUNDLES:
            raise SlmtokError(f"unknown published semantic bundle {spec_name!r}; one of {', '.join(BUNDLES)}")
        spec = BUNDLES[spec_name]
        self.features = FEATURES.create(
            spec.features,
            layer=spec.layer,
            checkpoint=checkpoint,
            device=self.device,
            trust=trust,
            offline=self.offline,
        )
        if kmeans is None:
            from slmtok import hub

            kmeans = hub.fetch(spec.kmeans_card, "kmeans", offline=self.offline)
        self.kmeans = _load_kmeans(kmeans, spec.k)
        self.features_config = self.features.config()
        self.default_dedup = False
        self.bundle_dir: Path | None = None
        self._bundle_vocoder: str | None = None
        self._vocoder_card = spec.vocoder_card
        self.license, self.source, self.description = spec.license, spec.source, spec.description

    def _init_folder(self, folder: Path, checkpoint, kmeans, trust: bool) -> None:
        from slmtok.registry import FEATURES

        data = read_bundle(folder)
        feats = data["features"]
        options = dict(feats.get("options") or {})
        if checkpoint is not None:
            options["checkpoint"] = str(checkpoint)
        if trust:
            options["trust"] = True
        self.features = FEATURES.create(feats["name"], device=self.device, **options)
        self.kmeans = _load_kmeans(kmeans or folder / data["kmeans"], None)
        self.features_config = _features_config(self.features, feats)
        self.default_dedup = bool(data.get("dedup", False))
        self.bundle_dir = folder
        self._bundle_vocoder = data.get("vocoder")
        self.license = data.get("license", "see the bundle's corpus")
        self.source = data.get("source", f"slmtok kmeans fit ({folder})")
        self.description = data.get("description", f"k-means units over {feats['name']} features")

    def _resolve_vocoder(self, vocoder) -> None:
        """Explicit option > the bundle's own > one registered for this name > the published card (lazy)."""
        from slmtok.tokenizers.semantic.user_registry import registered_vocoder

        if vocoder is not None:
            if str(vocoder) != "none":
                self.attach_vocoder(vocoder)
            self._vocoder_card = None
            return
        if self.bundle_dir is not None and self._bundle_vocoder:
            self.attach_vocoder(self.bundle_dir / self._bundle_vocoder)
            return
        registered = registered_vocoder(self.card.name)
        if (
            registered
            and registered.get("kmeans_hash") == self.kmeans_hash
            and Path(registered["path"]).exists()
        ):
            self.attach_vocoder(registered["path"])

    def attach_vocoder(self, path: str | os.PathLike) -> None:
        """Load a unit vocoder for decoding; refuses one whose units or frame rate do not fit."""
        from slmtok.vocoders.unit_hifigan import UnitHiFiGAN

        vocoder = UnitHiFiGAN.load(path, device=self.device)
        check_vocoder(vocoder, self.kmeans.k, self.features.frame_rate, self.card.name)
        self._vocoder = vocoder
        self._vocoder_card = None

    @property
    def vocoder(self):
        """The unit vocoder (the published one is fetched on first use), or ``None``."""
        if self._vocoder is None and self._vocoder_card is not None:
            from slmtok import hub
            from slmtok.vocoders.unit_hifigan import UnitHiFiGAN

            weights = hub.fetch(self._vocoder_card, "weights", offline=self.offline)
            config = hub.fetch(self._vocoder_card, "config", offline=self.offline)
            vocoder = UnitHiFiGAN.load(weights, config=config, device=self.device)
            check_vocoder(vocoder, self.kmeans.k, self.features.frame_rate, self.card.name)
            self._vocoder, self._vocoder_card = vocoder, None
        return self._vocoder

    # ------------------------------------------------------------------------------ units
    def frame_units(self, wav: torch.Tensor) -> torch.Tensor:
        """``[T]`` audio at ``card.sample_rate`` -> frame-level units ``[T']`` (no deduplication)."""
        return nearest_with_margin(self.features(wav.to(self.device)), self.centroids)[0].cpu()

    #: run HuBERT on padded batches on the CPU too. Off: on 2 CPU cores one file at a time is faster
    #: (7.3 vs 5.9 audio s/s, ``benchmarks/semantic_hubert_speed.py``: padding and attention over the
    #: padded length cost more than batching saves) and needs no near-tie re-check. GPUs always batch.
    batch_features_on_cpu: bool = False

    def _batch_units(self, wav: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        per_item = not hasattr(self.features, "extract")  # per-item extractors (MFCC, log-mel)
        if per_item or (torch.device(self.device).type == "cpu" and not self.batch_features_on_cpu):
            return [self.frame_units(wav[i, 0, : int(lengths[i])]) for i in range(wav.shape[0])]
        feats, frames = self.features.extract(wav[:, 0], lengths)
        rows = torch.cat([feats[i, : int(frames[i])] for i in range(wav.shape[0])])
        labels, margin = nearest_with_margin(rows, self.centroids)
        units = list(labels.cpu().split(frames.tolist()))
        if wav.shape[0] > 1:
            close = list(margin.cpu().split(frames.tolist()))
            for i in range(wav.shape[0]):
                if close[i].numel() and float(close[i].min()) < BATCH_MARGIN:
                    units[i] = self.frame_units(wav[i, 0, : int(lengths[i])])
        return units

    def _encode(self, wav, lengths, n_codebooks):
        units = self._batch_units(wav, lengths)
        extras = {}
        if self.dedup:
            runs = [deduplicate(u) for u in units]
            units = [u for u, _ in runs]
            extras["durations"] = pad_stack([d[None] for _, d in runs], 0)
        frame_lengths = torch.tensor([u.numel() for u in units])
        return pad_stack([u[None] for u in units], PAD_CODE), frame_lengths, extras

    def _decode(self, codes, lengths, extras):
        vocoder = self.vocoder
        if vocoder is None:
            raise SlmtokError(
                f"{self.card.name!r} has no unit vocoder: train one with `slmtok vocoder train --tokenizer "
                f"{self.card.name} CORPUS -o DIR`, or pass vocoder=PATH"
            )
        durations = extras.get("durations")
        wav, sample_lengths = vocoder(
            codes[:, 0],
            lengths,
            durations=None if durations is None else durations[:, 0],
            predict_durations=self.predict_durations and durations is None,
            speaker=self.speaker,
            style=self.style,
        )
        if vocoder.sample_rate != self.card.sample_rate:
            from slmtok.audio import resample

            items = [
                resample(wav[i, 0, : int(n)].cpu(), vocoder.sample_rate, self.card.sample_rate)
                for i, n in enumerate(sample_lengths)
            ]
            sample_lengths = torch.tensor([x.numel() for x in items])
            wav = pad_stack([x[None] for x in items])
        return wav, sample_lengths


def check_vocoder(vocoder, k: int, frame_rate: float, name: str) -> None:
    """Refuse a unit vocoder whose unit vocabulary or frame rate does not match the bundle."""
    if vocoder.num_units != k:
        raise SlmtokError(
            f"unit vocoder {vocoder.source or ''} has {vocoder.num_units} units but {name!r} has k-means K={k}; "
            "it would decode gibberish"
        )
    if abs(vocoder.frame_rate - frame_rate) > 1e-6:
        raise SlmtokError(
            f"unit vocoder expects {vocoder.frame_rate:g} units/s but {name!r} makes {frame_rate:g} frames/s"
        )


def _load_kmeans(path, k: int | None) -> KMeans:
    from slmtok.kmeans import load

    km = load(path)
    if k is not None and km.k != k:
        raise SlmtokError(f"k-means file {path} has K={km.k}, this bundle needs K={k}")
    return km


def _features_config(features, spec: dict[str, Any]) -> dict[str, Any]:
    config = getattr(features, "config", None)
    if callable(config):  # HuBERT / transformers extractors describe themselves
        return config()
    return {
        "features": spec["name"],
        **{k: v for k, v in (spec.get("options") or {}).items() if k != "checkpoint"},
    }


def read_bundle(folder: str | os.PathLike) -> dict[str, Any]:
    """Parse ``folder/bundle.json``."""
    path = Path(folder) / BUNDLE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SlmtokError(f"not a semantic bundle folder: {folder} (no readable {BUNDLE_FILE})") from None
    if data.get("format") != "slmtok-semantic-bundle":
        raise SlmtokError(f"{path} is not a slmtok semantic bundle")
    return data


def write_bundle(folder: str | os.PathLike, data: dict[str, Any]) -> Path:
    """Write ``bundle.json`` atomically (``format`` and ``version`` are added)."""
    from slmtok.atomic import atomic_path

    path = Path(folder) / BUNDLE_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps({"format": "slmtok-semantic-bundle", "version": 1, **data}, indent=2) + "\n"
        )
    return path
