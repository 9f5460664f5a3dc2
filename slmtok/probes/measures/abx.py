"""Factor A, content: ABX phone discriminability of unit sequences, within and across speakers.

The task is that of ZeroSpeech 2021's phonetic ABX (Nguyen et al., "The Zero Resource Speech Benchmark
2021", 2020; the libri-light ABX code, Kahn et al. 2020), computed on triphones within context:

* an item is a triphone ``prev-centre-next`` of the aligned phones (its frames span the three phones);
  triphones that touch a silence (``SIL``, or a label in ``exclude``) are not items;
* a triplet (A, B, X) has A and X the same triphone, B the triphone with another centre phone and the same
  context; *within* speaker: A, B and X share a speaker (X is another token than A); *across*: A and B share
  a speaker, X is the same triphone said by another speaker;
* d(A, X) and d(B, X) are DTW distances over the unit sequences, with a 0/1 frame distance (the cosine
  distance of one-hot units, up to scale), normalised by the length of the best path as in libri-light's
  ``dtw.pyx`` (ties between predecessors broken diagonal, then left, then up);
* a triplet scores 1 when d(A, X) < d(B, X), 0.5 on a tie, and the ABX error is 1 - the mean score.
  A triphone whose centre repeats a neighbour ("e a a" against "e e a") differs from its pair only in
  durations, so frame-level phone-like units tie on it: even perfect phone units score above 0 on a set
  that holds such triphones (kept, as in libri-light).

libri-light averages the scores over every triplet of a cell (context, speaker(s), A-phone, B-phone), then
over contexts (and X speakers), then speakers, then phone pairs. Here triplets are drawn at random down that
same hierarchy (phone pair, then speaker, then context [and X speaker], then A, B, X, all uniform), so the
mean of ``max_triplets`` draws is an unbiased estimate of the same nested average at a bounded cost; the
confidence interval is a bootstrap over the drawn triplets (it measures the sampling, not the choice of
speakers or sentences).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

import numpy as np

from slmtok.probes.measures._common import (
    MeasureInputError,
    as_unit_list,
    bootstrap_ci,
    check_same_length,
)

MODES = ("within", "across")


def abx_error(
    units: Sequence[np.ndarray],
    phones: Sequence[Sequence[tuple[str, float, float]]],
    speakers: Sequence[str],
    frame_rate: float,
    *,
    mode: str = "within",
    max_triplets: int = 20_000,
    seed: int = 0,
    exclude: Collection[str] = ("SIL",),
    max_dtw_cells: int = 100_000_000,
) -> dict:
    """ABX error rate of phone triphones on unit sequences (lower = phones better told apart).

    Args:
        units: one 1-D integer array ``[T_i]`` per item at ``frame_rate`` (codebook 0 of a multi-codebook
            tokenizer; frame-level, not deduplicated: frame ``t`` covers time ``(t + 0.5) / frame_rate``).
        phones: per item, the contiguous aligned phones ``(symbol, start_s, end_s)`` in seconds.
        speakers: per item, its speaker label.
        frame_rate: frames per second of ``units`` (Hz).
        mode: ``"within"`` or ``"across"`` speakers.
        max_triplets: how many triplets to draw (with replacement); the cost grows linearly with it.
        seed: seed of the draws and of the bootstrap.
        exclude: phone labels that make a triphone unusable (default ``("SIL",)``).
        max_dtw_cells: refuse (one line) when the DTW matrices would add up to more cells than this,
            e.g. for sample-rate "units" (16 kHz mu-law) whose triphones span thousands of frames.

    Returns:
        ``{"error": float | None, "ci": [low, high] | None (95 % bootstrap), "n_triplets", "n_phone_pairs",
        "n_cells", "n_triphones", "mode", "context": "triphone", "distance", "frame_rate"}``; ``error`` and
        ``ci`` are None (and ``n_triplets`` 0) when the items hold no valid triplet (e.g. one speaker across).

    Raises:
        MeasureInputError: bad units, unequal list lengths, unknown mode, non-positive ``frame_rate`` or
            ``max_triplets``, or a DTW cost above ``max_dtw_cells``.
    """
    if mode not in MODES:
        raise MeasureInputError(f"unknown ABX mode {mode!r}; expected one of {', '.join(MODES)}")
    if not frame_rate > 0:
        raise MeasureInputError(f"frame_rate must be positive, got {frame_rate}")
    if max_triplets < 1:
        raise MeasureInputError(f"max_triplets must be at least 1, got {max_triplets}")
    unit_list = as_unit_list(units)
    check_same_length("units", unit_list, "phones", phones)
    check_same_length("units", unit_list, "speakers", speakers)

    segments = _triphones(unit_list, phones, speakers, frame_rate, set(exclude))
    cells = _cells(segments, mode)
    result = {
        "mode": mode,
        "context": "triphone",
        "distance": "DTW, 0/1 frame distance, normalised by path length",
        "frame_rate": float(frame_rate),
        "n_triphones": len(segments.item),
        "n_phone_pairs": cells.n_pairs,
        "n_cells": cells.n_cells,
    }
    if cells.n_pairs == 0:
        return {**result, "error": None, "ci": None, "n_triplets": 0}
    rng = np.random.default_rng(seed)
    a, b, x = cells.draw(rng, max_triplets)
    # Each distance is computed once however often its pair is drawn.
    pairs = np.stack([np.concatenate([x, x]), np.concatenate([a, b])], axis=1)
    unique_pairs, inverse = np.unique(pairs, axis=0, return_inverse=True)
    lengths = segments.stop - segments.start
    cost = int((lengths[unique_pairs[:, 0]] * lengths[unique_pairs[:, 1]]).sum())
    if cost > max_dtw_cells:
        raise MeasureInputError(
            f"ABX would need {cost:,} DTW cells (limit {max_dtw_cells:,}): triphones average "
            f"{lengths.mean():.0f} frames at {frame_rate:g} Hz; lower max_triplets or raise max_dtw_cells"
        )
    padded = _pad_segments(unit_list, segments)
    distances = dtw_distances(padded, lengths, unique_pairs)[inverse.reshape(-1)]
    d_ax, d_bx = distances[: len(a)], distances[len(a) :]
    scores = (d_ax < d_bx) + 0.5 * (d_ax == d_bx)
    ci = bootstrap_ci(1.0 - scores, seed=seed + 1)
    return {
        **result,
        "error": float(1.0 - scores.mean()),
        "ci": [ci[0], ci[1]] if ci else None,
        "n_triplets": int(scores.size),
    }


class _Segments:
    """Triphone items as parallel arrays ``[S]``: item index, frame span, centre, context and speaker ids."""

    def __init__(self) -> None:
        self.item: list[int] = []
        self.start: list[int] | np.ndarray = []
        self.stop: list[int] | np.ndarray = []
        self.key: list[tuple[str, tuple[str, str], str]] = []  # (centre, context, speaker)


def _triphones(
    units: list[np.ndarray],
    phones: Sequence[Sequence[tuple[str, float, float]]],
    speakers: Sequence[str],
    frame_rate: float,
    exclude: set[str],
) -> _Segments:
    """Every usable triphone of every item, with its frames: those whose centre lies in [start, end)."""
    segments = _Segments()
    for index, (item_units, item_phones, speaker) in enumerate(zip(units, phones, speakers, strict=True)):
        n_frames = item_units.shape[0]
        for k in range(1, len(item_phones) - 1):
            (prev, start, _), (centre, _, _), (after, _, end) = item_phones[k - 1 : k + 2]
            if prev in exclude or centre in exclude or after in exclude:
                continue
            first = max(0, int(np.ceil(float(start) * frame_rate - 0.5)))
            stop = min(n_frames, int(np.ceil(float(end) * frame_rate - 0.5)))
            if stop <= first:  # shorter than a frame: the frame that holds its middle
                first = int((float(start) + float(end)) / 2.0 * frame_rate)
                stop = first + 1
                if stop > n_frames:
                    continue
            segments.item.append(index)
            segments.start.append(first)
            segments.stop.append(stop)
            segments.key.append((str(centre), (str(prev), str(after)), str(speaker)))
    segments.start = np.asarray(segments.start, dtype=np.int64)
    segments.stop = np.asarray(segments.stop, dtype=np.int64)
    return segments


class _Cells:
    """The hierarchy phone pair -> speaker -> cell, flattened for vectorised uniform draws.

    A cell holds three lists of triphone indices: A candidates, B candidates and X candidates (for
    ``within``, X candidates are the A list and X is drawn distinct from A).
    """

    def __init__(self, hierarchy: dict, within: bool) -> None:
        self.within = within
        self.n_pairs = len(hierarchy)
        # level 1: pair -> range of speaker slots; level 2: speaker slot -> range of cells.
        self.pair_start: list[int] = []
        self.pair_count: list[int] = []
        self.slot_start: list[int] = []
        self.slot_count: list[int] = []
        groups: list[tuple[list[int], list[int], list[int]]] = []
        for pair in sorted(hierarchy):
            by_speaker = hierarchy[pair]
            self.pair_start.append(len(self.slot_start))
            self.pair_count.append(len(by_speaker))
            for speaker in sorted(by_speaker):
                self.slot_start.append(len(groups))
                self.slot_count.append(len(by_speaker[speaker]))
                groups.extend(by_speaker[speaker])
        self.n_cells = len(groups)
        # three flat member lists (A, B, X) with their offsets per cell
        self.offsets = []
        self.members = []
        for role in range(3):
            sizes = np.array([len(g[role]) for g in groups], dtype=np.int64)
            self.offsets.append((np.concatenate([[0], np.cumsum(sizes)[:-1]]) if groups else sizes, sizes))
            self.members.append(np.asarray([m for g in groups for m in g[role]], dtype=np.int64))

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` triplets drawn uniformly down the hierarchy: triphone indices (A ``[n]``, B ``[n]``, X ``[n]``)."""

        def pick(starts: np.ndarray, counts: np.ndarray, chosen: np.ndarray) -> np.ndarray:
            return starts[chosen] + (rng.random(chosen.size) * counts[chosen]).astype(np.int64)

        pair = rng.integers(0, self.n_pairs, size=n)
        slot = pick(np.asarray(self.pair_start), np.asarray(self.pair_count), pair)
        cell = pick(np.asarray(self.slot_start), np.asarray(self.slot_count), slot)
        (a_off, a_size), (b_off, b_size), (x_off, x_size) = self.offsets
        a_pos = (rng.random(n) * a_size[cell]).astype(np.int64)
        b_pos = (rng.random(n) * b_size[cell]).astype(np.int64)
        if self.within:  # X is another token of A's triphone: draw among the others and skip A
            x_pos = (rng.random(n) * (x_size[cell] - 1)).astype(np.int64)
            x_pos += x_pos >= a_pos
        else:
            x_pos = (rng.random(n) * x_size[cell]).astype(np.int64)
        return (
            self.members[0][a_off[cell] + a_pos],
            self.members[1][b_off[cell] + b_pos],
            self.members[2][x_off[cell] + x_pos],
        )


