"""``dac-16khz``, ``dac-24khz``, ``dac-44khz``: the Descript Audio Codec, wrapping ``descript-audio-codec``.

DAC is a fully convolutional RVQ codec (no recurrence, no normalisation over time): 16 kHz 12 x 1024 at
50 frames/s (6 kbps), 24 kHz 32 x 1024 at 75 frames/s (24 kbps), 44.1 kHz 9 x 1024 at 86.13 frames/s
(7.75 kbps). Encoding is ``model.encode(model.preprocess(x))`` (the input right-padded with zeros to a
multiple of the hop, as upstream), with ``n_quantizers`` passed per call; decoding is
``model.decode(quantizer.from_codes(codes))``. The model is never asked to change state.

**Exact batching.** Items run through ``slmtok.codecs.ragged``: before each convolution the positions past
an item's end are zeroed, which is exactly the zero padding the convolution applies to the item alone, and
each item runs alone at a canonical width (its length rounded up to a grid) on one intra-op thread, items
in parallel, so its codes are the same bits alone or in any batch (``ChunkedCodec``). Against the upstream
call on the unpadded item the latents differ by rounding only (other widths), so codes agree except at
near-ties (the tests and the benchmark count them).

**Long input, exactly.** The receptive field is finite and computed from the layers at load time
(``encode_context`` / ``decode_context`` frames each side). Items longer than ``chunk_frames`` frames
are encoded (and decoded) in cores with that much real context, so every frame of a chunk sees the same
values as in a whole-input encode: chunked codes equal whole-input codes up to floating-point rounding
(identical in the tests), and memory stays bounded.

Checkpoints: ``checkpoint=`` a ``.pth`` in DAC's own format (``{"state_dict", "metadata": {"kwargs"}}``,
as ``DAC.save(package=False)`` and the releases write it). It is loaded with ``weights_only=True``;
numpy values in its metadata are admitted only if it is sha256-verified by its card or ``trust=True``.
Or a Hugging Face ``save_pretrained`` folder (``config.json`` + ``model.safetensors``, as ``descript/dac_*``
publish them): its tensors are renamed to the ``dac`` package's and weight norm folded
(``slmtok.codecs.hf_format``); a folder of another model type is refused with one line. A hub card with a
``config`` file is read the same way.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from typing import Any

import torch
from torch import nn

from slmtok.codecs import hf_format, ragged
from slmtok.codecs.base import ChunkedCodec
from slmtok.codecs.loading import CheckpointError, fold_weight_norm, resolve_source
from slmtok.errors import CodesError
from slmtok.tokenizer import content_hash
from slmtok.types import TokenizerCard

RATES = {"16khz": 16000, "24khz": 24000, "44khz": 44100}


def build_model(kwargs: dict[str, Any]):
    """``dac.DAC`` from a checkpoint's ``metadata["kwargs"]`` (unknown keys dropped, as upstream)."""
    import dac

    known = inspect.signature(dac.DAC).parameters
    return dac.DAC(**{k: v for k, v in kwargs.items() if k in known}).eval()


def encoder_radius(encoder: nn.Module) -> int:
    """Samples an encoder output frame can see on either side of its own hop (an upper bound)."""
    radius, scale = 0, 1
    for m in encoder.modules():
        if isinstance(m, nn.Conv1d):
            (k,), (s,), (d,), (p,) = m.kernel_size, m.stride, m.dilation, m.padding
            radius += max(p, d * (k - 1) - p) * scale
            scale *= s
    return radius


def decoder_radius(decoder: nn.Module) -> float:
    """Frames a decoded sample depends on, on either side of its own frame (an upper bound)."""
    radius, scale = 0.0, 1.0
    for m in decoder.modules():
        if isinstance(m, nn.ConvTranspose1d):
            (k,), (s,) = m.kernel_size, m.stride
            radius += (math.ceil(k / s) + 1) * scale
            scale /= s
        elif isinstance(m, nn.Conv1d):
            (k,), (d,), (p,) = m.kernel_size, m.dilation, m.padding
            radius += max(p, d * (k - 1) - p) * scale
    return radius


