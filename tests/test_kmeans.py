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


def test_faiss_refine_runs_on_every_row_after_a_subsample():
    """With ``max_points_per_centroid`` FAISS fits on a subsample; ``refine_iter`` then iterates on all
    rows, which cannot raise the inertia over all rows (Lloyd steps never do)."""
    gen = np.random.default_rng(0)
    means = gen.normal(size=(40, 16)).astype(np.float32) * 3
    x = (means[gen.integers(0, 40, 20_000)] + gen.normal(size=(20_000, 16))).astype(np.float32)
    options = {"n_iter": 5, "max_points_per_centroid": 40}
    plain = kmeans.fit(x, 32, seed=0, **options)
    refined = kmeans.fit(x, 32, seed=0, refine_iter=4, **options)
    assert refined.info["refine_iter"] == 4
    assert len(refined.info["objective"]) == len(plain.info["objective"]) + 4
    assert refined.inertia(x) <= plain.inertia(x) * (1 + 1e-6)


def test_inertia_is_the_sum_of_squared_distances():
    gen = torch.Generator().manual_seed(0)
    x, c = torch.randn(3000, 24, generator=gen) * 2 + 1, torch.randn(20, 24, generator=gen)
    km = kmeans.KMeans(c)
    exact = float((x.double() - c.double()[km.assign(x)]).pow(2).sum())
    assert km.inertia(x) == pytest.approx(exact, rel=1e-6)


def test_faiss_on_cuda_never_falls_back_to_the_cpu_silently(monkeypatch):
    """Asking FAISS for a GPU it does not see is one line, not a quiet CPU fit labelled as asked."""
    import faiss
    import numpy as np

    from slmtok import kmeans
    from slmtok.errors import SlmtokError

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    x = np.random.default_rng(0).standard_normal((256, 8)).astype(np.float32)
    with pytest.raises(SlmtokError, match="FAISS sees no GPU") as caught:
        kmeans.fit(x, 4, backend="faiss", device="cuda")
    assert "\n" not in str(caught.value)
