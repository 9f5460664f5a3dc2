"""Token-level probe measures (issue #11, factors A/B/C) against cases whose answer is known.

The corpus here is made in-process: random phone strings over a small inventory, each "said" by several
speakers with random phone durations, phone at each frame centre from ``slmtok.probes.frame_labels``.
Unit streams are then derived from the labels (the phone itself, the phone + speaker, noise...).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from slmtok.errors import SlmtokError
from slmtok.probes import frame_labels
from slmtok.probes.measures import (
    MeasureInputError,
    abx_error,
    dtw_distances,
    invariance,
    invariance_stats,
    length_stats,
    phone_unit_stats,
    speaker_id_accuracy,
)

FRAME_RATE = 50.0
INVENTORY = ["a", "e", "k", "s", "t"]


def _corpus(n_sentences: int = 30, n_speakers: int = 4, length: int = 12, seed: int = 0) -> dict:
    """Sentences x speakers: phones ``[(symbol, start, end)]`` with SIL at both ends, frame labels, speakers."""
    rng = np.random.default_rng(seed)
    phones, labels, speakers, seconds = [], [], [], []
    for _ in range(n_sentences):
        text = [str(rng.choice(INVENTORY))]
        while len(text) < length:  # no phone twice in a row (see test_abx_on_phone_label_units_is_zero)
            text.append(str(rng.choice([p for p in INVENTORY if p != text[-1]])))
        for speaker in range(n_speakers):
            t = 0.0
            item = []
            for symbol in ["SIL", *text, "SIL"]:
                duration = float(rng.uniform(0.05, 0.16))
                item.append((symbol, t, t + duration))
                t += duration
            n_frames = int(t * FRAME_RATE)
            phones.append(item)
            labels.append(frame_labels(item, n_frames, FRAME_RATE))
            speakers.append(f"voice{speaker}")
            seconds.append(t)
    return {"phones": phones, "labels": labels, "speakers": speakers, "seconds": seconds}


@pytest.fixture(scope="module")
def corpus() -> dict:
    return _corpus()


def _phone_units(labels: list[list[str]], offset_by_speaker: list[str] | None = None) -> list[np.ndarray]:
    """Units = the phone's index in the inventory (SIL -> 99); + 10 x speaker index if speakers given."""
    index = {p: i for i, p in enumerate(INVENTORY)} | {"SIL": 99}
    out = []
    for i, item in enumerate(labels):
        shift = 0 if offset_by_speaker is None else 10 * int(offset_by_speaker[i].removeprefix("voice"))
        out.append(np.array([index[p] + shift for p in item], dtype=np.int64))
    return out


# ----------------------------------------------------------------------------------------------- content


def test_units_equal_to_phones_have_pnmi_and_purities_one(corpus):
    stats = phone_unit_stats(_phone_units(corpus["labels"]), corpus["labels"])
    assert stats["pnmi"] == pytest.approx(1.0, abs=1e-12)
    assert stats["phone_purity"] == pytest.approx(1.0, abs=1e-12)
    assert stats["cluster_purity"] == pytest.approx(1.0, abs=1e-12)
    assert stats["n_phones"] == len(INVENTORY) and stats["excluded"] == ["SIL"]
    n_sil = sum(item.count("SIL") for item in corpus["labels"])
    assert n_sil > 0 and stats["n_excluded_frames"] == n_sil
    assert stats["n_frames"] == sum(len(item) for item in corpus["labels"]) - n_sil
    assert stats["pnmi_adjusted"] == pytest.approx(1.0, abs=1e-12) and stats["pnmi_chance"] < 0.01


