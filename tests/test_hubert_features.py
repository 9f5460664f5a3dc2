"""HuBERT features from Hugging Face and fairseq checkpoints against an independent implementation.

Where the references come from:

- **Hugging Face format**: the reference is ``transformers.HubertModel`` itself. A model with random
  weights (HuBERT Base's configuration, biases and norms randomised so that a mis-mapped key shows) is
  written with its own ``save_pretrained`` (safetensors, and ``pytorch_model.bin``); slmtok loads the folder,
  and its layer ``L`` must equal ``output_hidden_states``'s ``hidden_states[L]`` (the output of transformer
  layer ``L``). Both run in float32 on the same machine; the features differ by accumulated rounding
  through up to 12 layers (attention, GELU and layer norms computed by two implementations: torchaudio's
  and transformers'): at most 7.4e-6 measured on features up to ~5 in size (layers 1, 6, 12), so the
  tolerance is ``atol=5e-5, rtol=1e-5``, far below any mapping error (a wrong key moves features by ~1).
- **fairseq format**: fairseq, the reference implementation, does not import on Python 3.11, so no
  fairseq reference can be installed. What is checked instead: the *same* transformers weights written
  under fairseq's names (``model`` + ``cfg`` / ``args``, as fairseq saves them) by a key map in this file
  (the inverse of the one transformers ships in ``convert_hubert_original_pytorch_checkpoint_to_pytorch.py``;
  slmtok's own maps are not used) give the transformers features through slmtok's fairseq reader (which
  maps names with torchaudio's ``import_fairseq``). So the fairseq path is tested against transformers, but
  the fairseq *file layout* is only as right as this test's reading of fairseq's names.
"""

from __future__ import annotations

import os
import re
from argparse import Namespace
from dataclasses import replace

import pytest
import torch

from slmtok.errors import SlmtokError
from slmtok.hub import sha256_file
from slmtok.tokenizers.features import hubert as hubert_module
from slmtok.tokenizers.features.hubert import HuBERTFeatures
from slmtok.tokenizers.features.hubert_checkpoint import read_torch_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def random_transformers_hubert(seed: int = 1, **config):
    """A ``transformers.HubertModel`` (HuBERT Base's configuration unless ``config`` overrides it) with
    random weights, biases and norm gains randomised too (transformers initialises them to 0 and 1)."""
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(seed)
    model = HubertModel(HubertConfig(**config)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.02)
            elif "layer_norm" in name and p.ndim == 1:
                p.uniform_(0.8, 1.2)
    return model


def transformers_layer(model, wav: torch.Tensor, layer: int) -> torch.Tensor:
    """``hidden_states[layer]`` of ``model`` on ``wav [T]``: ``[T', D]``."""
    with torch.inference_mode():
        return model(wav[None], output_hidden_states=True).hidden_states[layer][0]