class DACTokenizer(ChunkedCodec):
    """DAC behind the ``Tokenizer`` interface. Build with ``slmtok.load("dac-44khz", ...)``.

    Args:
        rate: ``"16khz"``, ``"24khz"`` or ``"44khz"`` (set by the registered name).
        checkpoint: a local ``.pth`` in DAC's own format.
        card: the hub card to fetch weights from (default: the tokenizer's name).
        n_codebooks: default codebooks per frame (default: all of them).
        trust: admit numpy values in a checkpoint that no card has verified (code is never admitted).
    """

    chunk_frames = 1000
    max_batch_samples = 16000 * 30

    def __init__(
        self,
        *,
        rate: str = "44khz",
        device: str | torch.device = "cpu",
        checkpoint: str | os.PathLike | None = None,
        card: Any = None,
        n_codebooks: int | None = None,
        trust: bool = False,
    ) -> None:
        if rate not in RATES:
            raise ValueError(f"DAC rate must be one of {sorted(RATES)}, got {rate!r}")
        name = f"dac-{rate}"
        source = hf_format.resolve_hf(name, checkpoint=checkpoint, card=card, trust=trust)
        hf = source is not None
        if hf:  # a transformers ``save_pretrained`` folder: config.json + model.safetensors
            config = hf_format.read_config(source.paths["config"], source.label, "dac")
            kwargs = hf_format.dac_kwargs(config, source.label)
        else:
            source = resolve_source(name, checkpoint=checkpoint, card=card, trust=trust)
            obj = source.load()
            try:
                state, kwargs = obj["state_dict"], dict(obj["metadata"]["kwargs"])
            except (TypeError, KeyError):
                raise CheckpointError(
                    f"{source.label} is not a DAC checkpoint (no state_dict / metadata.kwargs)"
                ) from None
        super().__init__(device=device, load_options=source.options)
        kwargs.setdefault("sample_rate", RATES[rate])
        if int(kwargs["sample_rate"]) != RATES[rate]:
            raise CheckpointError(f"{source.label} is a {kwargs['sample_rate']} Hz DAC, not {name}")
        model = build_model(kwargs)
        if hf:
            weights = hf_format.read_weights(source.paths["weights"], source.label)
            state = hf_format.dac_state_dict(weights, kwargs, source.label)
            fold_weight_norm(model)  # the folder's weights are plain (weight norm folded on reading)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as error:
                first = (str(error).splitlines() or [type(error).__name__])[0]
                raise CheckpointError(
                    f"{source.label} does not fit the dac package's model: {first}"
                ) from None
            state_hash = content_hash({"tokenizer": name, **_jsonable(kwargs)}, state)
        else:
            missing, _ = model.load_state_dict(state, strict=False)
            if missing:
                raise CheckpointError(f"{source.label} lacks {len(missing)} DAC weights, e.g. {missing[0]}")
            state_hash = content_hash({"tokenizer": name, **_jsonable(kwargs)}, state)
            fold_weight_norm(model)
        self.model = model.to(self.device)
        self.hop = int(model.hop_length)
        self.encode_context = math.ceil(encoder_radius(model.encoder) / self.hop) + 1
        self.decode_context = math.ceil(decoder_radius(model.decoder)) + 1
        self.max_batch_samples = self.max_batch_samples * RATES[rate] // 16000
        n_q, size = model.n_codebooks, model.codebook_size
        k = n_codebooks or n_q
        if not 1 <= k <= n_q:
            raise CodesError(f"{name} has {n_q} codebooks; n_codebooks={k} is out of range")
        self.card = TokenizerCard(
            name=name,
            kind="acoustic",
            sample_rate=RATES[rate],
            channels=1,
            frame_rate=RATES[rate] / self.hop,
            codebook_sizes=(size,) * k,
            max_codebooks=n_q,
            license=source.license or "MIT",
            source=source.url or "https://github.com/descriptinc/descript-audio-codec",
            description=f"Descript Audio Codec {RATES[rate] / 1000:g} kHz, convolutional RVQ codec",
            hash=state_hash,
        )

    def encode_pieces(self, wav, lengths, n_codebooks):
        padded = [math.ceil(n / self.hop) * self.hop for n in lengths]  # model.preprocess, per item
        width = max(max(padded), wav.shape[-1])
        if width > wav.shape[-1]:
            wav = torch.nn.functional.pad(wav, (0, width - wav.shape[-1]))
        z, frames = ragged.run(self.model.encoder, wav, padded)
        codes = self.model.quantizer(z, n_codebooks)[1]  # [N, K, T']
        return codes, frames

    def decode_pieces(self, codes, lengths):
        z = self.model.quantizer.from_codes(codes)[0]
        return ragged.run(self.model.decoder, z, lengths)


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The model arguments as JSON values (for the card hash)."""
    return json.loads(json.dumps(kwargs, default=str))
