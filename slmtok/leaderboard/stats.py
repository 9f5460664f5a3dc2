"""Aggregates over files with percentile-bootstrap confidence intervals (resampling files).

Means of per-file values (PESQ, STOI, ...) and ratios of sums (WER = summed edits / summed reference
words; tokens/s = summed tokens / summed seconds) are both resampled at the file level, so the interval
says how much the figure would move on another draw of files of the same kind. Seeded: the same rows
give the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A statistic over ``n`` files and its ``level`` (e.g. 0.95) bootstrap interval ``[low, high]``."""

    value: float
    low: float
    high: float
    n: int
    level: float = DEFAULT_LEVEL

    def to_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def _clean(x: float) -> float:
    return float(x) if math.isfinite(float(x)) else float("nan")


def bootstrap_mean(
    values: Sequence[float],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Estimate | None:
    """Mean of the finite ``values`` with a percentile-bootstrap interval; ``None`` if there are none.

    One value gives a zero-width interval (there is nothing to resample).
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return None
    mean = float(x.mean())
    if x.size == 1:
        return Estimate(mean, mean, mean, 1, level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Estimate(mean, _clean(low), _clean(high), int(x.size), level)


def bootstrap_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Estimate | None:
    """``sum(numerators) / sum(denominators)`` over files, with a percentile-bootstrap interval.

    Pairs with a missing or non-finite part are dropped; ``None`` if no pair is left or the total
    denominator is 0.
    """
    pairs = [
        (float(a), float(b))
        for a, b in zip(numerators, denominators, strict=True)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
    ]
    if not pairs:
        return None
    num = np.array([a for a, _ in pairs])
    den = np.array([b for _, b in pairs])
    if den.sum() <= 0:
        return None
    value = float(num.sum() / den.sum())
    if len(pairs) == 1:
        return Estimate(value, value, value, 1, level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pairs), size=(resamples, len(pairs)))
    totals = den[idx].sum(axis=1)
    ratios = np.where(totals > 0, num[idx].sum(axis=1) / np.where(totals > 0, totals, 1), np.nan)
    ratios = ratios[np.isfinite(ratios)]
    alpha = (1 - level) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha]) if ratios.size else (value, value)
    return Estimate(value, _clean(low), _clean(high), len(pairs), level)
