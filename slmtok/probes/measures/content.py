"""Factor A, content: how well discrete units line up with phones (phone purity, cluster purity, PNMI).

Definitions follow Hsu et al., "HuBERT: Self-Supervised Speech Representation Learning by Masked Prediction
of Hidden Units", IEEE/ACM TASLP 2021, section IV-B. Over all frames ``t`` with a phone label ``y_t`` (the
phone at the frame centre, from the aligned transcription) and a unit ``z_t``, the joint distribution is
``p(i, j) = count(y = i, z = j) / N``, with marginals ``p_y`` and ``p_z``. Then

* phone purity   = sum_j p_z(j) * max_i p(y = i | z = j)   (accuracy when each unit is read as its most
  frequent phone; 1 when every unit maps to one phone);
* cluster purity = sum_i p_y(i) * max_j p(z = j | y = i)   (how concentrated each phone is on one unit);
* PNMI           = I(y; z) / H(y)                           (the share of phone entropy the units explain).

Frames labelled ``SIL`` (silence, and any label in ``exclude``) are left out of every count, as the HuBERT
paper's alignments carry no silence class; the count of excluded frames is returned.

These plug-in estimates are biased up when the units are many for the frames counted: for independent
phones and units, I(y; z) is about (|Y| - 1)(|Z| - 1) / (2 N) nats, not 0 (Miller 1955): the 1,024-code
``random-codes`` baseline shows a PNMI of 0.41 on 2.7 minutes of espeak-ng speech. Each figure therefore comes with its permutation chance level
(``*_chance``: the mean over ``n_permutations`` shuffles of the units across frames, which keeps both
marginals and breaks their link) and ``pnmi_adjusted`` = (PNMI - chance) / (1 - chance), 0 for units that
carry no phone information whatever their number, 1 for units that are the phones.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from slmtok.probes.measures._common import MeasureInputError, as_unit_list, check_same_length


def phone_unit_stats(
    units: Sequence[np.ndarray],
    labels: Sequence[Sequence[str]],
    *,
    exclude: Collection[str] = ("SIL",),
    n_permutations: int = 3,
    seed: int = 0,
) -> dict:
    """Phone purity, cluster purity and PNMI of units against frame-level phone labels.

    Args:
        units: one 1-D integer array ``[T_i]`` per item, the units at the tokenizer's frame rate (codebook 0
            of a multi-codebook tokenizer; not deduplicated).
        labels: one list of ``T_i`` phone symbols per item, the phone at each frame centre (as
            ``slmtok.probes.frame_labels`` gives them).
        exclude: labels whose frames are dropped before counting (default ``("SIL",)``).
        n_permutations: shuffles of the units for the chance levels (0 = none: no ``*_chance`` keys and no
            ``pnmi_adjusted``).
        seed: seed of the shuffles.

    Returns:
        ``{"phone_purity", "cluster_purity", "pnmi"}`` (floats in [0, 1]), ``"n_frames"`` (frames counted),
        ``"n_excluded_frames"``, ``"n_phones"`` and ``"n_units"`` (distinct labels / units seen) and
        ``"excluded"`` (the sorted excluded labels); ``"phone_purity_chance"``, ``"cluster_purity_chance"``,
        ``"pnmi_chance"`` and ``"pnmi_adjusted"``. PNMI is 0 when only one phone is present (H(y) = 0).

    Raises:
        MeasureInputError: unequal item counts or frame counts, bad units, or no frame left to count.
    """
    unit_list = as_unit_list(units)
    check_same_length("units", unit_list, "labels", labels)
    excluded = set(exclude)
    kept_units: list[np.ndarray] = []
    kept_labels: list[np.ndarray] = []
    n_excluded = 0
    for i, (item_units, item_labels) in enumerate(zip(unit_list, labels, strict=True)):
        item_labels = np.asarray(list(item_labels), dtype=object)
        if item_labels.shape[0] != item_units.shape[0]:
            raise MeasureInputError(
                f"item {i}: {item_units.shape[0]} unit frames but {item_labels.shape[0]} phone labels"
            )
        keep = np.array([label not in excluded for label in item_labels], dtype=bool)
        n_excluded += int((~keep).sum())
        kept_units.append(item_units[keep])
        kept_labels.append(item_labels[keep])
    z = np.concatenate(kept_units) if kept_units else np.zeros(0, dtype=np.int64)
    y = np.concatenate(kept_labels) if kept_labels else np.zeros(0, dtype=object)
    if z.size == 0:
        raise MeasureInputError("no frame left to count (every frame is excluded or there are no frames)")
    phone_names, y_index = np.unique(y.astype(str), return_inverse=True)
    unit_values, z_index = np.unique(z, return_inverse=True)

    def joint_stats(units_index: np.ndarray) -> dict[str, float]:
        joint = np.bincount(
            y_index * unit_values.size + units_index, minlength=phone_names.size * unit_values.size
        ).reshape(phone_names.size, unit_values.size)
        return _joint_stats(joint.astype(np.float64))

    stats = joint_stats(z_index)
    if n_permutations > 0:
        rng = np.random.default_rng(seed)
        shuffled = [joint_stats(rng.permutation(z_index)) for _ in range(n_permutations)]
        for key in ("phone_purity", "cluster_purity", "pnmi"):
            stats[f"{key}_chance"] = float(np.mean([s[key] for s in shuffled]))
        chance = stats["pnmi_chance"]
        stats["pnmi_adjusted"] = (stats["pnmi"] - chance) / (1.0 - chance) if chance < 1.0 else 0.0
    return {
        **stats,
        "n_frames": int(z.size),
        "n_excluded_frames": n_excluded,
        "n_phones": int(phone_names.size),
        "n_units": int(unit_values.size),
        "excluded": sorted(excluded),
    }


def _joint_stats(counts: np.ndarray) -> dict[str, float]:
    """Purities and PNMI from a phone x unit count matrix ``[n_phones, n_units]`` (no empty rows/columns)."""
    p = counts / counts.sum()
    p_y = p.sum(axis=1)  # [n_phones]
    p_z = p.sum(axis=0)  # [n_units]
    phone_purity = float(p.max(axis=0).sum())  # sum_j p_z(j) max_i p(i|j) = sum_j max_i p(i, j)
    cluster_purity = float(p.max(axis=1).sum())  # sum_i p_y(i) max_j p(j|i) = sum_i max_j p(i, j)
    nonzero = p > 0
    outer = np.outer(p_y, p_z)
    mutual_information = float((p[nonzero] * np.log(p[nonzero] / outer[nonzero])).sum())
    phone_entropy = float(-(p_y * np.log(p_y)).sum())
    pnmi = mutual_information / phone_entropy if phone_entropy > 0 else 0.0
    return {
        "phone_purity": phone_purity,
        "cluster_purity": cluster_purity,
        "pnmi": float(pnmi),
    }