def _cells(segments: _Segments, mode: str) -> _Cells:
    """Group triphones into ABX cells: ``{(a, b): {speaker: [(A list, B list, X list) per cell]}}``."""
    tokens: dict[tuple[str, tuple[str, str], str], list[int]] = defaultdict(list)
    for index, key in enumerate(segments.key):
        tokens[key].append(index)
    # context -> speaker -> centre -> triphone indices
    by_context: dict[tuple[str, str], dict[str, dict[str, list[int]]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for (centre, context, speaker), members in tokens.items():
        by_context[context][speaker][centre] = members
    hierarchy: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for context in sorted(by_context):
        speakers = by_context[context]
        for speaker in sorted(speakers):
            centres = speakers[speaker]
            for a in sorted(centres):
                for b in sorted(centres):
                    if a == b:
                        continue
                    if mode == "within":
                        if len(centres[a]) >= 2:
                            hierarchy[(a, b)][speaker].append((centres[a], centres[b], centres[a]))
                    else:
                        for other in sorted(speakers):
                            if other != speaker and a in speakers[other]:
                                hierarchy[(a, b)][speaker].append(
                                    (centres[a], centres[b], speakers[other][a])
                                )
    return _Cells(hierarchy, within=mode == "within")


def _pad_segments(units: list[np.ndarray], segments: _Segments) -> np.ndarray:
    """Every triphone's units in one matrix ``[S, L_max]``, padded with -1."""
    lengths = segments.stop - segments.start
    padded = np.full((len(segments.item), int(lengths.max(initial=1))), -1, dtype=np.int64)
    for row, (item, first, stop) in enumerate(zip(segments.item, segments.start, segments.stop, strict=True)):
        padded[row, : stop - first] = units[item][first:stop]
    return padded


def dtw_distances(
    padded: np.ndarray, lengths: np.ndarray, pairs: np.ndarray, cells_per_batch: int = 1_000_000
) -> np.ndarray:
    """Path-length-normalised DTW distance with a 0/1 frame distance for many sequence pairs at once.

    Args:
        padded: ``[S, L]`` integer sequences (padding beyond ``lengths`` is ignored).
        lengths: ``[S]`` valid lengths (each at least 1).
        pairs: ``[P, 2]`` row indices into ``padded``: the two sequences of each pair.
        cells_per_batch: bound on P x L1 x L2 per vectorised batch (peak memory ~ 50 bytes a cell).

    Returns:
        ``[P]`` float64: the cost of the cheapest monotone path from (0, 0) to (n - 1, m - 1) with steps
        (1, 0), (0, 1), (1, 1), divided by the number of cells on that path (libri-light's ``_dtw`` with
        ``normalized=True``; equal costs prefer the diagonal, then the step along the second sequence).
    """
    out = np.empty(len(pairs), dtype=np.float64)
    if len(pairs) == 0:
        return out
    n = lengths[pairs[:, 0]]
    m = lengths[pairs[:, 1]]
    order = np.lexsort((m, n))
    start = 0
    while start < len(order):
        stop = start + 1
        rows, cols = int(n[order[start]]), int(m[order[start]])
        while stop < len(order):  # grow the batch while its padded size stays within the bound
            grown_rows, grown_cols = max(rows, int(n[order[stop]])), max(cols, int(m[order[stop]]))
            if (stop + 1 - start) * grown_rows * grown_cols > cells_per_batch:
                break
            rows, cols = grown_rows, grown_cols
            stop += 1
        batch = order[start:stop]
        first = padded[pairs[batch, 0], :rows]
        second = padded[pairs[batch, 1], :cols]
        out[batch] = _dtw_batch(first, second, n[batch], m[batch])
        start = stop
    return out


def _dtw_batch(first: np.ndarray, second: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``[P, N]`` and ``[P, M]`` padded sequences with lengths ``[P]`` -> ``[P]`` normalised DTW costs.

    Anti-diagonal wavefront in a skewed layout: table cell ``[k, i, p]`` holds DP cell (i, j = k - i) of
    pair p, so diagonal k depends on slices k - 1 (left: same i; up: i - 1) and k - 2 (diagonal: i - 1),
    and each step is a few contiguous vector operations over every cell of the diagonal of every pair.
    Row and column 0 are a border of +inf cost (as are cells outside a pair's lengths), except the corner
    (0, 0) = 0; ``steps`` counts the cells on the chosen path.
    """
    batch, rows = first.shape
    cols = second.shape[1]
    diagonals = rows + cols + 1
    i_index = np.arange(rows + 1)[None, :]  # [1, N + 1]
    j_index = np.arange(diagonals)[:, None] - i_index  # [K, N + 1]
    inside = (i_index >= 1) & (j_index >= 1) & (j_index <= cols)
    a = first.T[np.clip(i_index - 1, 0, rows - 1)]  # [1, N + 1, P]
    b = second.T[np.clip(j_index - 1, 0, cols - 1)]  # [K, N + 1, P]
    skewed = (a != b).astype(np.float64)  # [K, N + 1, P]
    skewed[~inside] = np.inf
    beyond_rows = (i_index[:, :, None] > n[None, None, :]) | (j_index[:, :, None] > m[None, None, :])
    skewed[beyond_rows] = np.inf  # cells past a pair's own lengths
    cost = np.full((diagonals, rows + 1, batch), np.inf)
    cost[0, 0] = 0.0
    steps = np.zeros((diagonals, rows + 1, batch), dtype=np.int32)
    for k in range(2, diagonals):
        left, up, diag = cost[k - 1, 1:], cost[k - 1, :-1], cost[k - 2, :-1]
        take_diag = (diag <= left) & (diag <= up)
        take_left = ~take_diag & (left <= up)
        cost[k, 1:] = skewed[k, 1:] + np.where(take_diag, diag, np.where(take_left, left, up))
        steps[k, 1:] = 1 + np.where(
            take_diag, steps[k - 2, :-1], np.where(take_left, steps[k - 1, 1:], steps[k - 1, :-1])
        )
    index = np.arange(batch)
    return cost[n + m, n, index] / steps[n + m, n, index]
