"""K-means: backends fit well, assignment is exact and batch-independent, files round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slmtok import kmeans
from slmtok.errors import SlmtokError


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((8, 16)) * 5
    x = centers[rng.integers(0, 8, 4000)] + rng.standard_normal((4000, 16)) * 0.3
    return torch.from_numpy(x.astype(np.float32)), centers


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_backends_recover_clusters(blobs, backend):
    x, centers = blobs
    km = kmeans.fit(x, 8, backend=backend, seed=0, n_iter=30)
    assert km.centroids.shape == (8, 16) and km.info["backend"] == backend
    # every true centre has a fitted centroid nearby
    d = torch.cdist(torch.from_numpy(centers).float(), km.centroids)
    assert float(d.min(1).values.max()) < 0.5
    assert km.inertia(x) == pytest.approx(4000 * 16 * 0.09, rel=0.15)


def test_assign_is_exact_and_batch_independent(blobs):
    x, _ = blobs
    km = kmeans.fit(x, 8, seed=1)
    brute = torch.cdist(x.double(), km.centroids.double()).argmin(1)
    labels = km.assign(x)
    assert torch.equal(labels, brute)
    alone = torch.cat([km.assign(x[i : i + 1]) for i in range(0, 4000, 97)])
    assert torch.equal(alone, labels[::97])
    # exact ties between two identical centroids go to the first one, in any batch
    twin = kmeans.KMeans(torch.cat([km.centroids[:1], km.centroids[:1]]))
    assert int(twin.assign(x[:5]).max()) == 0


def test_save_and_load(blobs, tmp_path):
    x, _ = blobs
    km = kmeans.fit(x, 8, seed=0)
    path = km.save(tmp_path / "km.safetensors")
    back = kmeans.load(path)
    assert torch.equal(back.centroids, km.centroids) and back.info == km.info
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(SlmtokError, match="not a slmtok k-means file"):
        kmeans.load(tmp_path / "junk")


def test_bad_features_are_refused():
    with pytest.raises(SlmtokError, match="cannot make"):
        kmeans.fit(torch.zeros(3, 2), 5)
    with pytest.raises(SlmtokError, match="NaN"):
        kmeans.fit(torch.full((10, 2), float("nan")), 2)
    with pytest.raises(SlmtokError, match="one D"):
        kmeans.fit([torch.zeros(10, 2), torch.zeros(10, 3)], 2)


def test_iterable_of_batches_and_subsampling(blobs):
    x, _ = blobs
    km = kmeans.fit((x[i : i + 1000] for i in range(0, 4000, 1000)), 8, max_samples=2000, seed=0)
    assert km.info["n_samples"] == 2000