#: transformers HubertModel names -> fairseq names: the inverse of transformers' own fairseq conversion
#: (``MAPPING`` and ``load_conv_layer`` in ``convert_hubert_original_pytorch_checkpoint_to_pytorch.py``)
_TO_FAIRSEQ = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(\w+)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"feature_projection\.projection\.(\w+)", r"post_extract_proj.\1"),
    (r"feature_projection\.layer_norm\.(\w+)", r"layer_norm.\1"),
    (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
    (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
    (r"encoder\.pos_conv_embed\.conv\.(\w+)", r"encoder.pos_conv.0.\1"),
    (r"encoder\.layer_norm\.(\w+)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(\w+)\.(\w+)", r"encoder.layers.\1.self_attn.\2.\3"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(\w+)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(\w+)", r"encoder.layers.\1.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(\w+)", r"encoder.layers.\1.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(\w+)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"masked_spec_embed", "mask_emb"),
]


def write_fairseq(path, model, style: str = "omegaconf", legacy: bool = False):
    """Write ``model``'s weights as a fairseq HuBERT pre-training checkpoint: ``{"model": weights under
    fairseq names (+ the pre-training heads), "cfg": {"model", "task"} (an omegaconf ``DictConfig``, or plain
    dicts) | "args": argparse.Namespace}``; ``legacy``: torch's pre-1.6 (non-zip) format."""
    c = model.config
    layer_norm = c.feat_extract_norm == "layer"
    state = {}
    for key, value in model.state_dict().items():
        norm = re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(\w+)", key)
        if norm:  # fairseq: (conv, dropout, GroupNorm | (transpose, LayerNorm, transpose), GELU)
            new = f"feature_extractor.conv_layers.{norm[1]}.2.{'1.' if layer_norm else ''}{norm[2]}"
        else:
            new = next(re.sub(p, t, key) for p, t in _TO_FAIRSEQ if re.fullmatch(p, key))
        state[new] = value.clone()
    state["label_embs_concat"] = torch.randn(504, 256)
    state["final_proj.weight"], state["final_proj.bias"] = torch.randn(256, c.hidden_size), torch.zeros(256)
    settings = {
        "_name": "hubert",
        "extractor_mode": "layer_norm" if layer_norm else "default",
        "conv_feature_layers": repr(list(zip(c.conv_dim, c.conv_kernel, c.conv_stride, strict=True))),
        "conv_bias": c.conv_bias,
        "encoder_layers": c.num_hidden_layers,
        "encoder_embed_dim": c.hidden_size,
        "encoder_ffn_embed_dim": c.intermediate_size,
        "encoder_attention_heads": c.num_attention_heads,
        "layer_norm_first": c.do_stable_layer_norm,
        "conv_pos": c.num_conv_pos_embeddings,
        "conv_pos_groups": c.num_conv_pos_embedding_groups,
    }
    task = {"_name": "hubert_pretraining", "normalize": layer_norm, "sample_rate": 16000}
    checkpoint = {"model": state, "optimizer_history": [], "extra_state": {}, "args": None}
    if style == "omegaconf":
        from omegaconf import OmegaConf

        checkpoint["cfg"] = OmegaConf.create({"model": settings, "task": task})
    elif style == "namespace":
        checkpoint["args"] = Namespace(**{k: v for k, v in {**settings, **task}.items() if k != "_name"})
    else:
        checkpoint["cfg"] = {"model": settings, "task": task}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def model():
    return random_transformers_hubert()


@pytest.fixture(scope="module")
def fairseq_pt(model, tmp_path_factory):
    return write_fairseq(tmp_path_factory.mktemp("fs") / "hubert_base_ls960.pt", model)


@pytest.fixture(scope="module")
def wav(speech_16k):
    return speech_16k[:12000]


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_huggingface_checkpoint_matches_transformers(model, tmp_path, wav, weights):
    """``save_pretrained`` (safetensors; transformers 5 writes nothing else), or its config with a
    ``torch.save``-d state dict as older releases wrote ``pytorch_model.bin``."""
    if weights == "model.safetensors":
        model.save_pretrained(tmp_path / "hf")
    else:
        model.config.save_pretrained(tmp_path / "hf")
        torch.save(model.state_dict(), tmp_path / "hf" / weights)
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", weights]
    features = HuBERTFeatures("hubert-base", checkpoint=tmp_path / "hf")
    lengths = torch.tensor([wav.numel()])
    for layer in (1, 6, 12):
        ours = features.extract(wav[None], lengths, layer=layer)[0][0]
        assert ours.shape == (features.num_frames(wav.numel()), 768) == (37, 768)
        torch.testing.assert_close(ours, transformers_layer(model, wav, layer), atol=5e-5, rtol=1e-5)


@pytest.mark.parametrize("style", ["omegaconf", "namespace", "plain"])
def test_fairseq_checkpoint_matches_transformers(model, fairseq_pt, tmp_path, wav, style):
    """See the module docstring: no fairseq reference exists on Python 3.11; the same transformers weights
    under fairseq names (written by this file's key map) must give transformers' features."""
    path = fairseq_pt if style == "omegaconf" else write_fairseq(tmp_path / f"{style}.pt", model, style)
    data = read_torch_checkpoint(path, trust=True)
    assert "model" in data and "encoder.layers.0.self_attn.k_proj.weight" in data["model"]
    features = HuBERTFeatures("hubert-base", checkpoint=path, trust=True)
    lengths = torch.tensor([wav.numel()])
    for layer in (3, 12):
        ours = features.extract(wav[None], lengths, layer=layer)[0][0]
        torch.testing.assert_close(ours, transformers_layer(model, wav, layer), atol=5e-5, rtol=1e-5)


def test_configuration_objects_need_trust_or_a_pinned_sha256(model, fairseq_pt, tmp_path):
    with pytest.raises(SlmtokError, match="trust=True"):
        read_torch_checkpoint(fairseq_pt)
    data = read_torch_checkpoint(fairseq_pt, sha256=sha256_file(fairseq_pt))  # as for a card-pinned file
    assert data["cfg"].__class__.__module__ == "omegaconf.dictconfig"  # an inert record, not omegaconf's
    assert not hasattr(data["cfg"], "keys")
    plain = write_fairseq(tmp_path / "plain.pt", model, style="plain")
    assert "model" in read_torch_checkpoint(plain)  # nothing but tensors and dicts: no trust needed
    namespace = write_fairseq(tmp_path / "old.pt", model, style="namespace")
    with pytest.raises(SlmtokError, match="argparse.Namespace"):
        HuBERTFeatures("hubert-base", checkpoint=namespace, layer=3)


@pytest.mark.parametrize("style", ["namespace", "omegaconf"])
def test_legacy_format_and_truncated_files_go_through_the_one_loading_policy(
    model, fairseq_pt, tmp_path, wav, style
):
    """HuBERT files are read by ``slmtok.hub.safe_load`` like every checkpoint: a pre-1.6 (non-zip) torch
    file with an ``argparse.Namespace`` or omegaconf configuration (whose legacy pickle names the builtin
    ``dict`` without its module) needs ``trust=True`` and then gives transformers' features; a truncated
    file is one ``CheckpointError`` line."""
    from slmtok.hub.errors import CheckpointError

    legacy = write_fairseq(tmp_path / "legacy.pt", model, style=style, legacy=True)
    with pytest.raises(SlmtokError, match="trust=True"):
        HuBERTFeatures("hubert-base", checkpoint=legacy)
    features = HuBERTFeatures("hubert-base", checkpoint=legacy, trust=True, layer=4)
    torch.testing.assert_close(features(wav), transformers_layer(model, wav, 4), atol=5e-5, rtol=1e-5)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(fairseq_pt.read_bytes()[:4096])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint") as caught:
        HuBERTFeatures("hubert-base", checkpoint=truncated, trust=True)
    assert "\n" not in str(caught.value)


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
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(SlmtokError, match="not a readable safetensors file"):
        HuBERTFeatures("hubert-base", checkpoint=tmp_path / "hf")


def test_a_checkpoint_of_another_size_is_refused_naming_both(model, tmp_path):
    """A 12 x 768 checkpoint named ``hubert-large`` (24 x 1024), or a 2 x 64 one named ``hubert-base``,
    is one ``SlmtokError`` line that names the checkpoint's size and the variant's."""
    model.save_pretrained(tmp_path / "base")
    with pytest.raises(SlmtokError, match=r"12-layer, 768-wide .* not hubert-large \(24 layers, 1024 wide\)"):
        HuBERTFeatures("hubert-large", checkpoint=tmp_path / "base")
    try:
        HuBERTFeatures("hubert-large", checkpoint=tmp_path / "base")
    except SlmtokError as error:
        assert "\n" not in str(error) and "load it as hubert-base or mhubert-base" in str(error)
    small = random_transformers_hubert(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=128, num_conv_pos_embeddings=16,
                                       num_conv_pos_embedding_groups=4)  # fmt: skip
    small.save_pretrained(tmp_path / "small")
    with pytest.raises(
        SlmtokError, match=r"2-layer, 64-wide HuBERT, not hubert-base \(12 layers, 768 wide\)$"
    ):
        HuBERTFeatures("hubert-base", checkpoint=tmp_path / "small")


def test_large_layout_normalises_and_uses_layer_norm(tmp_path, wav, monkeypatch):
    """hubert-large's path (layer-norm feature extractor with conv biases, pre-norm transformer, the
    waveform normalised as fairseq's ``task.normalize``) on a 3-layer, 64-wide transformers model (the
    variant's expected size patched to it). transformers' ``hidden_states[L]`` is layer ``L``'s output
    except for the last, which has the final layer norm applied (fairseq's ``output_layer`` has not), so
    layers 1 and 2 are compared; the input to transformers is normalised as fairseq does
    (``layer_norm(wav, wav.shape)``)."""
    small = random_transformers_hubert(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
        do_stable_layer_norm=True, conv_bias=True,
    )  # fmt: skip
    large = replace(hubert_module.VARIANTS["hubert-large"], layers=3, dim=64)
    monkeypatch.setitem(hubert_module.VARIANTS, "hubert-large", large)
    path = write_fairseq(tmp_path / "large.pt", small, style="plain")
    features = HuBERTFeatures("hubert-large", checkpoint=path)
    assert features.normalize and features.dim == 64
    normalised = torch.nn.functional.layer_norm(wav, wav.shape)
    for layer in (1, 2):
        ours = features.extract(wav[None], torch.tensor([wav.numel()]), layer=layer)[0][0]
        torch.testing.assert_close(ours, transformers_layer(small, normalised, layer), atol=5e-5, rtol=1e-5)


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


def test_layer_out_of_range(fairseq_pt):
    with pytest.raises(SlmtokError, match="layers 1 to 12"):
        HuBERTFeatures("hubert-base", checkpoint=fairseq_pt, layer=13, trust=True)


def test_published_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path))
    monkeypatch.setenv("SLMTOK_OFFLINE", "1")
    with pytest.raises(SlmtokError, match="hubert_base_ls960.pt.*dl.fbaipublicfiles.com"):
        HuBERTFeatures("hubert-base", layer=6)
