"""Random-weight stand-ins for the published codec checkpoints, written in each upstream's own format.

The published weights cannot be downloaded everywhere (CI machines, air-gapped clusters), yet the
loading code, the batching and the parity with the upstream packages must be tested. These writers
build each upstream model with random weights (the real architecture, or a narrow one for fast tests),
give EnCodec-style codebooks data-driven values (so that codes vary), and save exactly what the
publisher ships:

- EnCodec: ``torch.save(model.state_dict())`` (``.th``);
- DAC: ``DAC.save(path, package=False)``: ``{"state_dict", "metadata": {"kwargs"}}`` (``.pth``);
- SpeechTokenizer: ``config.json`` + ``torch.save(model.state_dict())`` (``.pt``);
- SNAC: ``config.json`` + ``torch.save(model.state_dict())`` (``pytorch_model.bin``), as on the HF hub;
- Mimi, X-Codec2, NeuCodec, WavTokenizer, X-Codec: ``save_pretrained`` of the transformers model (``config.json`` + ``model.safetensors``), as on the HF hub.

Random weights produce noise-like audio: good for testing plumbing and speed, meaningless for quality.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

DAC_RATES = {
    "16khz": dict(sample_rate=16000, encoder_rates=[2, 4, 5, 8], n_codebooks=12),
    "24khz": dict(sample_rate=24000, encoder_rates=[2, 4, 5, 8], n_codebooks=32),
    "44khz": dict(sample_rate=44100, encoder_rates=[2, 4, 8, 8], n_codebooks=9),
}


def probe_signal(sample_rate: int, seconds: float, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """A deterministic speech-like test signal ``[1, channels, T]``: harmonic tones with gliding pitch,
    syllable-rate amplitude modulation and noise bursts, peak about 0.5."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 120 + 60 * torch.sin(2 * math.pi * 0.7 * t) + 40 * torch.rand(1, generator=g)
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / sample_rate
    voiced = sum(torch.sin(h * phase) / h for h in range(1, 12))
    envelope = (0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t)).pow(2)
    noise = torch.randn(t.shape, generator=g) * (torch.sin(2 * math.pi * 1.3 * t) > 0.6)
    x = envelope * voiced * 0.15 + 0.05 * noise
    out = torch.stack([x * (1 - 0.2 * c) for c in range(channels)])[None]
    return (out / out.abs().max() * 0.5).float()


@torch.no_grad()
def init_codebooks(codebooks: list[torch.nn.Module], frames: torch.Tensor, seed: int = 0) -> None:
    """Give EnCodec-style ``EuclideanCodebook`` modules data-driven codewords and mark them initialised:
    stage by stage, Gaussian codewords with the mean and per-dimension spread of the residual frames
    ``[N, D]`` (well separated, unlike sampled frames, so near-ties are as rare as in trained codebooks)."""
    g = torch.Generator().manual_seed(seed)
    residual = frames.clone()
    for book in codebooks:
        bins, dim = book.embed.shape
        mean, std = residual.mean(0), residual.std(0).clamp_min(1e-4)
        embed = mean + std * torch.randn(bins, dim, generator=g)
        book.embed.copy_(embed)
        book.embed_avg.copy_(embed)
        book.cluster_size.fill_(1.0)
        book.inited.fill_(1.0)
        residual = residual - embed[torch.cdist(residual, embed).argmin(dim=1)]


def write_encodec(
    path: str | os.PathLike, variant: str = "24khz", *, tiny: bool = True, seed: int = 0
) -> Path:
    """Write an EnCodec ``.th`` state dict; ``tiny``: 4 base filters and 32-d latents (else the real size)."""
    from slmtok.codecs.encodec import VARIANTS, build_model

    torch.manual_seed(seed)
    v = VARIANTS[variant]
    n_q = 32 if variant == "24khz" else 16
    arch = (
        dict(n_filters=4, dimension=32, bins=1024, n_q=n_q, lstm=2)
        if tiny
        else dict(n_filters=32, dimension=128, bins=1024, n_q=n_q, lstm=2)
    )
    model = build_model(variant, arch)
    x = probe_signal(v.sample_rate, 12 if variant == "24khz" else 8, v.channels, seed)
    if v.normalize:
        x = x / (1e-8 + x.mean(dim=1, keepdim=True).pow(2).mean().sqrt())
    frames = model.encoder(x)[0].T  # [N, D]
    init_codebooks([layer._codebook for layer in model.quantizer.vq.layers], frames, seed)
    path = Path(path)
    torch.save(model.state_dict(), path)
    return path


