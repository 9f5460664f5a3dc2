"""Tokenizer-table rows from model cards: what ``slmtok list`` / ``slmtok info`` show for a codec whose
weights are not downloaded (listing never downloads or loads a checkpoint).

A card named like a registered codec or hybrid tokenizer (``dac-44khz``) describes what that tokenizer
gives with its published weights: sample rate, frame rate, codebooks (``default_codebooks`` of them by
default, ``codebooks`` at most), channels, and the weights' URL and sha256. Bitrate and tokens/s are
computed from those, as ``TokenizerCard`` computes them from a loaded model.
"""

from __future__ import annotations

import math
from typing import Any

from slmtok.hub.cards import get_card, has_card
from slmtok.hub.download import fetch_info

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
