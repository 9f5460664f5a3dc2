"""Stand-in checkpoints in the upstream formats, with random weights, for offline tests and demos.

Each writer produces a file laid out exactly like the published one (names, nesting, configuration
objects), so the real loading code runs on it: fairseq HuBERT ``.pt`` (omegaconf ``cfg`` or argparse
``args``), Hugging Face HuBERT folders, scikit-learn k-means pickles (``joblib.dump``), unit HiFi-GAN
``g_XXXXXXXX`` + ``config.json``. Nothing here is a trained model.

These writers use slmtok's own key maps (torchaudio names -> fairseq / Hugging Face names), so they are
fixtures for plumbing, never a parity reference: the HuBERT parity tests take their reference from
``transformers.HubertModel`` and write fairseq files with an independent key map
(``tests/test_hubert_features.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

#: fairseq ``hubert_base_librispeech.yaml`` model/task settings (the architecture fields slmtok reads)
FAIRSEQ_BASE = {
    "_name": "hubert",
    "label_rate": 50,
    "extractor_mode": "default",
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "conv_bias": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "final_dim": 256,
    "dropout": 0.1,
    "attention_dropout": 0.1,
}
FAIRSEQ_LARGE = {
    **FAIRSEQ_BASE,
    "extractor_mode": "layer_norm",
    "encoder_layers": 24,
    "encoder_embed_dim": 1024,
    "encoder_ffn_embed_dim": 4096,
    "encoder_attention_heads": 16,
    "layer_norm_first": True,
    "final_dim": 768,
}


def random_hubert(variant: str = "hubert-base", seed: int = 0):
    """A torchaudio ``Wav2Vec2Model`` of the variant's architecture with random weights (eval mode)."""
    import torchaudio

    torch.manual_seed(seed)
    factory = torchaudio.models.hubert_large if variant == "hubert-large" else torchaudio.models.hubert_base
    model = factory()
    with torch.no_grad():  # non-trivial norms and biases, so that a mis-mapped key changes the output
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.02)
            elif "layer_norm" in name and p.ndim == 1:
                p.uniform_(0.8, 1.2)
    return model.eval()


_TO_FAIRSEQ = [
    (
        r"feature_extractor\.conv_layers\.0\.layer_norm\.(\w+)",
        r"feature_extractor.conv_layers.0.2.\1",
        "group_norm",
    ),
    (
        r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(\w+)",
        r"feature_extractor.conv_layers.\1.2.1.\2",
        None,
    ),
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(\w+)", r"feature_extractor.conv_layers.\1.0.\2", None),
    (r"encoder\.feature_projection\.projection\.(\w+)", r"post_extract_proj.\1", None),
    (r"encoder\.feature_projection\.layer_norm\.(\w+)", r"layer_norm.\1", None),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.bias", r"encoder.pos_conv.0.bias", None),
    (
        r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original0",
        r"encoder.pos_conv.0.weight_g",
        None,
    ),
    (
        r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original1",
        r"encoder.pos_conv.0.weight_v",
        None,
    ),
    (r"encoder\.transformer\.layer_norm\.(\w+)", r"encoder.layer_norm.\1", None),
    (
        r"encoder\.transformer\.layers\.(\d+)\.attention\.(\w+_proj)\.(\w+)",
        r"encoder.layers.\1.self_attn.\2.\3",
        None,
    ),
    (
        r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.(\w+)",
        r"encoder.layers.\1.self_attn_layer_norm.\2",
        None,
    ),
    (
        r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(\w+)",
        r"encoder.layers.\1.fc1.\2",
        None,
    ),
    (
        r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.(\w+)",
        r"encoder.layers.\1.fc2.\2",
        None,
    ),
    (
        r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.(\w+)",
        r"encoder.layers.\1.final_layer_norm.\2",
        None,
    ),
]


def fairseq_state_dict(model, *, group_norm: bool = True, num_labels: int = 504) -> dict[str, torch.Tensor]:
    """A torchaudio HuBERT's weights under fairseq's names, with fairseq's pre-training heads added."""
    out = {}
    for key, value in model.state_dict().items():
        for pattern, target, mode in _TO_FAIRSEQ:
            if mode == "group_norm" and not group_norm:
                continue
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, target, key)] = value.clone()
                break
        else:
            raise KeyError(f"no fairseq name for {key}")
    dim = model.encoder.feature_projection.projection.out_features
    final = 256 if dim == 768 else 768
    out["mask_emb"] = torch.rand(dim)
    out["label_embs_concat"] = torch.randn(num_labels, final)
    out["final_proj.weight"] = torch.randn(final, dim) * 0.02
    out["final_proj.bias"] = torch.zeros(final)
    return out