def write_dac(path: str | os.PathLike, rate: str = "16khz", *, tiny: bool = True, seed: int = 0) -> Path:
    """Write a DAC ``.pth`` with ``DAC.save(package=False)``; ``tiny``: 8 / 32 channels (else 64 / 1536)."""
    import dac

    torch.manual_seed(seed)
    spec = DAC_RATES[rate]
    model = dac.DAC(
        encoder_dim=8 if tiny else 64,
        encoder_rates=spec["encoder_rates"],
        decoder_dim=32 if tiny else 1536,
        decoder_rates=list(reversed(spec["encoder_rates"])),
        n_codebooks=spec["n_codebooks"],
        codebook_size=1024,
        codebook_dim=8,
        sample_rate=spec["sample_rate"],
    ).eval()
    path = Path(path)
    model.save(str(path), package=False)
    return path


def speechtokenizer_config(tiny: bool = True) -> dict:
    """A SpeechTokenizer ``config.json`` (the published ``speechtokenizer_hubert_avg`` values if not tiny)."""
    return {
        "n_filters": 4 if tiny else 64,
        "strides": [8, 5, 4, 2],
        "dimension": 32 if tiny else 1024,
        "semantic_dimension": 24 if tiny else 768,
        "bidirectional": True,
        "dilation_base": 2,
        "residual_kernel_size": 3,
        "n_residual_layers": 1,
        "lstm_layers": 2,
        "activation": "ELU",
        "codebook_size": 1024,
        "n_q": 8,
        "sample_rate": 16000,
    }