def test_silence_frames_are_left_out(corpus):
    """Random units on SIL frames change nothing (they would lower all three if SIL were counted)."""
    rng = np.random.default_rng(1)
    units = _phone_units(corpus["labels"])
    for item, labels in zip(units, corpus["labels"], strict=True):
        sil = np.array([p == "SIL" for p in labels])
        item[sil] = rng.integers(0, len(INVENTORY), size=int(sil.sum()))
    stats = phone_unit_stats(units, corpus["labels"])
    assert stats["pnmi"] == pytest.approx(1.0, abs=1e-12) and stats["phone_purity"] == pytest.approx(1.0)
    counted = phone_unit_stats(units, corpus["labels"], exclude=())
    assert counted["pnmi"] < 0.95 and counted["phone_purity"] < 0.99


def test_shuffled_units_have_pnmi_near_zero(corpus):
    """Frames' units permuted at random: same unit histogram, no link to the phone.

    The plug-in mutual information of independent variables is biased up by about
    (|Y| - 1)(|Z| - 1) / (2 N) nats (Miller 1955); with |Y| = 5 phones, |Z| = 50 units and N ~ 15,000
    frames that is ~0.007 nats, i.e. PNMI ~0.005 (H(y) ~ ln 5). The bound asserted is 4x that bias.
    """
    rng = np.random.default_rng(2)
    labels = corpus["labels"]
    flat = rng.integers(0, 50, size=sum(len(item) for item in labels))
    flat = rng.permutation(flat)
    units, start = [], 0
    for item in labels:
        units.append(flat[start : start + len(item)])
        start += len(item)
    stats = phone_unit_stats(units, labels)
    bias = (len(INVENTORY) - 1) * (50 - 1) / (2 * stats["n_frames"]) / math.log(len(INVENTORY))
    assert 0.0 <= stats["pnmi"] < 4 * bias
    assert stats["phone_purity"] < 0.3  # max phone share among 5 near-uniform phones, plus noise


def test_many_random_units_inflate_pnmi_and_the_chance_level_removes_it(corpus):
    """2,000 random units over ~7,600 frames: the plug-in PNMI is far from 0 (~0.36, the bias of
    test_shuffled_units_have_pnmi_near_zero is now as large as the figure), its permutation chance level is
    the same, and the adjusted PNMI is ~0 (the spread of the chance level over shuffles is ~0.005)."""
    rng = np.random.default_rng(9)
    units = [rng.integers(0, 2000, size=len(item)) for item in corpus["labels"]]
    stats = phone_unit_stats(units, corpus["labels"], n_permutations=5)
    assert stats["pnmi"] > 0.3 and stats["phone_purity"] > 0.4
    assert stats["pnmi_chance"] == pytest.approx(stats["pnmi"], abs=0.02)
    assert stats["phone_purity_chance"] == pytest.approx(stats["phone_purity"], abs=0.02)
    assert abs(stats["pnmi_adjusted"]) < 0.03
    assert "pnmi_chance" not in phone_unit_stats(units, corpus["labels"], n_permutations=0)


def test_pnmi_and_purity_match_scikit_learn(corpus):
    """A noisy many-to-one mapping, checked against an independent implementation: PNMI = I(phone; unit)
    / H(phone) with scikit-learn's ``mutual_info_score`` and scipy's ``entropy`` (both in nats), phone
    purity from scikit-learn's ``contingency_matrix`` (column maxima / N), cluster purity (row maxima)."""
    rng = np.random.default_rng(3)
    units = []
    for item in _phone_units(corpus["labels"]):
        noisy = item * 3 + rng.integers(0, 3, size=item.size)  # each phone split over 3 units
        flip = rng.random(item.size) < 0.3
        noisy[flip] = rng.integers(0, 20, size=int(flip.sum()))
        units.append(noisy)
    stats = phone_unit_stats(units, corpus["labels"])
    keep = [np.array([p != "SIL" for p in item]) for item in corpus["labels"]]
    y = np.concatenate([np.asarray(item)[k] for item, k in zip(corpus["labels"], keep, strict=True)])
    z = np.concatenate([u[k] for u, k in zip(units, keep, strict=True)])
    _, phone_counts = np.unique(y, return_counts=True)
    assert stats["pnmi"] == pytest.approx(mutual_info_score(y, z) / scipy_entropy(phone_counts), rel=1e-9)
    table = contingency_matrix(y, z)
    assert stats["phone_purity"] == pytest.approx(table.max(axis=0).sum() / table.sum(), rel=1e-12)
    assert stats["cluster_purity"] == pytest.approx(table.max(axis=1).sum() / table.sum(), rel=1e-12)
    assert 0.2 < stats["pnmi"] < 0.9


