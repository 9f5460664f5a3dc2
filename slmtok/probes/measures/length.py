"""Factor B, length: how many tokens a second of speech costs a language model, and how much they vary.

* ``tokens_per_second``: frames / seconds of audio (one codebook);
* ``dedup_tokens_per_second``: after collapsing runs of equal consecutive units (GSLM's deduplication);
* ``bpe_tokens_per_second``: after a BPE encoder over the units, when one is given;
* ``unigram_entropy_bits``: H(u) of the pooled unit distribution (bits/token), and
  ``entropy_rate_bits_per_second`` = H(u) x tokens/s, an upper bound on the entropy rate under a
  unigram model;
* ``bigram_conditional_entropy_bits``: H(u_t | u_{t-1}) over consecutive pairs inside items (bits/token),
  and ``bigram_entropy_rate_bits_per_second`` = that x tokens/s, a tighter (first-order Markov) estimate.

The same four entropy figures are given for the deduplicated sequences (``dedup_*``) and, with an encoder,
for the BPE sequences (``bpe_*``). All entropies are plug-in (maximum-likelihood) estimates: they are biased
low when the number of distinct symbols or bigrams nears the number of tokens, so the counts are returned
beside them (``n_tokens``, ``n_distinct_units``, ``n_distinct_bigrams`` per stream).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from slmtok.probes.measures._common import (
    MeasureInputError,
    as_unit_list,
    as_units,
    check_same_length,
    deduplicate,
)


def length_stats(
    units: Sequence[np.ndarray],
    seconds: Sequence[float] | float,
    *,
    bpe: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict:
    """Token rates (tokens/s) and entropies (bits/token, bits/s) of unit sequences.

    Args:
        units: one 1-D integer array ``[T_i]`` per item (codebook 0 of a multi-codebook tokenizer; frame-level,
            not deduplicated).
        seconds: the audio duration of each item (s), or their total.
        bpe: optional encoder from one item's units ``[T_i]`` (as given here) to its BPE ids ``[B_i]``;
            deduplicate inside it if the BPE model was fitted on deduplicated units.

    Returns:
        ``tokens_per_second``, ``dedup_tokens_per_second``, ``unigram_entropy_bits``,
        ``entropy_rate_bits_per_second``, ``bigram_conditional_entropy_bits``,
        ``bigram_entropy_rate_bits_per_second``, the same with a ``dedup_`` prefix (rates per second of
        audio), ``seconds`` (total), ``n_tokens``, ``n_distinct_units``, ``n_distinct_bigrams`` (and
        ``dedup_``-prefixed counts); with ``bpe``, ``bpe_tokens_per_second`` and the ``bpe_`` entropies and
        counts.

    Raises:
        MeasureInputError: bad units, a per-item ``seconds`` list of another length, a non-positive total
            duration, or a BPE encoder that returns something other than 1-D non-negative integers.
    """
    unit_list = as_unit_list(units)
    if isinstance(seconds, (int, float)):
        total = float(seconds)
    else:
        check_same_length("units", unit_list, "seconds", seconds)
        total = float(np.sum(np.asarray(seconds, dtype=np.float64)))
    if not total > 0:
        raise MeasureInputError(f"the total duration must be positive, got {total} s")
    streams = {"": unit_list, "dedup_": [deduplicate(u) for u in unit_list]}
    if bpe is not None:
        streams["bpe_"] = [as_units(bpe(u), f"bpe(units[{i}])") for i, u in enumerate(unit_list)]
    result: dict[str, float | int] = {"seconds": total}
    for prefix, stream in streams.items():
        stats = _stream_stats(stream)
        rate = stats["n_tokens"] / total
        result[f"{prefix}tokens_per_second"] = rate
        result[f"{prefix}unigram_entropy_bits"] = stats["unigram"]
        result[f"{prefix}entropy_rate_bits_per_second"] = stats["unigram"] * rate
        result[f"{prefix}bigram_conditional_entropy_bits"] = stats["bigram"]
        result[f"{prefix}bigram_entropy_rate_bits_per_second"] = stats["bigram"] * rate
        result[f"{prefix}n_tokens"] = stats["n_tokens"]
        result[f"{prefix}n_distinct_units"] = stats["n_distinct_units"]
        result[f"{prefix}n_distinct_bigrams"] = stats["n_distinct_bigrams"]
    return result


def _entropy_bits(counts: np.ndarray) -> float:
    """Plug-in entropy (bits) of a histogram ``[V]`` of non-negative counts (0 for an empty one)."""
    counts = counts[counts > 0].astype(np.float64)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _stream_stats(stream: list[np.ndarray]) -> dict:
    """Token count, unigram entropy and bigram conditional entropy H(u_t | u_{t-1}) of one token stream.

    H(u_t | u_{t-1}) = H(u_{t-1}, u_t) - H(u_{t-1}) over the bigrams inside items (the first token of
    an item has no predecessor and adds no bigram).
    """
    flat = np.concatenate(stream) if stream else np.zeros(0, dtype=np.int64)
    _, unit_counts = np.unique(flat, return_counts=True)
    previous = np.concatenate([u[:-1] for u in stream]) if stream else flat
    following = np.concatenate([u[1:] for u in stream]) if stream else flat
    if previous.size:
        base = int(flat.max()) + 1
        if base < 2**31:  # one int64 per bigram
            _, bigram_counts = np.unique(previous * base + following, return_counts=True)
        else:
            _, bigram_counts = np.unique(np.stack([previous, following], axis=1), axis=0, return_counts=True)
        _, previous_counts = np.unique(previous, return_counts=True)
        conditional = _entropy_bits(bigram_counts) - _entropy_bits(previous_counts)
    else:
        bigram_counts = np.zeros(0, dtype=np.int64)
        conditional = 0.0
    return {
        "n_tokens": int(flat.size),
        "unigram": _entropy_bits(unit_counts),
        "bigram": max(0.0, conditional),
        "n_distinct_units": int(unit_counts.size),
        "n_distinct_bigrams": int(bigram_counts.size),
    }
