"""Factor C, paralinguistics: do the units stay the same when only the voice or the channel changes?

For each invariance group (the same text rendered clean and with noise, +/-2 semitones, 0.9/1.1x speed or
another voice), the clean item's units and each variant's units are deduplicated (runs of equal units
collapsed, as a unit LM sees them) and compared by the normalised Levenshtein distance: edit operations
/ the longer length (rapidfuzz's ``Levenshtein.normalized_distance``), 0 = identical, 1 = nothing in common.
The unit edit distance of Gat et al., "Augmentation Invariant Discrete Representation for Generative Spoken
Language Modeling" (IWSLT 2023), made symmetric in length by the normalisation. Lower = more invariant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np

from slmtok.probes.measures._common import MeasureInputError, as_units, bootstrap_ci, deduplicate

CLEAN = "clean"


def invariance(
    units_by_item: Mapping[str, np.ndarray], groups: Mapping[str, Iterable[object]]
) -> dict[str, float]:
    """Mean normalised unit edit distance (after dedup) between each group's clean item and each variant.

    Args:
        units_by_item: item id -> its 1-D integer units ``[T]`` (codebook 0 of a multi-codebook tokenizer).
        groups: group id -> its members, each an object with ``id`` and ``variant`` attributes (a
            ``ProbeItem``) or an ``(item_id, variant)`` pair; one member per group has variant ``"clean"``.

    Returns:
        ``{variant: mean distance in [0, 1]}`` for every variant seen, sorted by name.

    Raises:
        MeasureInputError: a group without exactly one clean member, a member whose units are missing, or
            bad units.
    """
    return {variant: stats["distance"] for variant, stats in invariance_stats(units_by_item, groups).items()}


def invariance_stats(
    units_by_item: Mapping[str, np.ndarray], groups: Mapping[str, Iterable[object]], *, seed: int = 0
) -> dict[str, dict]:
    """``invariance`` with counts and intervals: ``{variant: {"distance", "n_groups", "ci": [low, high]}}``.

    ``ci`` is a 95 % percentile bootstrap over groups (None for a single group).
    """
    from rapidfuzz.distance import Levenshtein

    distances: dict[str, list[float]] = defaultdict(list)
    for group_id in sorted(groups):
        members = [_member(m, group_id) for m in groups[group_id]]
        clean = [item_id for item_id, variant in members if variant == CLEAN]
        if len(clean) != 1:
            raise MeasureInputError(f"invariance group {group_id!r} has {len(clean)} clean items, expected 1")
        reference = _deduplicated(units_by_item, clean[0]).tolist()
        for item_id, variant in members:
            if variant == CLEAN:
                continue
            other = _deduplicated(units_by_item, item_id).tolist()
            distances[variant].append(float(Levenshtein.normalized_distance(reference, other)))
    result: dict[str, dict] = {}
    for variant in sorted(distances):
        values = np.asarray(distances[variant])
        ci = bootstrap_ci(values, seed=seed) if values.size > 1 else None
        result[variant] = {
            "distance": float(values.mean()),
            "n_groups": int(values.size),
            "ci": [ci[0], ci[1]] if ci else None,
        }
    return result


def _member(member: object, group_id: str) -> tuple[str, str]:
    """(item id, variant) of a group member given as a ``ProbeItem``-like object or a pair."""
    if hasattr(member, "id") and hasattr(member, "variant"):
        item_id, variant = member.id, member.variant
    elif isinstance(member, (tuple, list)) and len(member) == 2:
        item_id, variant = member
    else:
        raise MeasureInputError(
            f"invariance group {group_id!r}: a member is neither an item nor (id, variant)"
        )
    if not variant:
        raise MeasureInputError(f"invariance group {group_id!r}: item {item_id!r} has no variant")
    return str(item_id), str(variant)


def _deduplicated(units_by_item: Mapping[str, np.ndarray], item_id: str) -> np.ndarray:
    if item_id not in units_by_item:
        raise MeasureInputError(f"no units for invariance item {item_id!r}")
    return deduplicate(as_units(units_by_item[item_id], item_id))