def test_content_bad_input_is_one_line():
    with pytest.raises(MeasureInputError, match="3 unit frames but 2 phone labels"):
        phone_unit_stats([np.array([1, 2, 3])], [["a", "b"]])
    with pytest.raises(SlmtokError, match="units must be 1-D"):
        phone_unit_stats([np.zeros((2, 3), dtype=int)], [["a", "b", "c"]])
    with pytest.raises(MeasureInputError, match="negative unit -1"):
        phone_unit_stats([np.array([1, -1])], [["a", "b"]])
    with pytest.raises(MeasureInputError, match="no frame left"):
        phone_unit_stats([np.array([1, 2])], [["SIL", "SIL"]])


# ---------------------------------------------------------------------------------------------------- ABX


@pytest.mark.parametrize("mode", ["within", "across"])
def test_abx_on_phone_label_units_is_zero(corpus, mode):
    """Phone-label units tell every minimal pair apart, as the corpus has no phone twice in a row: with
    one, "e a a" and "e e a" give the same label runs and DTW ties them (scored 0.5, as in libri-light)."""
    result = abx_error(
        _phone_units(corpus["labels"]), corpus["phones"], corpus["speakers"], FRAME_RATE, mode=mode
    )
    assert result["n_triplets"] == 20_000 and result["n_phone_pairs"] == len(INVENTORY) * (len(INVENTORY) - 1)
    assert result["error"] == 0.0 and result["ci"] == [0.0, 0.0]


@pytest.mark.parametrize("mode", ["within", "across"])
def test_abx_on_random_units_is_half(corpus, mode):
    """i.i.d. random units: A, B and X exchangeable, so the error is 0.5 up to the draw (~2,000 distinct
    triphone tokens; the standard error of the mean of the drawn scores is ~0.004)."""
    rng = np.random.default_rng(4)
    units = [rng.integers(0, 20, size=len(item)) for item in corpus["labels"]]
    result = abx_error(units, corpus["phones"], corpus["speakers"], FRAME_RATE, mode=mode, seed=1)
    assert abs(result["error"] - 0.5) < 0.03
    low, high = result["ci"]
    assert low < result["error"] < high and high - low < 0.03


def test_abx_speaker_units_separate_within_from_across(corpus):
    """Units = phone + 10 x speaker: phones are told apart perfectly within a speaker, while across speakers
    X shares no unit with A or B, so every triplet is a tie (error exactly 0.5)."""
    units = _phone_units(corpus["labels"], corpus["speakers"])
    within = abx_error(units, corpus["phones"], corpus["speakers"], FRAME_RATE, mode="within")
    across = abx_error(units, corpus["phones"], corpus["speakers"], FRAME_RATE, mode="across")
    assert within["error"] == 0.0 and across["error"] == 0.5


def test_abx_is_deterministic_for_a_seed_and_bounded(corpus):
    rng = np.random.default_rng(5)
    units = [rng.integers(0, 4, size=len(item)) for item in corpus["labels"]]
    args = (units, corpus["phones"], corpus["speakers"], FRAME_RATE)
    first = abx_error(*args, max_triplets=500, seed=7)
    assert first == abx_error(*args, max_triplets=500, seed=7) and first["n_triplets"] == 500
    assert first["error"] != abx_error(*args, max_triplets=500, seed=8)["error"]


def test_abx_with_no_valid_triplet_says_so(corpus):
    one_speaker = ["voice0"] * len(corpus["speakers"])
    result = abx_error(
        _phone_units(corpus["labels"]), corpus["phones"], one_speaker, FRAME_RATE, mode="across"
    )
    assert result["error"] is None and result["n_triplets"] == 0 and result["ci"] is None


