"""Input checks and small helpers shared by the token-level measures.

Every measure takes unit sequences as 1-D integer arrays ``[T]`` (one per audio item, frames in time order,
padding already trimmed) and raises ``MeasureInputError`` (one line) on anything else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slmtok.errors import SlmtokError


class MeasureInputError(SlmtokError, ValueError):
    """Inputs a measure cannot use: units that are not 1-D non-negative integers, lists of unequal
    length, too few items or classes for the measure."""


def as_units(units: object, where: str) -> np.ndarray:
    """One item's units as a 1-D int64 array ``[T]``; ``where`` names the item in the error message."""
    array = np.asarray(units)
    if array.ndim != 1:
        raise MeasureInputError(
            f"{where}: units must be 1-D [T] (codebook 0 of a multi-codebook tokenizer), got shape "
            f"{tuple(array.shape)}"
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise MeasureInputError(f"{where}: units must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and int(array.min()) < 0:
        raise MeasureInputError(f"{where}: negative unit {int(array.min())} (trim the -1 padding first)")
    return array


def as_unit_list(units: Sequence[object], name: str = "units") -> list[np.ndarray]:
    """A list of items' units, each checked by ``as_units``."""
    if isinstance(units, np.ndarray) and units.ndim == 1 and units.dtype != object:
        raise MeasureInputError(f"{name} must be a list of per-item [T] arrays, got one array")
    return [as_units(u, f"{name}[{i}]") for i, u in enumerate(units)]


def check_same_length(name_a: str, a: Sequence[object], name_b: str, b: Sequence[object]) -> None:
    """Raise ``MeasureInputError`` unless two per-item lists have one entry per item each."""
    if len(a) != len(b):
        raise MeasureInputError(f"{name_a} has {len(a)} items but {name_b} has {len(b)}")


def deduplicate(units: np.ndarray) -> np.ndarray:
    """``[T]`` units with runs of equal consecutive units collapsed to one (GSLM dedup): ``[R]``."""
    if units.size == 0:
        return units
    keep = np.empty(units.shape, dtype=bool)
    keep[0] = True
    np.not_equal(units[1:], units[:-1], out=keep[1:])
    return units[keep]


def bootstrap_ci(
    values: np.ndarray, seed: int, n_resamples: int = 1000, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` ``[N]`` (None when N = 0).

    A resample of N values with replacement is drawn as multinomial counts over the distinct values (the
    same distribution of resampled means, at a cost in distinct values rather than N).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return None
    distinct, counts = np.unique(values, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(values.size, counts / values.size, size=n_resamples)  # [R, distinct]
    means = draws @ distinct / values.size
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def wilson_ci(successes: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score interval (95 % by default) of a binomial proportion ``successes / n``."""
    if n == 0:
        return None
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