def write_fairseq_hubert(
    path: str | Path, model=None, *, variant: str = "hubert-base", style: str = "omegaconf"
) -> Path:
    """Write a fairseq HuBERT checkpoint: ``{"cfg" (omegaconf) | "args" (Namespace), "model", ...}``."""
    model = model if model is not None else random_hubert(variant)
    settings = FAIRSEQ_LARGE if variant == "hubert-large" else FAIRSEQ_BASE
    task = {
        "_name": "hubert_pretraining",
        "normalize": variant == "hubert-large",
        "sample_rate": 16000,
        "labels": ["km"],
    }
    state = fairseq_state_dict(model, group_norm=settings["extractor_mode"] == "default")
    checkpoint: dict[str, Any] = {"model": state, "optimizer_history": [], "extra_state": {}}
    if style == "omegaconf":
        from omegaconf import OmegaConf

        checkpoint["args"] = None
        checkpoint["cfg"] = OmegaConf.create({"common": {"seed": 1}, "model": settings, "task": task})
    elif style == "namespace":
        from argparse import Namespace

        checkpoint["args"] = Namespace(
            **{k: v for k, v in {**settings, **task}.items() if not k.startswith("_")}
        )
    elif style == "plain":
        checkpoint["args"] = None
        checkpoint["cfg"] = {"model": dict(settings), "task": task}
    else:
        raise ValueError(f"style must be omegaconf, namespace or plain, got {style!r}")
    path = Path(path)
    torch.save(checkpoint, path)
    return path


