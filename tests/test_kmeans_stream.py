"""Fitting on features streamed from a corpus: uniform sampling to a budget, restarts, a log, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from slmtok import kmeans
from slmtok.errors import SlmtokError
from slmtok.kmeans.stream import FrameSampler


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((6, 8)).astype(np.float32) * 4
    return (centers[rng.integers(0, 6, 5000)] + rng.standard_normal((5000, 8)) * 0.5).astype(np.float32)


def test_sample_does_not_depend_on_how_the_stream_is_cut(frames):
    one = FrameSampler(700, seed=3)
    one.add(frames)
    many = FrameSampler(700, seed=3)
    for start in range(0, 5000, 333):
        many.add(frames[start : start + 333])
    assert one.seen == many.seen == 5000
    assert np.array_equal(one.sample, many.sample)
    assert one.sample.shape == (700, 8)


def test_sample_is_uniform():
    index = np.arange(20000, dtype=np.float32)[:, None]
    sampler = FrameSampler(2000, seed=0)
    for start in range(0, 20000, 1000):
        sampler.add(index[start : start + 1000])
    kept = sampler.sample[:, 0]
    assert len(np.unique(kept)) == 2000  # without replacement
    counts = np.histogram(kept, bins=10, range=(0, 20000))[0]
    assert counts.min() > 150 and counts.max() < 250  # about 200 per tenth of the stream


def test_merging_samplers_equals_one_sampler(frames):
    a, b = FrameSampler(500, seed=1), FrameSampler(500, seed=2)
    a.add(frames[:2500])
    b.add(frames[2500:])
    merged = FrameSampler(500)
    merged.merge(a.keys, a.rows)
    merged.merge(b.keys, b.rows)
    keys = np.concatenate([a.keys, b.keys])
    rows = np.concatenate([a.rows, b.rows])
    best = np.argsort(keys)[:500]
    assert np.array_equal(merged.sample, rows[best])


def test_fit_stream_restarts_and_log(frames):
    lines = []
    batches = (torch.from_numpy(frames[i : i + 1000]) for i in range(0, 5000, 1000))
    km = kmeans.fit_stream(batches, 6, budget=3000, restarts=3, seed=5, log=lines.append, n_iter=10)
    runs = km.info["restarts"]
    assert [r["seed"] for r in runs] == [5, 6, 7]
    assert km.info["inertia"] == pytest.approx(min(r["inertia"] for r in runs))
    assert km.info["frames_seen"] == 5000 and km.info["n_samples"] == 3000
    for run in runs:  # the convergence log of each run: one value per iteration (FAISS stops when stable)
        assert 1 <= len(run["objective"]) <= 10
        assert all(b <= a * (1 + 1e-6) for a, b in zip(run["objective"], run["objective"][1:], strict=False))
    assert lines[0].startswith("sampled 3,000 of 5,000 frames") and len(lines) == 4


def test_card_json(frames, tmp_path):
    km = kmeans.fit_stream([frames], 6, budget=4000, n_iter=5)
    km.save(tmp_path / "km.safetensors", card=True)
    card = json.loads((tmp_path / "km.safetensors.json").read_text())
    assert card["k"] == 6 and card["dim"] == 8 and len(card["sha256"]) == 64
    assert card["frames_seen"] == 5000 and "restarts" in card


def test_bad_streams():
    with pytest.raises(SlmtokError, match="no features"):
        kmeans.fit_stream([], 4)
    with pytest.raises(SlmtokError, match="cannot make"):
        kmeans.fit_stream([np.zeros((3, 2), np.float32)], 4)
    sampler = FrameSampler(10)
    sampler.add(np.zeros((4, 2), np.float32))
    with pytest.raises(SlmtokError, match="dimension"):
        sampler.add(np.zeros((4, 3), np.float32))
    with pytest.raises(SlmtokError, match="NaN"):
        sampler.add(np.full((2, 2), np.nan, np.float32))