def test_abx_refuses_sample_rate_units_in_one_line(corpus):
    units = [np.zeros(int(s * 16000), dtype=np.int64) for s in corpus["seconds"]]
    with pytest.raises(MeasureInputError, match="DTW cells"):
        abx_error(units, corpus["phones"], corpus["speakers"], 16000.0, max_triplets=1000)
    with pytest.raises(MeasureInputError, match="unknown ABX mode"):
        abx_error(units, corpus["phones"], corpus["speakers"], 16000.0, mode="inside")


def _libri_light_dtw(first: np.ndarray, second: np.ndarray) -> float:
    """A scalar transcription of libri-light's ``ABX_src/dtw.pyx`` ``_dtw(..., normalized=True)``: the
    cumulative cost, then a traceback preferring diagonal, left, up, dividing by the path length."""
    dist = (first[:, None] != second[None, :]).astype(float)
    n, m = dist.shape
    cost = np.empty((n, m))
    cost[0, 0] = dist[0, 0]
    for i in range(1, n):
        cost[i, 0] = dist[i, 0] + cost[i - 1, 0]
    for j in range(1, m):
        cost[0, j] = dist[0, j] + cost[0, j - 1]
    for i in range(1, n):
        for j in range(1, m):
            cost[i, j] = dist[i, j] + min(cost[i - 1, j], cost[i - 1, j - 1], cost[i, j - 1])
    path_len, i, j = 1, n - 1, m - 1
    while i > 0 and j > 0:
        up, left, diag = cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1]
        if diag <= left and diag <= up:
            i, j = i - 1, j - 1
        elif left <= up:
            j -= 1
        else:
            i -= 1
        path_len += 1
    path_len += j if i == 0 else 0
    path_len += i if j == 0 else 0
    return cost[n - 1, m - 1] / path_len


def test_vectorised_dtw_equals_libri_light_dtw():
    """Random pairs over a 3-unit alphabet (many ties between paths), lengths 1-20, several batches.

    Reference: libri-light's ``dtw.pyx``. Its compiled form (``zerospeech-libriabx2``) needs a Cython build
    that CI does not do, so ``_libri_light_dtw`` transcribes it line by line; a one-off run against the
    compiled ``_dtw`` of zerospeech-libriabx2 0.9.8 agreed within 2.8e-8 (float32) on 5,000 random pairs."""
    rng = np.random.default_rng(6)
    lengths = rng.integers(1, 21, size=120)
    padded = np.full((120, 20), -1)
    for row, n in enumerate(lengths):
        padded[row, :n] = rng.integers(0, 3, size=n)
    pairs = rng.integers(0, 120, size=(400, 2))
    ours = dtw_distances(padded, lengths, pairs, cells_per_batch=20_000)
    reference = [_libri_light_dtw(padded[a, : lengths[a]], padded[b, : lengths[b]]) for a, b in pairs]
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------- length


def test_length_rates_and_entropies_on_known_sequences():
    # 8 frames in 2 s; runs 0,1,2,3 -> 4 after dedup; units uniform over 4 -> 2 bits; every unit
    # determines the next one (0 -> 1 -> 2 -> 3) -> conditional entropy 0.
    units = [np.array([0, 0, 1, 1, 2, 2, 3, 3])]
    stats = length_stats(units, [2.0])
    assert stats["tokens_per_second"] == 4.0 and stats["dedup_tokens_per_second"] == 2.0
    assert stats["unigram_entropy_bits"] == pytest.approx(2.0)
    assert stats["entropy_rate_bits_per_second"] == pytest.approx(8.0)
    # bigrams (0,0),(0,1),(1,1),(1,2),(2,2),(2,3),(3,3): H(prev, next) - H(prev) with prev counts 2,2,2,1
    bigram = scipy_entropy([1] * 7, base=2) - scipy_entropy([2, 2, 2, 1], base=2)
    assert stats["bigram_conditional_entropy_bits"] == pytest.approx(bigram)
    assert stats["dedup_unigram_entropy_bits"] == pytest.approx(2.0)
    assert stats["dedup_bigram_conditional_entropy_bits"] == pytest.approx(0.0)
    assert stats["n_distinct_bigrams"] == 7 and stats["dedup_n_tokens"] == 4
    huge = length_stats([np.array([0, 2**40, 0, 2**40, 0])], 1.0)  # ids too large to pack a bigram in int64
    assert huge["n_distinct_bigrams"] == 2 and huge["bigram_conditional_entropy_bits"] == pytest.approx(0.0)


