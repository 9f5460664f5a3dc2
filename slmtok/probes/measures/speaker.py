"""Factor C, paralinguistics: how much speaker identity the unit statistics of an utterance give away.

A multinomial logistic regression (scikit-learn) is trained to name the speaker (voice) of an item from
its unit statistics, and scored out of fold by stratified k-fold cross-validation. Features per item: the
normalised unit histogram (``[vocab_size]``, sums to 1) concatenated with a normalised histogram of unit
bigrams hashed into ``bigram_buckets`` bins, each feature scaled to unit variance on the training folds
(not centred: the features are a sparse matrix, so 65,536-entry codebooks cost what they use). Chance is the
accuracy of always answering the most frequent speaker. Lower accuracy = less speaker information in the
tokens, which is what content tokens should aim for; acoustic codecs are expected near 1.

This is a probe in the spirit of the speaker-ID probes of SUPERB (Yang et al. 2021) on pooled statistics,
made for discrete units; it is not a ZeroSpeech measure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slmtok.probes.measures._common import MeasureInputError, as_unit_list, check_same_length, wilson_ci

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing of the bigram index


def unit_features(units: Sequence[np.ndarray], vocab_size: int, bigram_buckets: int = 1024):
    """Per item, the normalised unit histogram and hashed-bigram histogram, as a sparse CSR matrix
    ``[N, vocab_size + bigram_buckets]`` of float64 (sparse, so 65,536-entry codebooks cost what they use).

    Raises ``MeasureInputError`` for a unit outside ``[0, vocab_size)``.
    """
    from scipy.sparse import csr_matrix

    unit_list = as_unit_list(units)
    rows, cols, values = [], [], []
    for row, item in enumerate(unit_list):
        if item.size == 0:
            continue
        if int(item.max()) >= vocab_size:
            raise MeasureInputError(f"units[{row}] holds unit {int(item.max())} >= vocab_size {vocab_size}")
        found, counts = np.unique(item, return_counts=True)
        columns, weights = [found], [counts / item.size]
        if item.size > 1 and bigram_buckets > 0:
            index = (item[:-1].astype(np.uint64) * np.uint64(vocab_size) + item[1:].astype(np.uint64)) * (
                _HASH_MULTIPLIER
            )
            buckets, bucket_counts = np.unique(
                (index >> np.uint64(32)) % np.uint64(bigram_buckets), return_counts=True
            )
            columns.append(vocab_size + buckets.astype(np.int64))
            weights.append(bucket_counts / (item.size - 1))
        cols.extend(columns)
        values.extend(weights)
        rows.append(np.full(sum(c.size for c in columns), row, dtype=np.int64))
    shape = (len(unit_list), vocab_size + bigram_buckets)
    if not rows:
        return csr_matrix(shape, dtype=np.float64)
    return csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def speaker_id_accuracy(
    units: Sequence[np.ndarray],
    speakers: Sequence[str],
    vocab_size: int,
    *,
    seed: int = 0,
    groups: Sequence[str] | None = None,
    n_folds: int = 5,
    bigram_buckets: int = 1024,
    regularisation: float = 1.0,
) -> dict:
    """Out-of-fold speaker-ID accuracy of a logistic regression on unit histograms.

    Args:
        units: one 1-D integer array ``[T_i]`` per item, values in ``[0, vocab_size)`` (codebook 0 of a
            multi-codebook tokenizer).
        speakers: per item, its speaker (voice) label; at least two speakers, each with two items or more.
        vocab_size: the number of distinct units the tokenizer can emit (codebook 0's size).
        groups: optional per-item group label (e.g. the item's text): items of one group never sit on both
            sides of a split (scikit-learn's ``StratifiedGroupKFold``). Pass the text when the same
            sentences are said by every speaker: otherwise the classifier matches a test item to the same
            sentence in training, which belongs to *another* speaker, and content-only units score below
            chance.
        seed: seed of the fold split.
        n_folds: folds of the stratified cross-validation (lowered to the smallest speaker's item count).
        bigram_buckets: hashed bigram bins (0 = unigram histogram only).
        regularisation: the inverse regularisation strength ``C`` of the logistic regression.

    Returns:
        ``{"accuracy", "chance", "ci": [low, high] (95 % Wilson interval over items), "n_items",
        "n_speakers", "n_folds", "grouped" (whether ``groups`` kept texts apart), "features"}``.

    Raises:
        MeasureInputError: bad units, unequal list lengths, fewer than two speakers, or a speaker with a
            single item (stratified folds need two).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    unit_list = as_unit_list(units)
    check_same_length("units", unit_list, "speakers", speakers)
    if vocab_size < 1:
        raise MeasureInputError(f"vocab_size must be at least 1, got {vocab_size}")
    names, labels = np.unique(np.asarray([str(s) for s in speakers]), return_inverse=True)
    if names.size < 2:
        raise MeasureInputError(f"speaker ID needs at least two speakers, got {names.size}")
    per_speaker = np.bincount(labels)
    if int(per_speaker.min()) < 2:
        lonely = names[int(np.argmin(per_speaker))]
        raise MeasureInputError(f"speaker {lonely!r} has a single item; speaker ID needs two per speaker")
    folds = int(min(n_folds, per_speaker.min()))
    if folds < 2:
        raise MeasureInputError(f"n_folds must be at least 2, got {n_folds}")
    features = unit_features(unit_list, vocab_size, bigram_buckets)
    model = make_pipeline(
        StandardScaler(with_mean=False), LogisticRegression(C=regularisation, max_iter=2000)
    )
    if groups is None:
        split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        check_same_length("units", unit_list, "groups", groups)
        n_groups = len(set(groups))
        if n_groups < 2:
            raise MeasureInputError(f"speaker ID with groups needs at least two groups, got {n_groups}")
        folds = min(folds, n_groups)
        split = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, features, labels, cv=split, groups=groups)
    correct = int((predicted == labels).sum())
    ci = wilson_ci(correct, labels.size)
    return {
        "accuracy": correct / labels.size,
        "chance": float(per_speaker.max() / labels.size),
        "ci": [ci[0], ci[1]] if ci else None,
        "n_items": int(labels.size),
        "n_speakers": int(names.size),
        "n_folds": folds,
        "grouped": groups is not None,
        "features": f"unit histogram ({vocab_size}) + hashed bigram histogram ({bigram_buckets}), unit variance",
    }
