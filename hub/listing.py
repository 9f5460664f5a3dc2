"""Tokenizer-table rows from model cards: what ``slmtok list`` / ``slmtok info`` show for a codec whose
weights are not downloaded (listing never downloads or loads a checkpoint).

A card named like a registered codec or hybrid tokenizer (``dac-44khz``) describes what that tokenizer
gives with its published weights: sample rate, frame rate, codebooks (``default_codebooks`` of them by
default, ``codebooks`` at most), channels, and the weights' URL and sha256. Bitrate and tokens/s are
computed from those, as ``TokenizerCard`` computes them from a loaded model.

``needed_files`` lists every file a tokenizer needs (what ``slmtok download NAME`` fetches: a semantic
bundle's feature-extractor checkpoint, k-means and unit vocoder; a codec's card files) and
``availability`` says, without loading or hashing anything, whether they are all in the cache and checked
(an unchanged file with a cache-index record) and whether the upstream package is installed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from slmtok.hub.cards import CardFile, ModelCard, get_card, has_card
from slmtok.hub.download import cache_path, fetch_info, read_record

KIND_OF_FAMILY = {"codec": "acoustic", "hybrid": "hybrid", "semantic": "semantic"}
#: the file whose URL and digest the row shows (a semantic bundle's own file is its k-means)
PRIMARY_ROLE = {"codec": "weights", "hybrid": "weights", "semantic": "kmeans"}


def card_row(name: str, description: str = "") -> dict[str, Any] | None:
    """The table row of tokenizer ``name`` from its hub card, or ``None`` if it has no codec/hybrid/semantic card
    with rates and codebooks. Keys as ``TokenizerCard.to_dict()`` (``hash`` empty: known once loaded),
    plus ``weights_url``, ``weights_sha256`` (published, or recorded at download; may be empty),
    ``weights_sha256_prefix`` (EnCodec's file names), ``weights_verification`` and ``weights_cached``."""
    if not has_card(name):
        return None
    card = get_card(name)
    if card.family not in KIND_OF_FAMILY or not (card.frame_rate and card.codebooks and card.codebook_size):
        return None
    k = int(card.extra.get("default_codebooks", card.codebooks))
    sizes = [card.codebook_size] * k
    role = PRIMARY_ROLE[card.family]
    weights = fetch_info(card, role)
    default_semantic = [0] if card.family == "semantic" else []
    bitrate = card.frame_rate * sum(math.log2(s) for s in sizes)
    return {
        "kind": KIND_OF_FAMILY[card.family],
        "sample_rate": card.sample_rate,
        "output_sample_rate": int(card.extra.get("output_sample_rate", card.sample_rate)),
        "channels": int(card.extra.get("channels", 1)),
        "frame_rate": card.frame_rate,
        "codebook_sizes": sizes,
        "max_codebooks": card.codebooks,
        "semantic_codebooks": list(card.extra.get("semantic_codebooks", default_semantic)),
        "license": card.license,
        "source": weights["url"],
        "description": description or card.title,
        "hash": "",
        "n_codebooks": k,
        "bitrate": bitrate,
        "tokens_per_second": card.frame_rate * k,
        "card": card.name,
        "paper": card.paper,
        "weights_url": weights["url"],
        "weights_sha256": weights["sha256"],
        "weights_role": role,
        "weights_sha256_prefix": card.file(role).sha256_prefix,
        "weights_verification": card.file(role).provenance,
        "weights_cached": weights["cached"],
    }


#: the upstream package (import name) a card-backed tokenizer runs on, by card family or name prefix
UPSTREAM_PACKAGE = {
    "encodec": "encodec",
    "dac": "dac",
    "snac": "snac",
    "speechtokenizer": "speechtokenizer",
    "mimi": "transformers",
    "xcodec2": "transformers",
    "neucodec": "transformers",
    "wavtokenizer": "transformers",
    "xcodec": "transformers",
    "semantic": "torchaudio",  # HuBERT features and the unit HiFi-GAN
}


#: the files of a feature-extractor card that its loader reads (a fairseq HuBERT card: ``weights`` only;
#: a transformers one: ``config`` + ``weights`` + ``preprocessor``; ``hf-*`` alternatives are not needed)
FEATURE_ROLES = ("config", "weights", "preprocessor")


@dataclass(frozen=True)
class NeededFile:
    """One file a tokenizer needs: its card, the card's entry, why it is needed and where it is cached."""

    card: ModelCard
    entry: CardFile
    purpose: str
    path: str

    @property
    def size(self) -> int | None:
        """Bytes, as the card gives them (``None`` when it does not)."""
        return self.entry.size


def _features_card(features: str) -> str:
    """The hub card a FEATURES registry name loads by default (``hubert-base`` -> ``hubert-base-ls960``,
    ``mhubert-147`` -> ``mhubert-147-3rd-iter``), without importing torch where the card's name says it: the
    ``features`` card of that name, else the one named ``<name>-...``; else the loaders' own variant
    tables (transformers features, then HuBERT). ``SlmtokError`` when none. (A test checks that the names
    agree with the tables for every registered feature extractor.)"""
    from slmtok.errors import SlmtokError
    from slmtok.hub.cards import list_cards

    exact = [c for c in list_cards(features) if get_card(c).family == "features"]
    named = exact or [c for c in list_cards(f"{features}-*") if get_card(c).family == "features"]
    if len(named) == 1:
        return named[0]
    from slmtok.tokenizers.features import hubert, transformers_features

    for variants in (transformers_features.VARIANTS, hubert.VARIANTS):
        if features in variants:
            return variants[features].card
    raise SlmtokError(f"feature extractor {features!r} has no published checkpoint card")


def needed_files(name: str | os.PathLike | ModelCard) -> list[NeededFile]:
    """Every file tokenizer (or card) ``name`` needs, in download order.

    A semantic bundle card: the feature extractor's checkpoint (its ``weights``, and the ``config`` and
    ``preprocessor`` files of a transformers-format card), the k-means file and the unit vocoder's weights
    and config (when the card names one). Any other card: all of its files. ``CardError`` /
    ``SlmtokError`` when ``name`` has no card."""
    card = get_card(name)
    picks: list[tuple[ModelCard, str, str]] = []
    if card.family == "semantic":
        from slmtok.tokenizers.semantic.published import spec_from_card

        spec = spec_from_card(card)
        features = get_card(_features_card(spec.features))
        picks += [(features, f.role, "features") for f in features.files if f.role in FEATURE_ROLES]
        picks.append((card, "kmeans", "k-means"))
        if spec.vocoder_card:
            vocoder = get_card(spec.vocoder_card)
            picks += [(vocoder, "weights", "vocoder"), (vocoder, "config", "vocoder")]
    else:
        picks = [(card, f.role, card.family) for f in card.files]
    return [NeededFile(c, c.file(role), purpose, str(cache_path(c, role))) for c, role, purpose in picks]


def upstream_package(card: ModelCard) -> str:
    """The import name of the package a card-backed tokenizer runs on, or ``""``."""
    return UPSTREAM_PACKAGE.get(card.family) or UPSTREAM_PACKAGE.get(card.name.split("-")[0], "")


def availability(name: str) -> dict[str, Any]:
    """Whether card-backed tokenizer ``name`` can be loaded here now, without downloading: ``available``
    (every needed file cached and checked, and the package installed), ``reason`` (when not),
    ``files_needed``, ``files_cached`` (checked), ``missing_files`` (paths), ``package`` and
    ``package_installed`` (``importlib.util.find_spec``, nothing imported)."""
    import importlib.util

    card = get_card(name)
    files = needed_files(card)
    cached, unchecked, missing = [], [], []
    for f in files:
        if read_record(f.path) is not None:
            cached.append(f)
        elif os.path.lexists(f.path):
            unchecked.append(f)
        else:
            missing.append(f)
    package = upstream_package(card)
    installed = not package or importlib.util.find_spec(package) is not None
    reasons = []
    if not installed:
        reasons.append(f"package {package} is not installed")
    if missing or unchecked:
        noun = "file" if len(files) == 1 else "files"
        absent = [f"{len(missing)} of {len(files)} {noun} not downloaded"] if missing else []
        absent += [f"{len(unchecked)} not yet checked"] if unchecked else []
        reasons.append(", ".join(absent) + f" (slmtok download {card.name})")
    return {
        "available": not reasons,
        **({"reason": "; ".join(reasons)} if reasons else {}),
        "files_needed": len(files),
        "files_cached": len(cached),
        "missing_files": [f.path for f in missing + unchecked],
        "package": package,
        "package_installed": installed,
    }


#: the package a feature extractor or vocoder runs on, by the module its registry entry names
MODULE_PACKAGE = {
    "slmtok.tokenizers.features.transformers_features": "transformers",
    "slmtok.tokenizers.features.hubert": "torchaudio",
    "slmtok.vocoders.vocos": "vocos",
    "slmtok.vocoders.vocos_encodec": "vocos",
}


def _component_cards(kind: str, name: str, names: list[str]) -> list[ModelCard]:
    """The hub cards of feature extractor / vocoder ``name``: a features card through ``_features_card``;
    vocoder cards named ``<name>-...`` and not claimed by a longer registered name (``hifigan-unit-*`` are
    ``hifigan-unit``'s, not ``hifigan``'s)."""
    from slmtok.errors import SlmtokError
    from slmtok.hub.cards import list_cards

    if kind == "features":
        try:
            return [get_card(_features_card(name))]
        except SlmtokError:  # weight-free (MFCC, log-mel) or no published checkpoint
            return []
    cards = []
    for card_name in list_cards(f"{name}-*"):
        card = get_card(card_name)
        longer = [n for n in names if len(n) > len(name) and card_name.startswith(f"{n}-")]
        if card.family == "vocoder" and not longer:
            cards.append(card)
    return cards


def component_rows(kind: str, pattern: str = "*") -> list[dict[str, Any]]:
    """Rows of ``slmtok list --kind features|vocoders``: every registered feature extractor or vocoder
    matching ``pattern``, with its hub cards, without loading or downloading anything.

    ``cards``: the published checkpoints it loads by default; ``files_needed`` / ``files_cached``: their
    files the loader reads (a features card: ``FEATURE_ROLES``) and how many are in the cache and checked;
    ``weights``: ``"cached"`` (one card has every file), ``"missing"`` or ``"no card"`` (nothing to
    download: weight-free, or only a checkpoint of your own); ``package`` / ``package_installed``;
    ``available``: loads here now without downloading (``None`` without a card)."""
    import importlib.util

    from slmtok.registry import FEATURES, VOCODERS

    registry = {"features": FEATURES, "vocoders": VOCODERS}[kind]
    names = registry.names()
    rows = []
    for entry in registry.entries(pattern):
        module = entry.target.partition(":")[0] if isinstance(entry.target, str) else ""
        package = MODULE_PACKAGE.get(module, "")
        installed = not package or importlib.util.find_spec(package) is not None
        cards = _component_cards(kind, entry.name, names)
        complete, needed, cached = [], 0, 0
        for card in cards:
            files = [f for f in card.files if kind == "vocoders" or f.role in FEATURE_ROLES]
            have = sum(read_record(str(cache_path(card, f.role))) is not None for f in files)
            needed, cached = needed + len(files), cached + have
            if have == len(files):
                complete.append(card.name)
        rows.append(
            {
                "name": entry.name,
                "kind": kind,
                "origin": entry.origin,
                "description": entry.description,
                "cards": [c.name for c in cards],
                "files_needed": needed,
                "files_cached": cached,
                "weights": ("cached" if complete else "missing") if cards else "no card",
                "package": package,
                "package_installed": installed,
                "available": (bool(complete) and installed) if cards else None,
            }
        )
    return rows
