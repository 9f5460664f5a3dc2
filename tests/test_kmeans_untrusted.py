"""Untrusted k-means files: read without joblib or ``pickle.load`` (whatever joblib is installed), payloads
never run, absurd shapes refused in one line before any allocation.

References: the valid files are written by scikit-learn + joblib themselves and the expected assignments
are scikit-learn's ``KMeans.predict``; the malicious files are built with joblib's own writer
(``joblib.dump``) and joblib's own ``NumpyArrayWrapper`` record, so they are laid out exactly as a
published ``km.bin``.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import joblib
import joblib.numpy_pickle
import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans

from slmtok import kmeans
from slmtok.errors import SlmtokError
from slmtok.kmeans.sklearn_import import UnsafePickleError


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: a payload whose effect the test can see."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3000, 12)) * 3).astype(np.float32)
    model = MiniBatchKMeans(8, n_init=1, random_state=0, batch_size=500, max_iter=5).fit(x)
    return model, x


def _forbid_joblib_and_pickle_readers(monkeypatch) -> list[str]:
    """Make every joblib / stdlib pickle reader raise (and note the call): the loader must use none."""
    calls: list[str] = []

    def refuse(name):
        def raiser(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called")

        return raiser

    for owner, name in [
        (joblib, "load"),
        (joblib.numpy_pickle, "load"),
        (joblib.numpy_pickle, "_validate_fileobject_and_memmap"),
        (joblib.numpy_pickle.NumpyUnpickler, "__init__"),
        (joblib.numpy_pickle.NumpyUnpickler, "load"),
        (joblib.numpy_pickle.NumpyArrayWrapper, "read"),
        (joblib.numpy_pickle.NumpyArrayWrapper, "read_array"),
        (pickle, "load"),
        (pickle, "loads"),
        (pickle, "Unpickler"),
    ]:
        monkeypatch.setattr(owner, name, refuse(f"{getattr(owner, '__name__', owner)}.{name}"))
    return calls


@pytest.mark.parametrize("compress", [0, 3, "gzip", "bz2", "xz", "lzma"])
def test_valid_km_bin_loads_without_joblib_or_pickle_load(fitted, tmp_path, monkeypatch, compress):
    """A km.bin written by scikit-learn + joblib (plain or compressed) loads with every joblib and stdlib
    pickle reader disabled, and assigns exactly as scikit-learn's ``predict``."""
    model, x = fitted
    path = tmp_path / "km.bin"
    joblib.dump(model, path, compress=compress)
    calls = _forbid_joblib_and_pickle_readers(monkeypatch)
    km = kmeans.load(path)
    monkeypatch.undo()
    assert calls == []
    assert km.k == 8 and np.array_equal(km.centroids.numpy(), model.cluster_centers_.astype(np.float32))
    assert np.array_equal(km.assign(x).numpy(), model.predict(x))


def test_object_array_payload_never_runs_whatever_joblib_is_installed(fitted, tmp_path, monkeypatch):
    """GHSA-m62q-453p-gv66: joblib < 1.6 hands an object array's nested pickle to bare ``pickle.load``.
    The file is refused in one line, the payload never runs, and no joblib/pickle reader is ever called
    (so the result does not depend on the joblib version)."""
    model, _ = fitted
    marker = tmp_path / "PAYLOAD_RAN"
    tainted = pickle.loads(pickle.dumps(model))
    tainted._counts = np.array([_WritesMarker(marker), 1], dtype=object)
    path = tmp_path / "km.bin"
    joblib.dump(tainted, path)
    assert not marker.exists()
    calls = _forbid_joblib_and_pickle_readers(monkeypatch)
    with pytest.raises(UnsafePickleError, match="Python objects") as error:
        kmeans.load(path)
    monkeypatch.undo()
    assert calls == [] and "\n" not in str(error.value)
    assert not marker.exists()


def _absurd_km_bin(path: Path, shape: tuple[int, ...]) -> Path:
    """A joblib-layout pickle whose centroids record (joblib's own ``NumpyArrayWrapper``) declares
    ``shape`` float32 values, followed by only a few bytes."""
    from joblib.numpy_pickle import NumpyArrayWrapper

    model = MiniBatchKMeans(8)
    model.__dict__["cluster_centers_"] = NumpyArrayWrapper(np.ndarray, shape, "C", np.dtype("float32"))
    path.write_bytes(pickle.dumps(model, protocol=4) + b"\0" * 64)
    return path


