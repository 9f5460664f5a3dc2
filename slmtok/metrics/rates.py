"""Rate metrics of discrete tokens: how many tokens, how many bits, how much of each codebook is used.

Every function works on ``Tokens`` (codes ``[B, K, T]`` padded with -1, ``lengths`` ``[B]`` in frames) or
on per-codebook code histograms, so corpus-level figures are computed by adding histograms over files
(``add_histograms``) and never by averaging per-file entropies (which biases them low).

Units: rates in Hz (frames/s), tokens/s, bits/s; entropies in bits per token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from slmtok.types import Tokens


def frame_rate(tokens: Tokens) -> float:
    """Frames per second of audio (Hz) before any deduplication, as the tokenizer declares it."""
    return float(tokens.frame_rate)


def audio_seconds(tokens: Tokens, seconds: float | Sequence[float] | None = None) -> float:
    """Total duration (s) of the audio the tokens encode: ``seconds`` if given (a total or one per item),
    else ``tokens.input.durations``; raises ``ValueError`` when neither is known."""
    if seconds is None:
        if tokens.input is None:
            raise ValueError("the duration of the audio is unknown: pass seconds=")
        return float(sum(tokens.input.durations))
    if isinstance(seconds, (int, float)):
        return float(seconds)
    return float(sum(seconds))


def tokens_per_second(tokens: Tokens, seconds: float | Sequence[float] | None = None) -> float:
    """Tokens emitted per second of audio: valid frames x codebooks / duration (tokens/s).

    For deduplicated units this is the rate after deduplication (the sequence a language model sees).
    """
    count = int(tokens.lengths.sum()) * tokens.n_codebooks
    return count / audio_seconds(tokens, seconds)


def nominal_bitrate(frame_rate_hz: float, codebook_sizes: Sequence[int]) -> float:
    """Nominal bitrate (bits/s): sum over codebooks of ``frame_rate_hz`` x log2(codebook size)."""
    return sum(frame_rate_hz * math.log2(int(size)) for size in codebook_sizes)


def run_counts(tokens: Tokens) -> torch.Tensor:
    """Runs of repeated codes per codebook, over the valid frames of every item: int64 ``[K]``.

    A run is a maximal stretch of equal consecutive codes (GSLM's deduplication applied to each codebook
    on its own); deduplicated tokens are their own run counts.
    """
    codes = tokens.codes
    width = codes.shape[-1]
    valid = torch.arange(width)[None, :] < tokens.lengths[:, None]  # [B, T]
    if width == 0:
        return torch.zeros(tokens.n_codebooks, dtype=torch.long)
    starts = torch.ones_like(codes, dtype=torch.bool)
    starts[..., 1:] = codes[..., 1:] != codes[..., :-1]
    return (starts & valid[:, None, :]).sum(dim=(0, 2))


def effective_bitrate(
    tokens: Tokens, codebook_sizes: Sequence[int], seconds: float | Sequence[float] | None = None
) -> float:
    """Bitrate after run-length deduplication (bits/s): runs per codebook x log2(size) / duration.

    The durations of the runs are not counted (as in GSLM, whose unit LM never sees them), so this is a
    lower bound on what a decoder that needs durations would have to receive.
    """
    runs = run_counts(tokens).tolist()
    bits = sum(n * math.log2(int(size)) for n, size in zip(runs, codebook_sizes, strict=False))
    return bits / audio_seconds(tokens, seconds)


def code_histograms(tokens: Tokens, codebook_sizes: Sequence[int]) -> list[torch.Tensor]:
    """Counts of every code over the valid frames, one int64 ``[size_k]`` tensor per codebook ``k``."""
    width = tokens.codes.shape[-1]
    valid = torch.arange(width)[None, :] < tokens.lengths[:, None]  # [B, T]
    out = []
    for k in range(tokens.n_codebooks):
        codes = tokens.codes[:, k][valid]
        out.append(torch.bincount(codes.long(), minlength=int(codebook_sizes[k]))[: int(codebook_sizes[k])])
    return out


def add_histograms(total: list[torch.Tensor] | None, new: list[torch.Tensor]) -> list[torch.Tensor]:
    """Element-wise sum of two lists of per-codebook histograms (``total`` may be ``None``)."""
    if total is None:
        return [h.clone() for h in new]
    return [a + b for a, b in zip(total, new, strict=True)]


def entropy_bits(histogram: torch.Tensor) -> float:
    """Empirical (unigram, plug-in) entropy of one codebook in bits per token; 0 for an empty histogram."""
    counts = histogram.double()
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * torch.log2(p)).sum())


def perplexity(histogram: torch.Tensor) -> float:
    """Codebook perplexity ``2 ** entropy``: the number of equally likely codes with the same entropy."""
    return 2.0 ** entropy_bits(histogram)


def utilisation(histogram: torch.Tensor) -> float:
    """Fraction of a codebook's entries used at least once (0..1)."""
    return float((histogram > 0).double().mean()) if histogram.numel() else 0.0


def entropy_bitrate(histograms: Sequence[torch.Tensor], seconds: float) -> float:
    """Empirical unigram entropy bitrate (bits/s): sum over codebooks of (tokens of codebook k) x H_k / s.

    A lower bound, for a memoryless code, on what an entropy coder of single tokens would need; the gap
    to the nominal bitrate shows unused or unevenly used codes.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return sum(float(h.sum()) * entropy_bits(h) for h in histograms) / seconds


def codebook_stats(histograms: Sequence[torch.Tensor], seconds: float) -> dict[str, object]:
    """Corpus-level summary: entropy bitrate (bits/s), and per codebook entropy (bits), perplexity and
    utilisation, plus their means over codebooks."""
    entropies = [entropy_bits(h) for h in histograms]
    perplexities = [2.0**e for e in entropies]
    used = [utilisation(h) for h in histograms]
    k = max(len(histograms), 1)
    return {
        "entropy_bitrate": entropy_bitrate(histograms, seconds),
        "entropy_bits": entropies,
        "perplexity": perplexities,
        "utilisation": used,
        "mean_perplexity": sum(perplexities) / k,
        "mean_utilisation": sum(used) / k,
    }
