"""HuBERT features from fairseq and Hugging Face checkpoints (random weights written in each official
format) equal torchaudio's reference model on the same weights; batches, chunks, refusals."""

from __future__ import annotations

import os

import pytest
import torch
import torchaudio

from slmtok.errors import SlmtokError
from slmtok.tokenizers.features.hubert import HuBERTFeatures
from slmtok.tokenizers.features.hubert_checkpoint import read_torch_checkpoint, sha256_file
from slmtok.tokenizers.semantic import standins


@pytest.fixture(scope="module")
def model():
    return standins.random_hubert("hubert-base", seed=1)


@pytest.fixture(scope="module")
def fairseq_pt(model, tmp_path_factory):
    return standins.write_fairseq_hubert(tmp_path_factory.mktemp("fs") / "hubert_base_ls960.pt", model)


@pytest.fixture(scope="module")
def wav(speech_16k):
    return speech_16k[:12000]


def reference(model, wav: torch.Tensor, layer: int) -> torch.Tensor:
    with torch.inference_mode():
        return model.extract_features(wav[None], num_layers=layer)[0][layer - 1][0]


def test_fairseq_checkpoint_matches_torchaudio(model, fairseq_pt, wav):
    data = read_torch_checkpoint(fairseq_pt, trust=True)
    assert {"model", "cfg"} <= set(data) and "encoder.layers.0.self_attn.k_proj.weight" in data["model"]
    for layer in (1, 6, 12):
        features = HuBERTFeatures("hubert-base", checkpoint=fairseq_pt, layer=layer, trust=True)
        ours = features(wav)
        assert ours.shape == (features.num_frames(wav.numel()), 768) == (37, 768)
        torch.testing.assert_close(ours, reference(model, wav, layer), atol=1e-4, rtol=1e-4)


def test_configuration_objects_need_trust_or_a_pinned_sha256(fairseq_pt, tmp_path):
    with pytest.raises(SlmtokError, match="inert records only"):
        read_torch_checkpoint(fairseq_pt)
    data = read_torch_checkpoint(fairseq_pt, sha256=sha256_file(fairseq_pt))  # as for a card-pinned file
    assert data["cfg"].__class__.__module__ == "omegaconf.dictconfig"  # an inert record, not omegaconf's
    plain = standins.write_fairseq_hubert(tmp_path / "plain.pt", style="plain")
    assert "model" in read_torch_checkpoint(plain)  # nothing but tensors and dicts: no trust needed


def test_namespace_args_layout(model, tmp_path, wav):
    path = standins.write_fairseq_hubert(tmp_path / "old.pt", model, style="namespace")
    with pytest.raises(SlmtokError, match="argparse.Namespace"):
        HuBERTFeatures("hubert-base", checkpoint=path, layer=3)
    ours = HuBERTFeatures("hubert-base", checkpoint=path, layer=3, trust=True)(wav)
    torch.testing.assert_close(ours, reference(model, wav, 3), atol=1e-4, rtol=1e-4)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_RAN",))


