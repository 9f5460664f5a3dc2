"""``encodec-24khz`` and ``encodec-48khz``: Meta's EnCodec, wrapping the ``encodec`` package's model.

- **24 kHz** (causal, mono): 75 frames/s, up to 32 codebooks of 1024; ``n_codebooks`` 2 / 4 / 8 / 16 /
  32 is EnCodec's 1.5 / 3 / 6 / 12 / 24 kbps. Default 8 (6 kbps).
- **48 kHz** (non-causal, stereo, GroupNorm): the signal is cut into 1 s segments every 0.99 s, each
  loudness-normalised and encoded alone (as upstream); the segments' codes are concatenated in time
  (150 frames per full segment, so 151.5 frames/s). The segment layout travels with the tokens: each
  frame carries its segment's index in ``Tokens.extras["segment"]`` and its scale in
  ``Tokens.extras["scale"]`` (both ``[B, 1, T]``), because a segment is not always 150 frames: in
  47600 samples the first (non-final) segment has 149 frames and the second 1. Decoding splits the
  codes by that layout, decodes and rescales each segment and overlap-adds them with upstream's own
  ``_linear_overlap_add``, as ``EncodecModel.decode``; a layout EnCodec cannot produce is refused
  (``CodesError``). Up to 16 codebooks; default 8 (12 kbps nominal).

The number of codebooks is a per-call argument: codes come from ``quantizer.vq.encode(emb, n_q=k)``,
the call the upstream ``set_target_bandwidth`` selects, without ever setting a bandwidth on the model.

**Exact batching.** Items (24 kHz) or segments (48 kHz) run through ``slmtok.codecs.ragged``: each one is
padded, normalised and quantised exactly as alone (its own reflection and extra padding), and each item
runs alone at a canonical width (24 kHz: its length rounded up to 15 frames; 48 kHz: the segment's own
width) on one intra-op thread, items in parallel, so its codes are the same bits alone or in any batch
(``ChunkedCodec``). 48 kHz: against upstream on one torch thread the codes are equal, bit for bit (the
tests check 0 differing frames); with upstream on more threads, its own rounding changes with the thread
count, and a code can differ where two codewords are equidistant to ~1e-7 (a near-tie). 24 kHz: the
encoder runs on position-stable CPU kernels (``slmtok.codecs.stable``, see Streaming), the same sums in
another order, so against upstream a code can differ at such near-ties (2 of 165 frames at 8 kHz input
and none at 16 or 44.1 kHz on the published-size random-weight model; the parity tests check that
every differing code is a near-tie).

**Long input.** 24 kHz items longer than 60 s are encoded in 60 s cores with 5 s of audio context on each
side (``ChunkedCodec``). The encoder is causal, so a core's frames see the true past only as far back as
its context: the LSTM state is rebuilt from 5 s of audio instead of the whole past, and a code can
differ from a whole-input encode near a core start. 48 kHz segments are independent by design, so its
chunked codes are exactly the whole-input codes.

**Streaming (24 kHz).** A stream holds back its first ``warmup_frames`` frames (7, ~93 ms): the causal
convolutions pad on the left by reflection, so near the start an output reads a few frames *ahead*
(the last convolution, kernel 7 at 75 Hz, makes frame 0 read latent frame 6), and a shorter prefix's
first codes are not the whole input's (latents off by ~0.1). ``warmup_frames`` derives the count from
the layers. Past it, a prefix's codes are the whole input's, bit for bit, for any chunking: on the CPU
the encoder's convolutions, ELUs and LSTM and the quantizer run on position-stable kernels
(``slmtok.codecs.stable``), whose rounding of a time step does not depend on the input's width (with
PyTorch's own kernels, oneDNN and ATen round a prefix's last frames differently: 2 of 1239 streamed frames
flipped at near-ties). Cost: the batched encode of ``benchmarks/codecs_speed.py`` (2 cores) runs at 0.89x
the package's speed (the LSTM runs step by step). On CUDA the encoder keeps PyTorch's kernels and a stream
is exact only up to such near-ties.

**Vocos.** ``vocoder="vocos"`` (24 kHz only) decodes the codes with Vocos (``charactr/vocos-encodec-24khz``,
``slmtok.vocoders.vocos_encodec``) instead of EnCodec's decoder; ``vocoder=FOLDER`` loads a local copy in
the published layout. Encoding and the codes are unchanged; the card hash covers the Vocos weights too,
and tokens of the plain ``encodec-24khz`` (same EnCodec weights) decode with it. Vocos decodes 2 / 4 / 8
/ 16 codebooks (1.5-12 kbps) and looks ahead, so this pairing does not stream.

Checkpoints: ``checkpoint=`` a ``.th`` state dict as the publisher ships it (``encodec_24khz-d7cc33bc.th``);
the architecture is read from the tensor shapes (``n_filters``, ``dimension``, codebooks, LSTM layers),
so small stand-ins load too. Or a Hugging Face ``save_pretrained`` folder (``config.json`` +
``model.safetensors``, as ``facebook/encodec_24khz`` / ``facebook/encodec_48khz`` publish them): its
tensors are renamed to the ``encodec`` package's (``slmtok.codecs.hf_format``), its config must be one
that package builds, and a folder of another model type is refused with one line. A hub card with a
``config`` file is read the same way. Without either the published weights come from the hub card.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from slmtok.batching import pad_stack
from slmtok.codecs import hf_format, ragged, stable
from slmtok.codecs.base import ChunkedCodec
from slmtok.codecs.loading import CheckpointError, CodecSource, check_inited, fold_weight_norm, resolve_source
from slmtok.errors import CodesError, SlmtokError, TokenizerMismatchError
from slmtok.tokenizer import content_hash
from slmtok.types import TokenizerCard


@dataclass(frozen=True)
class Variant:
    """The fixed settings of one published EnCodec model (from ``encodec.model``)."""

    sample_rate: int
    channels: int
    causal: bool
    norm: str
    normalize: bool
    segment: float | None
    bandwidths: tuple[float, ...]
    default_codebooks: int


VARIANTS = {
    "24khz": Variant(24000, 1, True, "weight_norm", False, None, (1.5, 3.0, 6.0, 12.0, 24.0), 8),
    "48khz": Variant(48000, 2, False, "time_group_norm", True, 1.0, (3.0, 6.0, 12.0, 24.0), 8),
}


def infer_architecture(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """``n_filters``, ``dimension``, ``n_q``, ``bins`` and ``lstm`` layers from an EnCodec state dict."""
    first = state.get("encoder.model.0.conv.conv.weight_v", state.get("encoder.model.0.conv.conv.weight"))
    embed = state.get("quantizer.vq.layers.0._codebook.embed")
    if first is None or embed is None:
        raise ValueError("not an EnCodec state dict (no encoder.model.0 / quantizer.vq.layers.0 tensors)")
    layers = {int(m.group(1)) for k in state if (m := re.match(r"quantizer\.vq\.layers\.(\d+)\.", k))}
    lstm = {
        int(m.group(1)) for k in state if (m := re.match(r"encoder\.model\.\d+\.lstm\.weight_ih_l(\d+)$", k))
    }
    return {
        "n_filters": int(first.shape[0]),
        "dimension": int(embed.shape[1]),
        "bins": int(embed.shape[0]),
        "n_q": len(layers),
        "lstm": len(lstm),
    }


def build_model(variant: str, arch: dict[str, int]):
    """An ``encodec.EncodecModel`` of ``variant`` with the given architecture (random weights)."""
    from encodec import modules, quantization
    from encodec.model import EncodecModel

    v = VARIANTS[variant]
    common = dict(
        channels=v.channels,
        dimension=arch["dimension"],
        n_filters=arch["n_filters"],
        norm=v.norm,
        causal=v.causal,
        lstm=arch["lstm"],
    )
    model = EncodecModel(
        modules.SEANetEncoder(**common),
        modules.SEANetDecoder(**common),
        quantization.ResidualVectorQuantizer(dimension=arch["dimension"], n_q=arch["n_q"], bins=arch["bins"]),
        list(v.bandwidths),
        v.sample_rate,
        v.channels,
        normalize=v.normalize,
        segment=v.segment,
        name=f"encodec_{variant}",
    )
    return model.eval()


def _reach(module: torch.nn.Module, m: int) -> int:
    """The last input index that outputs ``0..m`` of an encoder layer read (``>= m`` for a causal layer
    whose reflect padding reads ahead near the start)."""
    from encodec.modules import conv, lstm, seanet

    if isinstance(module, torch.nn.Sequential):
        for layer in reversed(module):
            m = _reach(layer, m)
        return m
    if isinstance(module, seanet.SEANetResnetBlock):
        return max(_reach(module.block, m), _reach(module.shortcut, m))
    if isinstance(module, conv.SConv1d):
        c = module.conv.conv
        (k,), (s,), (d,) = c.kernel_size, c.stride, c.dilation
        if not module.causal:
            raise ValueError("warm-up frames are defined for causal EnCodec only")
        pad = (k - 1) * d - (s - 1)
        reflect = module.pad_mode == "reflect"
        taps = (q - pad for i in range(m + 1) for q in range(i * s, i * s + (k - 1) * d + 1, d))
        return max(0, *(abs(j) if reflect else j for j in taps))
    if isinstance(module, (lstm.SLSTM, torch.nn.ELU, torch.nn.Identity)):
        return m
    raise TypeError(f"no reach rule for EnCodec layer {type(module).__name__}")


def warmup_frames(encoder: torch.nn.Module, hop: int, limit: int = 1000) -> int:
    """The fewest frames ``f`` of input whose codes are the whole input's codes of frames ``0..f-1``.

    A causal SEANet encoder pads each convolution on the left by reflection, so near the start an
    output reads a few inputs *ahead* (EnCodec 24 kHz's last convolution, kernel 7 at 75 Hz, makes
    frame 0 read latent frame 6): frames ``< f`` are final only once ``f`` frames of input arrived."""
    for f in range(1, limit):
        if _reach(encoder.model, f - 1) < f * hop:
            return f
    raise ValueError(f"encoder reads more than {limit} frames ahead at the start")


class EncodecTokenizer(ChunkedCodec):
    """EnCodec behind the ``Tokenizer`` interface. Build with ``slmtok.load("encodec-24khz", ...)``.

    Args:
        variant: ``"24khz"`` or ``"48khz"`` (set by the registered name).
        checkpoint: a local ``.th`` state dict in EnCodec's own format.
        card: the hub card to fetch weights from (default: the tokenizer's name).
        n_codebooks: default codebooks per frame (24 kHz: 8 = 6 kbps; 48 kHz: 8 = 12 kbps nominal).
        trust: admit numpy values in a checkpoint that no card has verified (code is never admitted).
        vocoder: ``"vocos"`` (24 kHz): decode with Vocos from its hub card, or a local Vocos folder
            (``config.yaml`` + ``pytorch_model.bin``); ``None``: EnCodec's own decoder.
    """

    chunk_frames = 60 * 75
    width_multiple_frames = 15  # 0.2 s at 24 kHz; 48 kHz segments (150 frames) fill their width
    encode_context = 5 * 75
    decode_context = 5 * 75
    max_batch_samples = 24000 * 40

    def __init__(
        self,
        *,
        variant: str = "24khz",
        device: str | torch.device = "cpu",
        checkpoint: str | os.PathLike | None = None,
        card: Any = None,
        n_codebooks: int | None = None,
        trust: bool = False,
        vocoder: str | os.PathLike | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"EnCodec variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        name = f"encodec-{variant}"
        if vocoder is not None and variant != "24khz":
            raise SlmtokError(f"{name} has no vocoder option: Vocos decodes encodec-24khz codes only")
        vocoder_option = None if vocoder is None else "vocos" if str(vocoder) == "vocos" else Path(vocoder)
        if isinstance(vocoder_option, Path) and not vocoder_option.is_dir():
            raise SlmtokError(
                f"{name}: vocoder must be 'vocos' or a Vocos folder (config.yaml + pytorch_model.bin), "
                f"got {str(vocoder)!r}"
            )
        source: CodecSource | None = hf_format.resolve_hf(name, checkpoint=checkpoint, card=card, trust=trust)
        hf = source is not None
        if hf:  # a transformers ``save_pretrained`` folder: config.json + model.safetensors
            config = hf_format.read_config(source.paths["config"], source.label, "encodec")
            hf_format.encodec_check_config(config, source.label, VARIANTS[variant], name)
            weights = hf_format.read_weights(source.paths["weights"], source.label)
            state = hf_format.encodec_state_dict(weights, source.label)
        else:
            source = resolve_source(name, checkpoint=checkpoint, card=card, trust=trust)
            state = source.load_state_dict()
        options = dict(source.options)
        if vocoder_option is not None:
            options["vocoder"] = str(
                vocoder_option if vocoder_option == "vocos" else vocoder_option.resolve()
            )
        super().__init__(device=device, load_options=options)
        try:
            arch = infer_architecture(state)
            model = build_model(variant, arch)
            model.load_state_dict(state, strict=True)
        except (ValueError, RuntimeError) as error:
            if not hf:
                raise
            first = (str(error).splitlines() or [type(error).__name__])[0]
            raise CheckpointError(
                f"{source.label} does not fit the encodec package's model: {first}"
            ) from None
        check_inited(model, source.label)
        fold_weight_norm(model)
        self.model = model.to(self.device)
        self.variant = VARIANTS[variant]
        self.vocoder = None
        if vocoder_option is not None:  # Vocos instead of EnCodec's decoder, checked against its codebooks
            from slmtok.vocoders.vocos_encodec import load_vocos_encodec

            self.vocoder = load_vocos_encodec(
                None if vocoder_option == "vocos" else vocoder_option, device=self.device
            )
            self.vocoder.bind(model, source.label)
        # 24 kHz streams (``tok.streaming()``), but not with Vocos: its decoder looks ahead
        self.causal, self.lookahead = self.variant.causal and self.vocoder is None, 0
        self.hop = int(math.prod(model.encoder.ratios))
        #: frames a stream holds back at its start (``warmup_frames``): 7 for 24 kHz, ~93 ms
        self.warmup_frames = warmup_frames(model.encoder, self.hop) if self.variant.causal else 0
        if self.variant.segment is not None:
            self.segment_length = int(self.variant.segment * self.variant.sample_rate)
            self.segment_stride = max(1, int((1 - model.overlap) * self.segment_length))
            self.segment_frames = math.ceil(self.segment_length / self.hop)
            frame_rate = self.segment_frames * self.variant.sample_rate / self.segment_stride
            # segments run at their own width: every full one has the same, and each meets exactly
            # the shapes (and so the kernels) upstream's ``encode`` / ``decode`` give it
            self.width_multiple_frames = 1
        else:
            frame_rate = self.variant.sample_rate / self.hop
        self.max_batch_samples = self.max_batch_samples * self.variant.sample_rate // 24000
        k = n_codebooks or min(self.variant.default_codebooks, arch["n_q"])
        if not 1 <= k <= arch["n_q"]:
            raise CodesError(f"{name} has {arch['n_q']} codebooks; n_codebooks={k} is out of range")
        description = (
            "EnCodec 24 kHz, causal mono RVQ codec (1.5-24 kbps)"
            if variant == "24khz"
            else "EnCodec 48 kHz, stereo RVQ codec on 1 s segments (3-24 kbps)"
        )
        #: the hash of the codes' meaning (EnCodec weights alone): tokens carrying it decode here too
        self.codec_hash = content_hash({"tokenizer": name, **arch}, state)
        card_hash = self.codec_hash
        if self.vocoder is not None:
            description += ", decoded by Vocos (1.5-12 kbps)"
            card_hash = content_hash(
                {"codec": self.codec_hash, "vocoder": "vocos-encodec"}, self.vocoder.state_tensors()
            )
        self.card = TokenizerCard(
            name=name,
            kind="acoustic",
            sample_rate=self.variant.sample_rate,
            channels=self.variant.channels,
            frame_rate=frame_rate,
            codebook_sizes=(arch["bins"],) * k,
            max_codebooks=arch["n_q"],
            license=source.license or "MIT",
            source=source.url or "https://github.com/facebookresearch/encodec",
            description=description,
            hash=card_hash,
        )

    def check_tokens(self, tokens) -> None:
        """As ``Tokenizer.check_tokens``; with Vocos, tokens of the plain tokenizer (the same EnCodec
        weights, ``codec_hash``) are accepted: the codes are the same."""
        ref = tokens.tokenizer
        if self.vocoder is not None and ref.name == self.card.name and ref.hash == self.codec_hash:
            tokens = replace(tokens, tokenizer=replace(ref, hash=self.card.hash))
        elif self.vocoder is None and ref.name == self.card.name and ref.options.get("vocoder"):
            raise TokenizerMismatchError(
                f"these tokens were made by {ref.name!r} with vocoder={ref.options['vocoder']!r}; decode them "
                "with that vocoder (slmtok.load_for(tokens) does)"
            )
        super().check_tokens(tokens)

    def streaming(self, batch_size: int = 1, **options):
        """``Tokenizer.streaming``; refused with Vocos, whose decoder looks ahead."""
        if self.vocoder is not None:
            from slmtok.codecs.streaming import StreamingError

            raise StreamingError(
                f"{self.card.name!r} with vocoder=vocos cannot stream: Vocos's decoder looks ahead (its "
                "convolutions and overlap-add see later frames); stream with EnCodec's own decoder"
            )
        return super().streaming(batch_size, **options)

    # -------------------------------------------------------------------------------- 24 kHz pieces
    def encode_pieces(self, wav, lengths, n_codebooks):
        if not self.variant.causal:
            emb, frames = ragged.run(self.model.encoder, wav, lengths)
            codes = self.model.quantizer.vq.encode(emb, n_q=n_codebooks)  # [K, N, T']
            return codes.transpose(0, 1), frames
        # causal (24 kHz): CPU kernels whose rounding does not depend on the width, so a prefix's
        # codes are the whole input's (streaming, ``slmtok.codecs.stable``)
        with ragged.position_stable():
            emb, frames = ragged.run(self.model.encoder, wav, lengths)
        if emb.device.type != "cpu":
            return self.model.quantizer.vq.encode(emb, n_q=n_codebooks).transpose(0, 1), frames
        codes = stable.tiled(
            lambda e: self.model.quantizer.vq.encode(e, n_q=n_codebooks).transpose(0, 1), emb
        )
        return codes, frames

    def decode_pieces(self, codes, lengths):
        if self.vocoder is not None:  # each item alone at its own length
            return self.vocoder(codes, lengths)
        emb = self.model.quantizer.decode(codes.transpose(0, 1))
        return ragged.run(self.model.decoder, emb, lengths)

    # -------------------------------------------------------------------------------- 48 kHz segments
    def _encode(self, wav, lengths, n_codebooks):
        if self.variant.segment is None:
            return super()._encode(wav, lengths, n_codebooks)
        lengths = [int(n) for n in lengths]
        segments, scales, owners = [], [], []
        for i, n in enumerate(lengths):
            for offset in range(0, n, self.segment_stride):  # as EncodecModel.encode
                x = wav[i : i + 1, :, offset : min(n, offset + self.segment_length)]
                mono = x.mean(dim=1, keepdim=True)  # as EncodecModel._encode_frame
                scale = 1e-8 + mono.pow(2).mean(dim=2, keepdim=True).sqrt()
                segments.append((x / scale)[0])
                scales.append(scale.view(()))
                owners.append(i)
        outputs = self._run_groups(
            segments, lambda x, n: self.encode_pieces(x, n, n_codebooks), self.hop, 0.0
        )
        per_item: list[list[torch.Tensor]] = [[] for _ in lengths]
        per_scale: list[list[torch.Tensor]] = [[] for _ in lengths]
        per_segment: list[list[torch.Tensor]] = [[] for _ in lengths]
        for owner, codes, scale in zip(owners, outputs, scales, strict=True):
            index = len(per_item[owner])
            per_item[owner].append(codes)
            per_scale[owner].append(scale.expand(1, codes.shape[-1]))
            per_segment[owner].append(torch.full((1, codes.shape[-1]), index, dtype=torch.long))
        codes = pad_stack([torch.cat(c, dim=-1) for c in per_item], -1)
        scale = pad_stack([torch.cat(s, dim=-1) for s in per_scale], 0.0)
        segment = pad_stack([torch.cat(s, dim=-1) for s in per_segment], 0)
        frames = torch.tensor([sum(x.shape[-1] for x in c) for c in per_item])
        return codes, frames, {"scale": scale, "segment": segment}

    def segment_layout(
        self, lengths: list[int], extras: dict[str, torch.Tensor]
    ) -> list[list[tuple[int, int, torch.Tensor]]]:
        """Per item, its segments as ``(first frame, stop frame, scale)`` read from the tokens' extras
        ``segment`` (segment index of each frame, ``[B, 1, T]``) and ``scale`` (``[B, 1, T]``).

        ``CodesError`` unless every item's frames form segments 0, 1, 2, ... in order, each of at most
        ``segment_frames`` frames with one positive scale, every segment but the last full-length or
        followed by one of at most ``ceil((segment_length - segment_stride) / hop)`` frames (the only
        layouts ``EncodecModel.encode`` produces)."""
        name = self.card.name
        if "scale" not in extras or "segment" not in extras:
            raise CodesError(
                f"{name} tokens need their segment layout (extras 'segment' and 'scale'); tokens without "
                "'segment' were made by an older slmtok and may decode wrongly: encode the audio again"
            )
        segment, scale = extras["segment"], extras["scale"]
        width = max(lengths, default=0)
        for key, value in (("segment", segment), ("scale", scale)):
            if (
                value.ndim != 3
                or value.shape[0] != len(lengths)
                or value.shape[1] != 1
                or value.shape[2] < width
            ):
                raise CodesError(f"{name} extras[{key!r}] must be [B, 1, T] covering the codes")
        if segment.is_floating_point():
            raise CodesError(f"{name} extras['segment'] must hold integers, got {segment.dtype}")
        tail = math.ceil((self.segment_length - self.segment_stride) / self.hop)
        layouts = []
        for i, n in enumerate(lengths):
            if n <= 0:
                layouts.append([])
                continue
            ids = segment[i, 0, :n].cpu()
            bounds = (torch.nonzero(ids[1:] != ids[:-1]).flatten() + 1).tolist()
            starts, stops = [0, *bounds], [*bounds, n]
            items = []
            for index, (a, b) in enumerate(zip(starts, stops, strict=True)):
                values = scale[i, 0, a:b]
                if not bool((ids[a:b] == index).all()):
                    raise CodesError(
                        f"{name} extras['segment'] of item {i} must number segments 0, 1, 2, ..."
                    )
                if b - a > self.segment_frames:
                    raise CodesError(
                        f"{name} item {i}: segment {index} has {b - a} frames, more than one segment"
                    )
                if not (
                    bool((values == values[0]).all()) and bool(torch.isfinite(values[0])) and values[0] > 0
                ):
                    raise CodesError(f"{name} item {i}: segment {index} needs one positive finite scale")
                items.append((a, b, values[0]))
            for index in range(len(items) - 1):
                frames, following = (
                    items[index][1] - items[index][0],
                    items[index + 1][1] - items[index + 1][0],
                )
                if frames < self.segment_frames and not (index + 2 == len(items) and following <= tail):
                    raise CodesError(
                        f"{name} item {i}: segment {index} of {frames} frames is followed by {following}; "
                        "EnCodec never cuts audio that way"
                    )
            layouts.append(items)
        return layouts

    def _decode(self, codes, lengths, extras):
        if self.vocoder is not None:
            self.vocoder.bandwidth_id(codes.shape[1])  # a codebook count Vocos has no bandwidth for: one line
        if self.variant.segment is None:
            return super()._decode(codes, lengths, extras)
        from encodec.utils import _linear_overlap_add

        layouts = self.segment_layout([int(x) for x in lengths], extras)
        pieces, owners, scales = [], [], []
        for i, layout in enumerate(layouts):
            for start, stop, scale in layout:
                pieces.append(codes[i, :, start:stop])
                scales.append(scale)
                owners.append(i)
        outputs = self._run_groups(pieces, self.decode_pieces, 1, 0)
        items: list[list[torch.Tensor]] = [[] for _ in layouts]
        for owner, audio, scale in zip(owners, outputs, scales, strict=True):
            items[owner].append(audio[None] * scale.view(-1, 1, 1))  # as EncodecModel._decode_frame
        wavs = [
            _linear_overlap_add(segs, self.segment_stride)[0] if segs else torch.zeros(self.card.channels, 0)
            for segs in items
        ]
        return pad_stack(wavs), torch.tensor([w.shape[-1] for w in wavs])
