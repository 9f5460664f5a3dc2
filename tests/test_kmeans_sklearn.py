"""The scikit-learn backend, and published scikit-learn k-means pickles read without executing them."""

from __future__ import annotations

import io
import os
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SkKMeans
from sklearn.cluster import MiniBatchKMeans

from slmtok import kmeans
from slmtok.errors import SlmtokError
from slmtok.kmeans.sklearn_backend import RECIPE
from slmtok.kmeans.sklearn_import import UnsafePickleError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((16, 24)).astype(np.float32) * 3
    x = centers[rng.integers(0, 16, 6000)] + rng.standard_normal((6000, 24)).astype(np.float32)
    return x.astype(np.float32), centers


@pytest.fixture(scope="module")
def published(data, tmp_path_factory):
    """A MiniBatchKMeans fitted with the fairseq recipe's settings and saved as the published files are."""
    x, _ = data
    model = MiniBatchKMeans(
        n_clusters=16, init="k-means++", max_iter=20, batch_size=1000, tol=0.0, max_no_improvement=100,
        n_init=3, reassignment_ratio=0.0, compute_labels=False, init_size=None, random_state=0,
    ).fit(x)  # fmt: skip
    path = tmp_path_factory.mktemp("km") / "km.bin"
    joblib.dump(model, path)
    return model, path


def test_recipe_is_fairseq_learn_kmeans():
    assert RECIPE == {
        "init": "k-means++",
        "max_iter": 100,
        "batch_size": 10000,
        "tol": 0.0,
        "max_no_improvement": 100,
        "n_init": 20,
        "reassignment_ratio": 0.0,
    }


def test_sklearn_backend_fits(data):
    x, centers = data
    km = kmeans.fit(x, 16, backend="sklearn", seed=0, batch_size=2000, n_init=3, max_iter=30)
    assert km.info["backend"] == "sklearn" and km.centroids.shape == (16, 24)
    # exactly what scikit-learn gives with the recipe's settings and the same seed
    reference = MiniBatchKMeans(
        n_clusters=16, init="k-means++", max_iter=30, batch_size=2000, tol=0.0, max_no_improvement=100,
        n_init=3, reassignment_ratio=0.0, compute_labels=False, random_state=0,
    ).fit(x)  # fmt: skip
    assert torch.equal(km.centroids, torch.from_numpy(reference.cluster_centers_.astype(np.float32)))
    distance = torch.cdist(torch.from_numpy(centers), km.centroids).min(1).values
    assert int((distance < 0.5).sum()) >= 12  # mini-batch k-means without reassignment may merge a few
    assert km.info["inertia"] == pytest.approx(km.inertia(x), rel=1e-4)
    with pytest.raises(TypeError, match="n_iterations"):
        kmeans.fit(x, 4, backend="sklearn", n_iterations=3)
    with pytest.raises(ValueError, match="CPU"):
        kmeans.fit(x, 4, backend="sklearn", device="cuda")


def test_published_pickle_loads_and_assigns_like_predict(data, published):
    x, _ = data
    model, path = published
    km = kmeans.load(path)
    assert km.info["backend"] == "sklearn-import" and km.k == 16
    assert torch.equal(km.centroids, torch.from_numpy(model.cluster_centers_.astype(np.float32)))
    probe = np.random.default_rng(1).standard_normal((20000, 24)).astype(np.float32) * 3
    for points in (x, probe):
        assert np.array_equal(km.assign(points).numpy(), model.predict(points))


def test_converted_to_the_safe_format(published, tmp_path):
    model, path = published
    out = kmeans.load(path).save(tmp_path / "km.safetensors", card=True)
    back = kmeans.load(out)
    assert torch.equal(back.centroids, torch.from_numpy(model.cluster_centers_))
    assert (tmp_path / "km.safetensors.json").is_file()


@pytest.mark.parametrize("how", ["pickle", "joblib-zlib", "full-kmeans"])
def test_other_pickle_layouts(data, tmp_path, how):
    x, _ = data
    if how == "full-kmeans":
        model = SkKMeans(8, n_init=1, random_state=0, max_iter=5).fit(x)
        joblib.dump(model, tmp_path / "km.bin")
    else:
        model = MiniBatchKMeans(8, n_init=1, random_state=0, batch_size=1000, max_iter=3).fit(x)
        if how == "pickle":
            (tmp_path / "km.bin").write_bytes(pickle.dumps(model, protocol=4))
        else:
            joblib.dump(model, tmp_path / "km.bin", compress=3)
    km = kmeans.load(tmp_path / "km.bin")
    assert np.array_equal(km.assign(x).numpy(), model.predict(x))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_RAN",))


def test_malicious_pickles_are_refused(tmp_path, monkeypatch, published):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.bin").write_bytes(pickle.dumps({"cluster_centers_": _Evil()}))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        kmeans.load(tmp_path / "evil.bin")
    # a real sklearn pickle with a payload hidden in one of its attributes
    model, _ = published
    tainted = pickle.loads(pickle.dumps(model))
    tainted.n_steps_ = _Evil()
    joblib.dump(tainted, tmp_path / "tainted.bin")
    with pytest.raises(UnsafePickleError):
        kmeans.load(tmp_path / "tainted.bin")
    # an object-dtype array: joblib would unpickle its items with the default machinery
    tainted = pickle.loads(pickle.dumps(model))
    tainted._counts = np.array([_Evil()], dtype=object)
    joblib.dump(tainted, tmp_path / "object.bin")
    with pytest.raises(UnsafePickleError):
        kmeans.load(tmp_path / "object.bin")
    # another estimator class is not a k-means file
    from sklearn.linear_model import LinearRegression

    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), tmp_path / "other.bin")
    with pytest.raises(UnsafePickleError, match="LinearRegression"):
        kmeans.load(tmp_path / "other.bin")
    assert not (tmp_path / "EVIL_RAN").exists()


def test_not_a_kmeans_pickle(tmp_path):
    (tmp_path / "list.bin").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(SlmtokError, match="does not hold a scikit-learn k-means"):
        kmeans.load(tmp_path / "list.bin")
    (tmp_path / "cut.bin").write_bytes(io.BytesIO(pickle.dumps([1.0] * 100)).read()[:20])
    with pytest.raises(SlmtokError):
        kmeans.load(tmp_path / "cut.bin")


def test_cli_import_and_info(published, tmp_path, capsys):
    from slmtok.cli.main import main

    _, path = published
    assert main(["kmeans", "import", str(path), "-o", str(tmp_path / "km.safetensors")]) == 0
    assert "K=16" in capsys.readouterr().out
    assert main(["kmeans", "info", str(tmp_path / "km.safetensors"), "--json"]) == 0
    assert '"k": 16' in capsys.readouterr().out