def test_length_bigram_estimate_on_iid_and_markov_streams():
    """i.i.d. uniform units over 4: H(u_t | u_t-1) ~ 2 bits; a deterministic cycle: 0 bits, unigram 2."""
    rng = np.random.default_rng(7)
    iid = length_stats([rng.integers(0, 4, size=20_000)], 400.0)
    assert iid["bigram_conditional_entropy_bits"] == pytest.approx(2.0, abs=0.01)
    cycle = length_stats([np.tile(np.arange(4), 500), np.tile(np.arange(4), 300)], [40.0, 24.0])
    assert cycle["unigram_entropy_bits"] == pytest.approx(2.0)
    assert cycle["bigram_conditional_entropy_bits"] == pytest.approx(0.0, abs=1e-12)
    assert cycle["tokens_per_second"] == pytest.approx(3200 / 64.0)


def test_length_with_a_bpe_encoder():
    calls = []

    def pairs_to_ids(units: np.ndarray) -> np.ndarray:  # a stand-in BPE that merges every two units
        calls.append(units.size)
        return units[: units.size // 2 * 2].reshape(-1, 2) @ np.array([8, 1])

    stats = length_stats([np.array([1, 2, 1, 2, 3, 3]), np.array([1, 2])], 2.0, bpe=pairs_to_ids)
    assert calls == [6, 2] and stats["bpe_tokens_per_second"] == 2.0 and stats["tokens_per_second"] == 4.0
    assert stats["bpe_unigram_entropy_bits"] == pytest.approx(scipy_entropy([3, 1], base=2))
    with pytest.raises(MeasureInputError, match="bpe"):
        length_stats([np.array([1, 2])], 1.0, bpe=lambda u: u.astype(float) / 2)


def test_length_bad_input_is_one_line():
    with pytest.raises(MeasureInputError, match="units has 1 items but seconds has 2"):
        length_stats([np.array([1])], [1.0, 2.0])
    with pytest.raises(MeasureInputError, match="must be positive"):
        length_stats([np.array([1])], 0.0)
    with pytest.raises(MeasureInputError, match="must be integers"):
        length_stats([np.array([0.5])], 1.0)


# ------------------------------------------------------------------------------------------------ speaker


def _speaker_corpus(encode_speaker: bool, n_speakers: int = 4, per_speaker: int = 30) -> tuple:
    """Items of 150 units over 32 content units; when ``encode_speaker``, speaker s also emits its own unit
    32 + s on 10 % of frames (a voice colour the tokens keep)."""
    rng = np.random.default_rng(8)
    units, speakers = [], []
    for speaker in range(n_speakers):
        for _ in range(per_speaker):
            item = rng.integers(0, 32, size=150)
            if encode_speaker:
                mark = rng.random(item.size) < 0.1
                item[mark] = 32 + speaker
            units.append(item)
            speakers.append(f"voice{speaker}")
    return units, speakers


def test_speaker_id_finds_units_that_encode_the_speaker():
    units, speakers = _speaker_corpus(encode_speaker=True)
    result = speaker_id_accuracy(units, speakers, vocab_size=36)
    assert result["accuracy"] > 0.95 and result["chance"] == 0.25
    assert result["n_items"] == 120 and result["n_speakers"] == 4 and result["n_folds"] == 5
    assert result["ci"][0] > 0.9


def test_speaker_id_is_at_chance_on_speaker_independent_units():
    """Every speaker draws from the same distribution: the out-of-fold accuracy's 95 % interval (Wilson,
    120 items, half-width ~0.08) must hold chance (0.25)."""
    units, speakers = _speaker_corpus(encode_speaker=False)
    result = speaker_id_accuracy(units, speakers, vocab_size=36)
    assert result["ci"][0] <= result["chance"] <= result["ci"][1]
    assert result["accuracy"] < 0.4


def test_speaker_id_on_matched_sentences_needs_text_groups(corpus):
    """Phone-label units carry no speaker, and every speaker says the same sentences. Folds that split a
    sentence's renderings let the classifier match a test item to the same sentence, said by another
    speaker: accuracy far below chance. Folds grouped by text bring it back to chance (within the CI)."""
    units = _phone_units(corpus["labels"])
    texts = [" ".join(p for p, _, _ in item if p != "SIL") for item in corpus["phones"]]
    ungrouped = speaker_id_accuracy(units, corpus["speakers"], vocab_size=100)
    grouped = speaker_id_accuracy(units, corpus["speakers"], vocab_size=100, groups=texts)
    assert ungrouped["ci"][1] < ungrouped["chance"] and not ungrouped["grouped"]
    assert grouped["ci"][0] <= grouped["chance"] <= grouped["ci"][1] and grouped["grouped"]


def test_speaker_id_bad_input_is_one_line():
    with pytest.raises(MeasureInputError, match="at least two speakers"):
        speaker_id_accuracy([np.array([1]), np.array([2])], ["a", "a"], vocab_size=4)
    with pytest.raises(MeasureInputError, match="single item"):
        speaker_id_accuracy([np.array([1]), np.array([2]), np.array([3])], ["a", "a", "b"], vocab_size=4)
    with pytest.raises(MeasureInputError, match=">= vocab_size 4"):
        speaker_id_accuracy([np.array([1]), np.array([4])] * 2, ["a", "b"] * 2, vocab_size=4)


# --------------------------------------------------------------------------------------------- invariance


def test_invariance_known_distances():
    units = {
        "g1-clean": np.array([1, 1, 2, 3, 3, 4]),
        "g1-speed0.9": np.array([1, 1, 1, 2, 2, 3, 4, 4]),  # same runs, other durations -> 0 after dedup
        "g1-noise": np.array([1, 2, 5, 4]),  # one substitution of four -> 0.25
        "g1-voice": np.array([6, 7, 8, 9]),  # nothing in common -> 1
        "g2-clean": np.array([5, 6]),
        "g2-noise": np.array([5, 6, 7, 8]),  # two insertions, longer length 4 -> 0.5
    }
    groups = {
        "g1": [
            ("g1-clean", "clean"),
            ("g1-speed0.9", "speed0.9"),
            ("g1-noise", "noise"),
            ("g1-voice", "voice"),
        ],
        "g2": [
            SimpleNamespace(id="g2-noise", variant="noise"),
            SimpleNamespace(id="g2-clean", variant="clean"),
        ],
    }
    assert invariance(units, groups) == {"noise": pytest.approx(0.375), "speed0.9": 0.0, "voice": 1.0}
    stats = invariance_stats(units, groups)
    assert stats["noise"]["n_groups"] == 2 and stats["voice"]["ci"] is None
    identical = {k: units["g1-clean"] for k in units}
    assert set(invariance(identical, groups).values()) == {0.0}


def test_invariance_bad_input_is_one_line():
    with pytest.raises(MeasureInputError, match="0 clean items"):
        invariance({"a": np.array([1])}, {"g": [("a", "noise")]})
    with pytest.raises(MeasureInputError, match="no units for invariance item 'b'"):
        invariance({"a": np.array([1])}, {"g": [("a", "clean"), ("b", "noise")]})
