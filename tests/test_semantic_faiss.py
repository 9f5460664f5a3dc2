"""``mhubert-147``: semantic units from a FAISS index, read with FAISS itself.

Where the references come from: the index is built and written by ``faiss`` here (``IndexFlatL2`` of
1000 centroids; an ``IndexPreTransform`` of a PCA and an ``IndexIVFFlat`` with 1000 lists), the features
by ``transformers.HubertModel`` (a tiny random configuration written with ``save_pretrained``), layer 9
``hidden_states``, on each item alone. slmtok's units must equal ``index.search(features, 1)`` (flat) and
the IVF list ``faiss`` assigns (``quantizer.search`` after the PCA, both computed by faiss).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slmtok
from slmtok import hub
from slmtok.errors import SlmtokError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
K = 1000


@pytest.fixture(scope="module")
def hubert(tmp_path_factory):
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(3)
    config = HubertConfig(
        hidden_size=32,
        num_hidden_layers=9,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    model = HubertModel(config).eval()
    folder = tmp_path_factory.mktemp("mhubert")
    model.save_pretrained(folder)
    return model, folder


def layer9(model, wav: torch.Tensor) -> np.ndarray:
    """transformers' ``hidden_states[9]`` ``[T', 32]`` of one item, normalised as transformers'
    ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does (mHuBERT-147's preprocessing)."""
    from transformers import Wav2Vec2FeatureExtractor

    x = Wav2Vec2FeatureExtractor(do_normalize=True)(wav.numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        return model(x.input_values, output_hidden_states=True).hidden_states[9][0].numpy()


@pytest.fixture(scope="module")
def frames(hubert, speech_16k):
    return layer9(hubert[0], speech_16k)


def test_units_equal_faiss_search_of_a_flat_index(hubert, frames, speech_batch, tmp_path):
    import faiss

    rng = np.random.default_rng(0)
    centroids = (
        frames[rng.integers(0, len(frames), K)] + rng.standard_normal((K, 32)).astype(np.float32) * 0.1
    )
    index = faiss.IndexFlatL2(32)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    faiss.write_index(index, str(tmp_path / "units.index"))
    tok = slmtok.load("mhubert-147", checkpoint=hubert[1], kmeans=tmp_path / "units.index", vocoder="none")
    assert tok.card.codebook_sizes == (K,) and tok.card.frame_rate == 50 and "NC" in tok.card.license
    wav, lengths = speech_batch
    tokens = tok.encode(wav, 16000, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        expected = index.search(layer9(hubert[0], wav[i, 0, :n]), 1)[1][:, 0]
        got = tokens.codes[i, 0, : int(tokens.lengths[i])].numpy()
        assert len(set(expected.tolist())) > 5  # real speech spreads over many units
        np.testing.assert_array_equal(got, expected)


def test_units_equal_faiss_ivf_lists_behind_a_pretransform(hubert, frames, speech_16k, tmp_path):
    import faiss

    rng = np.random.default_rng(1)
    data = np.ascontiguousarray(
        np.repeat(frames, 16, 0) + rng.standard_normal((16 * len(frames), 32)) * 0.1, "f4"
    )
    pca = faiss.PCAMatrix(32, 16)
    pca.train(data)
    projected = pca.apply_py(data)
    quantizer = faiss.IndexFlatL2(16)
    quantizer.add(np.ascontiguousarray(projected[rng.choice(len(projected), K, replace=False)]))
    ivf = faiss.IndexIVFFlat(quantizer, 16, K)
    index = faiss.IndexPreTransform(pca, ivf)
    assert index.is_trained
    index.add(data)
    faiss.write_index(index, str(tmp_path / "ivf.index"))
    tok = slmtok.load("mhubert-147", checkpoint=hubert[1], kmeans=tmp_path / "ivf.index", vocoder="none")
    tokens = tok.encode(speech_16k, 16000)
    expected = quantizer.search(pca.apply_py(layer9(hubert[0], speech_16k)), 1)[1][:, 0]
    np.testing.assert_array_equal(tokens.codes[0, 0].numpy(), expected)


def test_bad_index_files_are_one_line_errors(hubert, tmp_path):
    import pickle

    import faiss

    (tmp_path / "pickle.index").write_bytes(pickle.dumps({"centroids": np.zeros((K, 32))}))
    with pytest.raises(SlmtokError, match="not a FAISS index"):
        slmtok.load("mhubert-147", checkpoint=hubert[1], kmeans=tmp_path / "pickle.index", vocoder="none")
    small = faiss.IndexFlatL2(32)
    small.add(np.zeros((10, 32), "f4"))
    faiss.write_index(small, str(tmp_path / "small.index"))
    with pytest.raises(SlmtokError, match="10 units"):
        slmtok.load("mhubert-147", checkpoint=hubert[1], kmeans=tmp_path / "small.index", vocoder="none")
    wide = faiss.IndexFlatL2(8)
    wide.add(np.zeros((K, 8), "f4"))
    faiss.write_index(wide, str(tmp_path / "wide.index"))
    with pytest.raises(SlmtokError, match="8-d frames"):
        slmtok.load("mhubert-147", checkpoint=hubert[1], kmeans=tmp_path / "wide.index", vocoder="none")


def test_card_names_the_published_index():
    card = hub.get_card("mhubert-147")
    entry = card.file("kmeans")
    assert entry.hf_repo == "utter-project/mHuBERT-147-base-2nd-iter"
    assert entry.filename == entry.hf_filename == "mhubert147_faiss.index"
    assert entry.sha256 == "c362e5b3d94a1210a4776a5eb91b7389deef60ab5d0789a1502d96df61816f9a"
    assert card.extra["features"] == "mhubert-147-iter2" and card.extra["layer"] == 9
    assert card.codebook_size == K and card.license == "CC-BY-NC-SA-4.0"
    features = hub.get_card("mhubert-147-iter2-base")
    assert {f.hf_repo for f in features.files} == {"utter-project/mHuBERT-147-base-2nd-iter"}