def test_absurd_shapes_are_one_line_before_any_allocation(tmp_path, monkeypatch):
    """10**12 x 768 centroids declared by a km.bin or a safetensors file: one line naming the shape,
    raised before numpy allocates anything (``numpy.empty`` / ``zeros`` are disabled)."""
    path = _absurd_km_bin(tmp_path / "km.bin", (10**12, 768))
    st = tmp_path / "km.safetensors"
    header = json.dumps(
        {
            "__metadata__": {"format": "slmtok-kmeans", "info": "{}"},
            "centroids": {"dtype": "F32", "shape": [10**12, 768], "data_offsets": [0, 10**12 * 768 * 4]},
        }
    ).encode()
    st.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)

    def no_alloc(*args, **kwargs):
        raise AssertionError("allocated")

    monkeypatch.setattr(np, "empty", no_alloc)
    monkeypatch.setattr(np, "zeros", no_alloc)
    for bad in (path, st):
        with pytest.raises(SlmtokError, match=r"1000000000000, 768.*bytes") as error:
            kmeans.load(bad)
        assert "\n" not in str(error.value)


def test_truncated_and_garbage_files_are_one_line(fitted, tmp_path):
    model, _ = fitted
    path = tmp_path / "km.bin"
    joblib.dump(model, path)
    data = path.read_bytes()
    for i, blob in enumerate([data[: len(data) // 2], data[:40], b"\x80\x05" + b"\xff" * 100]):
        bad = tmp_path / f"bad{i}.bin"
        bad.write_bytes(blob)
        with pytest.raises(SlmtokError) as error:
            kmeans.load(bad)
        assert "\n" not in str(error.value)


def test_empty_or_non_finite_centroids_are_one_line(tmp_path):
    """Files written with safetensors itself (the reference writer) holding unusable centroids."""
    import torch
    from safetensors.torch import save_file

    for i, centroids in enumerate([torch.zeros(0, 4), torch.tensor([[0.0, float("nan")]]), torch.ones(3)]):
        path = tmp_path / f"km{i}.safetensors"
        save_file({"centroids": centroids}, str(path), metadata={"format": "slmtok-kmeans", "info": "{}"})
        with pytest.raises(SlmtokError) as error:
            kmeans.load(path)
        assert "\n" not in str(error.value)
    path = tmp_path / "info.safetensors"
    save_file({"centroids": torch.ones(2, 2)}, str(path), metadata={"format": "slmtok-kmeans", "info": "[1"})
    with pytest.raises(SlmtokError, match="info"):
        kmeans.load(path)


@pytest.mark.parametrize("layout", ["no-alignment", "fortran", "big-endian"])
def test_other_joblib_array_layouts(fitted, tmp_path, monkeypatch, layout):
    """Arrays as older joblib (< 1.2: no alignment padding), Fortran-ordered or big-endian centroids, all
    written by joblib's own writer; the centroids read back equal scikit-learn's."""
    reference, x = fitted
    model = pickle.loads(pickle.dumps(reference))
    expected = model.cluster_centers_.copy()
    if layout == "no-alignment":
        original = joblib.numpy_pickle.NumpyArrayWrapper.__init__

        def init(self, *args, **kwargs):
            original(self, *args, **kwargs)
            del self.numpy_array_alignment_bytes

        monkeypatch.setattr(joblib.numpy_pickle.NumpyArrayWrapper, "__init__", init)
    elif layout == "fortran":
        model.cluster_centers_ = np.asfortranarray(expected)
    else:
        model.cluster_centers_ = expected.astype(expected.dtype.newbyteorder(">"))
    path = tmp_path / "km.bin"
    joblib.dump(model, path)
    monkeypatch.undo()
    if layout == "no-alignment":
        assert b"numpy_array_alignment_bytes" not in path.read_bytes()
    km = kmeans.load(path)
    assert np.array_equal(km.centroids.numpy(), expected.astype(np.float32))
    assert np.array_equal(km.assign(x).numpy(), reference.predict(x))