def write_huggingface_hubert(folder: str | Path, model=None, *, safetensors: bool = True) -> Path:
    """Write a ``transformers`` ``HubertModel`` folder: ``config.json`` + weights under HF names."""
    model = model if model is not None else random_hubert()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, value in model.state_dict().items():
        key = key.replace("encoder.feature_projection.", "feature_projection.")
        key = key.replace("encoder.transformer.", "encoder.")
        key = key.replace(
            "pos_conv_embed.conv.parametrizations.weight.original0", "pos_conv_embed.conv.weight_g"
        )
        key = key.replace(
            "pos_conv_embed.conv.parametrizations.weight.original1", "pos_conv_embed.conv.weight_v"
        )
        state[key] = value.clone().contiguous()
    dim = model.encoder.feature_projection.projection.out_features
    state["masked_spec_embed"] = torch.rand(dim)
    layers = len(model.encoder.transformer.layers)
    config = {
        "architectures": ["HubertModel"],
        "model_type": "hubert",
        "hidden_size": dim,
        "num_hidden_layers": layers,
        "num_attention_heads": 12 if dim == 768 else 16,
        "intermediate_size": model.encoder.transformer.layers[0].feed_forward.intermediate_dense.out_features,
        "feat_extract_norm": "group" if dim == 768 else "layer",
        "conv_dim": [512] * 7,
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_bias": dim != 768,
        "num_conv_pos_embeddings": 128,
        "num_conv_pos_embedding_groups": 16,
        "do_stable_layer_norm": dim != 768,
        "feat_proj_layer_norm": True,
        "feat_proj_dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.1,
        "hidden_dropout": 0.1,
        "layerdrop": 0.1,
        "hidden_act": "gelu",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder


def write_sklearn_kmeans(path: str | Path, k: int, dim: int, *, seed: int = 0, features=None) -> Path:
    """``joblib.dump`` of a scikit-learn ``MiniBatchKMeans`` fitted briefly (on ``features`` ``[N, dim]``
    or on random data), as GSLM's ``km.bin`` and fairseq's ``*_km500.bin`` are written."""
    import joblib
    import numpy as np
    from sklearn.cluster import MiniBatchKMeans

    if features is None:
        features = np.random.default_rng(seed).standard_normal((max(2 * k, 256), dim)).astype(np.float32)
    features = np.asarray(features, dtype=np.float32)
    model = MiniBatchKMeans(
        n_clusters=k, init="k-means++", max_iter=2, batch_size=min(10000, len(features)), n_init=1,
        compute_labels=False, random_state=seed, reassignment_ratio=0.0, tol=0.0,
    )  # fmt: skip
    model.fit(features)
    path = Path(path)
    joblib.dump(model, path)
    return path


def write_unit_vocoder(
    folder: str | Path,
    num_units: int,
    *,
    channels: int = 32,
    speakers: int = 0,
    hop: int = 320,
    seed: int = 0,
) -> Path:
    """A unit HiFi-GAN ``g_00000000`` + ``config.json`` at 16 kHz, ``16000 / hop`` units/s, with a duration
    predictor (the layout of fairseq's ``hubert_base_100_lj``; ``channels`` scales it down)."""
    from slmtok.vocoders.training.trainer import upsampling
    from slmtok.vocoders.unit_hifigan import CodeGenerator, UnitVocoderConfig

    rates, kernels = upsampling(hop)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    embed = 32
    config = {
        "resblock": "1",
        "upsample_rates": rates,
        "upsample_kernel_sizes": kernels,
        "upsample_initial_channel": channels,
        "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "num_embeddings": num_units,
        "embedding_dim": embed,
        "model_in_dim": embed * (2 if speakers else 1),
        "segment_size": 8960,
        "code_hop_size": hop,
        "f0": False,
        "num_mels": 80,
        "num_freq": 1025,
        "n_fft": 1024,
        "hop_size": 256,
        "win_size": 1024,
        "dur_prediction_weight": 1.0,
        "dur_predictor_params": {
            "encoder_embed_dim": embed,
            "var_pred_hidden_dim": embed,
            "var_pred_kernel_size": 3,
            "var_pred_dropout": 0.5,
        },
        "sampling_rate": 16000,
        "fmin": 0,
        "fmax": 8000,
    }
    if speakers:
        config.update(multispkr="from_input_file", num_speakers=speakers)
    torch.manual_seed(seed)
    generator = CodeGenerator(UnitVocoderConfig.from_dict(config))
    torch.save({"generator": generator.state_dict()}, folder / "g_00000000")
    (folder / "config.json").write_text(json.dumps(config, indent=4), encoding="utf-8")
    return folder


_HUBERT_CACHE: dict[str, Path] = {}


def standin_options(name: str, folder: str | Path) -> dict[str, Any]:
    """Load options that make tokenizer ``name`` run offline on stand-ins written into ``folder``.

    Published bundles get a random HuBERT in the fairseq format (omegaconf ``cfg``; written once per
    process and shared), a scikit-learn k-means pickle with the right K, and a small unit vocoder;
    ``semantic-bundle`` gets a folder with k-means over MFCC frames of a few real prompts.
    """
    from slmtok.tokenizers.semantic.published import BUNDLES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if name == "semantic-bundle":
        return {"bundle": str(write_mfcc_bundle(folder / "bundle"))}
    spec = BUNDLES[name]
    variant = "hubert-base"  # mhubert-base has the same architecture
    if variant not in _HUBERT_CACHE or not _HUBERT_CACHE[variant].is_file():
        _HUBERT_CACHE[variant] = write_fairseq_hubert(folder / f"{variant}.pt", variant=variant)
    frames = _standin_frames(_HUBERT_CACHE[variant], spec.layer, max(2 * spec.k, 512))
    kmeans = write_sklearn_kmeans(folder / "km.bin", spec.k, 768, features=frames)
    vocoder = write_unit_vocoder(folder / "vocoder", spec.k, channels=64)
    return {
        "checkpoint": str(_HUBERT_CACHE[variant]),
        "kmeans": str(kmeans),
        "vocoder": str(vocoder),
        "trust": True,
    }


def _standin_frames(checkpoint: Path, layer: int, n: int):
    """``[n, D]`` frames around the stand-in HuBERT's features of real speech (jittered copies), so that a
    k-means fitted on them splits real speech into many units."""
    import numpy as np

    import slmtok
    from slmtok.corpora import asterisk_prompts
    from slmtok.tokenizers.features.hubert import HuBERTFeatures

    wav = next(
        w for w in (slmtok.read_audio(p)[0][0] for p in asterisk_prompts("en")[:20]) if w.numel() > 32000
    )
    feats = HuBERTFeatures("hubert-base", checkpoint=checkpoint, layer=layer, trust=True)(wav[:48000]).numpy()
    rng = np.random.default_rng(0)
    picks = feats[rng.integers(0, feats.shape[0], n)]
    return picks + rng.standard_normal(picks.shape).astype(np.float32) * 0.05 * feats.std(0, keepdims=True)


def write_mfcc_bundle(folder: str | Path, *, k: int = 20, files: int = 12, vocoder: bool = True) -> Path:
    """A semantic bundle folder: k-means (``k`` units) over MFCC frames of the first English Asterisk
    prompts, with a small random unit vocoder (100 units/s) unless ``vocoder=False``."""
    import slmtok
    from slmtok.corpora import asterisk_prompts
    from slmtok.kmeans import fit
    from slmtok.tokenizers.features.mfcc import HOP, MFCC
    from slmtok.tokenizers.semantic.bundle import write_bundle

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mfcc = MFCC()
    frames = [mfcc(slmtok.read_audio(p)[0][0]) for p in asterisk_prompts("en")[:files]]
    km = fit(torch.cat(frames), k, backend="faiss", seed=0, n_iter=10)
    km.save(folder / "kmeans.safetensors", card=True)
    data = {
        "name": "asterisk-mfcc-km",
        "features": {"name": "mfcc", "options": {}},
        "kmeans": "kmeans.safetensors",
        "vocoder": None,
        "dedup": False,
        "license": "CC-BY-SA-3.0 (k-means fitted on the Asterisk prompts)",
        "source": "slmtok stand-in bundle (tokenizers/semantic/standins.py)",
        "description": f"k-means ({k} units) over MFCC frames of Asterisk English prompts",
    }
    if vocoder:
        write_unit_vocoder(folder / "vocoder", k, channels=64, hop=HOP)
        data["vocoder"] = "vocoder"
    write_bundle(folder, data)
    return folder