def test_code_in_a_checkpoint_is_refused_even_with_trust(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": {"w": torch.zeros(1)}, "args": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(SlmtokError, match="refusing"):
        read_torch_checkpoint(tmp_path / "evil.pt", trust=True)
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": eval}, tmp_path / "eval.pt")
    with pytest.raises(SlmtokError, match="builtins.eval"):
        read_torch_checkpoint(tmp_path / "eval.pt", trust=True)
    assert not (tmp_path / "EVIL_RAN").exists()


@pytest.mark.parametrize("use_safetensors", [True, False])
def test_huggingface_checkpoint_matches_torchaudio(model, tmp_path, wav, use_safetensors):
    folder = standins.write_huggingface_hubert(tmp_path / "hf", model, safetensors=use_safetensors)
    ours = HuBERTFeatures("hubert-base", checkpoint=folder, layer=9)(wav)
    torch.testing.assert_close(ours, reference(model, wav, 9), atol=1e-4, rtol=1e-4)


def test_batch_equals_single_and_ignores_padding(fairseq_pt, speech_batch):
    features = HuBERTFeatures("hubert-base", checkpoint=fairseq_pt, layer=6, trust=True)
    wav, lengths = speech_batch
    noisy = wav[:, 0].clone()
    for i, n in enumerate(lengths.tolist()):
        noisy[i, n:] = torch.randn(noisy.shape[-1] - n)
    batch, frames = features.extract(noisy, lengths)
    assert frames.tolist() == [features.num_frames(int(n)) for n in lengths]
    for i in range(3):
        alone = features(wav[i, 0, : int(lengths[i])])
        torch.testing.assert_close(batch[i, : frames[i]], alone, atol=2e-4, rtol=1e-4)
        assert (batch[i, frames[i] :] == 0).all()


def test_chunked_long_audio(fairseq_pt, speech_16k):
    long = torch.cat([speech_16k, speech_16k])  # 3 s
    whole = HuBERTFeatures("hubert-base", checkpoint=fairseq_pt, layer=2, trust=True)
    chunked = HuBERTFeatures(
        "hubert-base", checkpoint=fairseq_pt, layer=2, trust=True, chunk_seconds=1.0, context_seconds=0.5
    )
    a, b = whole(long), chunked(long)
    assert a.shape == b.shape == (whole.num_frames(long.numel()), 768)
    # frames deep inside a chunk see the same audio as unchunked, up to the per-chunk normalisation
    assert torch.nn.functional.cosine_similarity(a, b).mean() > 0.9
    short = HuBERTFeatures("hubert-base", checkpoint=fairseq_pt, layer=2, trust=True, chunk_seconds=5.0)
    assert torch.equal(short(long), a)


def test_large_layout_normalises_and_uses_layer_norm(tmp_path, wav):
    """hubert-large's path: layer-norm feature extractor, pre-norm transformer, normalised waveform."""
    torch.manual_seed(0)
    small = torchaudio.models.wav2vec2_model(
        extractor_mode="layer_norm", extractor_conv_layer_config=None, extractor_conv_bias=True,
        encoder_embed_dim=64, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4, encoder_num_layers=2, encoder_num_heads=4, encoder_attention_dropout=0.0,
        encoder_ff_interm_features=128, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0,
        encoder_layer_norm_first=True, encoder_layer_drop=0.0, aux_num_out=None,
    ).eval()  # fmt: skip
    settings = {**standins.FAIRSEQ_LARGE, "encoder_layers": 2, "encoder_embed_dim": 64,
                "encoder_ffn_embed_dim": 128, "encoder_attention_heads": 4, "conv_pos": 16,
                "conv_pos_groups": 4, "conv_bias": True}  # fmt: skip
    state = standins.fairseq_state_dict(small, group_norm=False)
    task = {"_name": "hubert_pretraining", "normalize": True}
    torch.save(
        {"model": state, "args": None, "cfg": {"model": settings, "task": task}}, tmp_path / "large.pt"
    )
    features = HuBERTFeatures("hubert-large", checkpoint=tmp_path / "large.pt", layer=2)
    assert features.normalize and features.dim == 64
    normalised = torch.nn.functional.layer_norm(wav, wav.shape)
    torch.testing.assert_close(features(wav), reference(small, normalised, 2), atol=1e-4, rtol=1e-4)


def test_layer_out_of_range(fairseq_pt):
    with pytest.raises(SlmtokError, match="layers 1 to 12"):
        HuBERTFeatures("hubert-base", checkpoint=fairseq_pt, layer=13, trust=True)


def test_published_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path))
    monkeypatch.setenv("SLMTOK_OFFLINE", "1")
    with pytest.raises(SlmtokError, match="hubert_base_ls960.pt.*dl.fbaipublicfiles.com"):
        HuBERTFeatures("hubert-base", layer=6)
