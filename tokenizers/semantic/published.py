"""The published semantic bundles, read from their hub cards (the one place these facts live).

A card of family ``semantic`` in ``hub/cards/semantic/`` names a bundle: ``features`` (a FEATURES
registry name), ``layer``, ``codebook_size`` (K), its ``kmeans`` file, the unit vocoder card (``vocoder``,
optional), ``license``, ``source`` and ``description``. ``BUNDLES`` maps each name to a ``BundleSpec``
built from its card; nothing about a published bundle is written down twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slmtok.hub.cards import BUILTIN_DIR, ModelCard, load_card
from slmtok.hub.errors import CardError


@dataclass(frozen=True)
class BundleSpec:
    """A published semantic tokenizer: feature extractor + layer + k-means (+ unit vocoder) cards."""

    name: str
    features: str  # FEATURES registry name
    layer: int
    k: int
    kmeans_card: str  # hub card with a "kmeans" file
    vocoder_card: str | None  # hub card of a unit HiFi-GAN (files "weights" + "config"), if one exists
    license: str
    source: str
    description: str


def spec_from_card(card: ModelCard) -> BundleSpec:
    """The bundle a ``semantic`` card describes; ``CardError`` names a missing or mistyped field."""
    extra = card.extra
    features, layer, vocoder = extra.get("features"), extra.get("layer"), extra.get("vocoder")
    if not isinstance(features, str) or not isinstance(layer, int) or isinstance(layer, bool):
        raise CardError(
            f"{card.path or card.name}: a semantic bundle card needs features (str) and layer (int)"
        )
    if vocoder is not None and not isinstance(vocoder, str):
        raise CardError(f"{card.path or card.name}: vocoder must be a card name")
    if not card.codebook_size:
        raise CardError(f"{card.path or card.name}: a semantic bundle card needs codebook_size (K)")
    card.file("kmeans")
    return BundleSpec(
        name=card.name,
        features=features,
        layer=layer,
        k=card.codebook_size,
        kmeans_card=card.name,
        vocoder_card=vocoder,
        license=card.license,
        source=card.source,
        description=str(extra.get("description") or card.title),
    )


def _builtin_bundles() -> dict[str, BundleSpec]:
    folder = Path(BUILTIN_DIR) / "semantic"
    return {spec.name: spec for spec in (spec_from_card(load_card(p)) for p in sorted(folder.glob("*.toml")))}


BUNDLES: dict[str, BundleSpec] = _builtin_bundles()