def write_speechtokenizer(
    folder: str | os.PathLike, *, tiny: bool = True, seed: int = 0
) -> tuple[Path, Path]:
    """Write ``config.json`` and ``SpeechTokenizer.pt`` (a state dict) into ``folder``."""
    from speechtokenizer import SpeechTokenizer

    torch.manual_seed(seed)
    config = speechtokenizer_config(tiny)
    model = SpeechTokenizer(config).eval()
    frames = model.encoder(probe_signal(16000, 16, 1, seed))[0].T
    init_codebooks([layer._codebook for layer in model.quantizer.vq.layers], frames, seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    torch.save(model.state_dict(), folder / "SpeechTokenizer.pt")
    return folder / "config.json", folder / "SpeechTokenizer.pt"


def snac_config(tiny: bool = True) -> dict:
    """A SNAC ``config.json``: the published ``hubertsiuzdak/snac_24khz`` values, or narrow (``tiny``:
    4 encoder / 32 decoder channels) with the same strides, levels and 4096-entry codebooks."""
    return {
        "sampling_rate": 24000,
        "encoder_dim": 4 if tiny else 48,
        "encoder_rates": [2, 4, 8, 8],
        "decoder_dim": 32 if tiny else 1024,
        "decoder_rates": [8, 8, 4, 2],
        "attn_window_size": None,
        "codebook_size": 4096,
        "codebook_dim": 8,
        "vq_strides": [4, 2, 1],
        "noise": True,
        "depthwise": True,
    }


def write_snac(
    folder: str | os.PathLike, tiny: bool = True, *, seed: int = 0, **overrides
) -> tuple[Path, Path]:
    """Write ``config.json`` and ``pytorch_model.bin`` (a state dict) of a random-weight ``snac.SNAC`` into
    ``folder``, the two files ``SNAC.from_pretrained`` reads; ``overrides`` change config values."""
    from snac import SNAC

    torch.manual_seed(seed)
    config = {**snac_config(tiny), **overrides}
    model = SNAC(**config).eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder / "config.json", folder / "pytorch_model.bin"


def mimi_config(tiny: bool = True) -> dict:
    """``transformers.MimiConfig`` arguments: the published ``kyutai/mimi`` architecture (transformers'
    defaults), or narrow (``tiny``: 4 base filters, 32-d latents, one transformer layer) with the same
    strides (1920 samples per 12.5 Hz frame), 32 codebooks of 2048 entries and one semantic codebook."""
    if not tiny:
        return {}
    return dict(
        hidden_size=32,
        num_filters=4,
        codebook_dim=16,
        vector_quantization_hidden_dimension=16,
        num_hidden_layers=1,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=2,
        upsample_groups=32,
    )


@torch.no_grad()
def init_mimi_codebooks(model, frames: torch.Tensor, seed: int = 0) -> None:
    """Give every ``MimiEuclideanCodebook`` of ``model`` distinct Gaussian codewords (the mean and spread of
    the residual it sees for the latent frames ``[1, D, T]``), as ``init_codebooks`` does for EnCodec.

    transformers initialises ``embed_sum`` to zeros (every code would be 0) and caches ``embed``
    (``embed_sum / cluster_usage``) in ``_embed``: ``cluster_usage`` is set to ones, ``initialized`` to 1
    and the cache is reset so the new codewords are used."""
    g = torch.Generator().manual_seed(seed)
    split = model.quantizer
    for rvq in (split.semantic_residual_vector_quantizer, split.acoustic_residual_vector_quantizer):
        x = rvq.input_proj(frames) if rvq.input_proj is not None else frames
        residual = x[0].T  # [T, D]
        for layer in rvq.layers:
            book = layer.codebook
            bins, dim = book.embed_sum.shape
            mean, std = residual.mean(0), residual.std(0).clamp_min(1e-4)
            embed = mean + std * torch.randn(bins, dim, generator=g)
            book.embed_sum.copy_(embed)
            book.cluster_usage.fill_(1.0)
            book.initialized.fill_(1.0)
            book._embed = None
            residual = residual - embed[torch.cdist(residual, embed).argmin(dim=1)]


def write_mimi(folder: str | os.PathLike, tiny: bool = True, *, seed: int = 0, **overrides) -> Path:
    """Write a random-weight ``transformers.MimiModel`` with ``save_pretrained`` (``config.json`` +
    ``model.safetensors``, the files of the hub repo ``kyutai/mimi``) into ``folder``; return the folder.
    ``overrides`` change ``MimiConfig`` values."""
    from transformers import MimiConfig, MimiModel

    torch.manual_seed(seed)
    model = MimiModel(MimiConfig(**{**mimi_config(tiny), **overrides})).eval()
    frames = model.encoder(probe_signal(model.config.sampling_rate, 8, 1, seed)).latents  # [1, D, T]
    init_mimi_codebooks(model, frames, seed)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def xcodec2_config(tiny: bool = True) -> dict:
    """``transformers.Xcodec2Config`` arguments: the published ``HKUSTAudio/xcodec2-hf`` architecture
    (transformers' defaults), or narrow (``tiny``: a one-layer 32-d Wav2Vec2-BERT, 4 base encoder filters,
    a one-layer 64-d decoder) with the same hop (320 samples at 16 kHz, 50 Hz) and FSQ levels (65536)."""
    if not tiny:
        return {}
    semantic = dict(
        model_type="wav2vec2-bert",
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        output_hidden_size=32,
        conv_depthwise_kernel_size=3,
    )
    return dict(
        hidden_size=64,  # the decoder's GroupNorm has 32 groups: two channels each, so one frame works
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        encoder_hidden_size=4,
        semantic_model_config=semantic,
        quantization_dim=96,  # hidden_size + the semantic hidden size
    )


def write_xcodec2(folder: str | os.PathLike, tiny: bool = True, *, seed: int = 0, **overrides) -> Path:
    """Write a random-weight ``transformers.Xcodec2Model`` with ``save_pretrained`` (``config.json`` +
    ``model.safetensors``, the files of ``HKUSTAudio/xcodec2-hf``) into ``folder``; return the folder.
    transformers' small initial weights put every FSQ dimension at its middle level (one code for all
    frames): the quantizer's input projection is rescaled so that, on a probe signal, its outputs have a
    standard deviation of 2 (codes then vary with the input). ``overrides`` change ``Xcodec2Config`` values."""
    from transformers import Xcodec2Config, Xcodec2FeatureExtractor, Xcodec2Model

    torch.manual_seed(seed)
    model = Xcodec2Model(Xcodec2Config(**{**xcodec2_config(tiny), **overrides})).eval()
    config = model.config
    features = Xcodec2FeatureExtractor(sampling_rate=config.sampling_rate, hop_length=config.hop_length)
    spread_fsq_codes(model, features, config.sampling_rate, seed)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def spread_fsq_codes(model, features, sample_rate: int, seed: int = 0) -> None:
    """Rescale the FSQ quantizer's input projection of an X-Codec2-family ``model`` (in place) so that, on
    a 2 s probe signal through ``features``, its outputs have a mean of 0 and a standard deviation of 2 per
    dimension: codes then vary with the input (transformers' initial weights give one code everywhere)."""
    probe = probe_signal(sample_rate, 2, 1, seed)[0, 0].numpy()
    inputs = features(probe, sampling_rate=sample_rate, return_tensors="pt")
    seen: list[torch.Tensor] = []
    project = model.quantizer.project_in
    hook = project.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        model.encode(inputs["input_values"], inputs["input_features"])
        hook.remove()
        centred = seen[0] - seen[0].mean(dim=(0, 1))
        scale = 2.0 / centred.std(dim=(0, 1)).clamp_min(1e-8)  # [8]
        project.bias.copy_((project.bias - seen[0].mean(dim=(0, 1))) * scale)
        project.weight.mul_(scale[:, None])


def write_neucodec(folder: str | os.PathLike, tiny: bool = True, *, seed: int = 0, **overrides) -> Path:
    """Write a random-weight ``transformers.NeuCodecModel`` with ``save_pretrained`` (``config.json`` +
    ``model.safetensors``, the files transformers reads from ``neuphonic/neucodec``) into ``folder``.
    ``tiny``: X-Codec2's narrow sizes (``xcodec2_config``) with NeuCodec's rates (16 kHz in, hop 320;
    24 kHz out, hop 480); codes spread as in ``write_xcodec2``. ``overrides`` change ``NeuCodecConfig``."""
    from transformers import NeuCodecConfig, NeuCodecFeatureExtractor, NeuCodecModel

    torch.manual_seed(seed)
    model = NeuCodecModel(NeuCodecConfig(**{**xcodec2_config(tiny), **overrides})).eval()
    config = model.config
    rate = config.input_sampling_rate
    features = NeuCodecFeatureExtractor(sampling_rate=rate, hop_length=config.encoder_hop_length)
    spread_fsq_codes(model, features, rate, seed)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


WAVTOKENIZER_RATIOS = {"40hz": [6, 5, 5, 4], "75hz": [8, 5, 4, 2]}  # hop 600 / 320 at 24 kHz


def wavtokenizer_config(variant: str = "40hz", tiny: bool = True) -> dict:
    """``transformers.WavTokenizerConfig`` arguments: the published architecture (transformers' defaults,
    the ``upsampling_ratios`` of the 40 or 75 Hz release), or narrow (``tiny``: 4 base filters, 16-d
    latents, a 32-d one-block Vocos decoder) with the same hop and a codebook of 4096 entries."""
    ratios = {"upsampling_ratios": WAVTOKENIZER_RATIOS[variant]}
    if not tiny:
        return ratios
    return dict(
        ratios,
        num_filters=4,
        hidden_size=16,
        codebook_dim=16,
        decoder_hidden_size=32,
        decoder_intermediate_size=64,
        decoder_num_layers=1,
        decoder_attention_num_groups=8,
    )


def write_wavtokenizer(
    folder: str | os.PathLike, variant: str = "40hz", tiny: bool = True, *, seed: int = 0, **overrides
) -> Path:
    """Write a random-weight ``transformers.WavTokenizerModel`` with ``save_pretrained`` (``config.json`` +
    ``model.safetensors``, the files of ``swiss-ai/wavtokenizer-large-unify-40token``) into ``folder``.
    transformers initialises the codebook to zeros (every code 0): it gets data-driven Gaussian codewords
    (``init_codebooks``). ``overrides`` change ``WavTokenizerConfig`` values."""
    from transformers import WavTokenizerConfig, WavTokenizerModel

    torch.manual_seed(seed)
    config = WavTokenizerConfig(**{**wavtokenizer_config(variant, tiny), **overrides})
    model = WavTokenizerModel(config).eval()
    encoder = model.encoder_model
    with torch.no_grad():
        frames = encoder.encoder(probe_signal(config.sampling_rate, 8, 1, seed))[0].T  # [N, D]
    book = encoder.quantizer.codebook
    init_codebooks([book], frames, seed)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def xcodec_config(tiny: bool = True) -> dict:
    """``transformers.XcodecConfig`` arguments: the published architecture (transformers' defaults: DAC
    acoustic encoder / decoder, HuBERT Base semantic model, 8 codebooks of 1024 at 50 Hz), or narrow
    (``tiny``: a 4-filter DAC, a one-layer 16-d HuBERT) with the same strides and codebooks."""
    if not tiny:
        return {}
    return dict(
        acoustic_model_config=dict(encoder_hidden_size=4, decoder_hidden_size=16, hidden_size=8),
        semantic_model_config=dict(
            model_type="hubert",
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            conv_dim=[8] * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
        ),
    )


def write_xcodec(folder: str | os.PathLike, tiny: bool = True, *, seed: int = 0, **overrides) -> Path:
    """Write a random-weight ``transformers.XcodecModel`` with ``save_pretrained`` (``config.json`` +
    ``model.safetensors``, the files of ``hf-audio/xcodec-hubert-librispeech``) into ``folder``.
    transformers initialises the codebooks to zeros: they get data-driven Gaussian codewords from the fused
    (acoustic + semantic) frames ``XcodecModel.encode`` quantizes (``init_codebooks``)."""
    import torch.nn.functional as F
    from transformers import XcodecConfig, XcodecModel

    torch.manual_seed(seed)
    model = XcodecModel(XcodecConfig(**{**xcodec_config(tiny), **overrides})).eval()
    x = probe_signal(model.config.sample_rate, 8, 1, seed)
    with torch.no_grad():  # the steps of ``XcodecModel.encode`` up to the quantizer
        semantic = model.encoder_semantic(model._extract_semantic_features(x).transpose(1, 2))
        acoustic = model.acoustic_encoder(x)
        if acoustic.shape[-1] != semantic.shape[-1]:
            acoustic = model.acoustic_encoder(F.pad(x, (model.pad, model.pad)))
        fused = model.fc(torch.cat([acoustic, semantic], dim=1).transpose(1, 2))[0]  # [T, D]
    init_codebooks([q.codebook for q in model.quantizer.quantizers], fused, seed)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder
