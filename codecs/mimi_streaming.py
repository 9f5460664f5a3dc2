"""Mimi's carried-state streaming engine (``tok.streaming(engine="carried")``, the default for ``mimi``).

Each push costs the same however long the stream has run: the model's own state is carried from frame to
frame instead of re-encoding the past (``slmtok.codecs.streaming``'s recompute engine, O(n^2)).

**Encoder: transformers' own streaming.** Whole frames (1920 samples at 24 kHz; partial frames wait in a
buffer) go through ``MimiModel.encode(..., padding_cache=, encoder_cache=, use_streaming=True)``: the
causal convolutions take their left context from ``MimiConv1dPaddingCache`` and the encoder transformer
its keys/values from a ``DynamicCache`` built from the config, whose layers are transformers'
``DynamicSlidingWindowLayer`` (the last ``sliding_window - 1`` positions; the attention mask is the
whole-input sliding-window mask, positions continue from ``cumulative_length``). Measured: the streamed
codes equal whole-input ``MimiModel.encode`` codes bit for bit, also past the window (tested with a
4-position window and 2 layers, ``tests/test_streaming.py``). The state is bounded: it stops growing
once ``sliding_window - 1`` positions are cached (about 10 s for the published Mimi).

**The last, partial frame** (``flush``): transformers' streaming convolutions take no right padding, so a
partial frame would lose samples. It runs through the same modules layer by layer with the same padding
cache plus the right padding ``MimiConv1d`` gives the end of a whole input (``_get_extra_padding_for_conv1d``
on the frame's own length, equal to the whole input's because every earlier length is a multiple of
each stride), then the transformer with its cache: the whole-input codes of that frame.

**Decoder: transformers' modules, carried state kept here.** transformers' ``MimiModel.decode`` carries
only the decoder transformer's cache; its convolutions would restart at every call. ``CarriedDecoder``
runs ``quantizer.decode`` -> ``upsample`` -> ``decoder_transformer`` (sliding-window cache) ->
``decoder_seanet`` one layer at a time: each causal ``MimiConv1d`` takes its left context from a
``MimiConv1dPaddingCache`` (transformers' class, indexed by ``slmtok``), each ``MimiConvTranspose1d``
adds the overlap its previous call left beyond the samples it emitted (overlap-add, as moshi's streaming
transposed convolution). The audio equals ``MimiModel.decode`` of the whole codes within float32
rounding (sums in another order).

**Speed.** After its first frame the encoder runs layer by layer too (the same caches, as ``flush``
does), so both halves take ``conv1d`` / ``conv_transpose1d`` below: a convolution with few output steps
(the inner layers of an 80 ms frame) as one matrix product, where PyTorch's CPU convolutions were slow.
One 80 ms frame, full-size Mimi, one thread, 2-core AMD EPYC shared with other jobs: 66-80 ms of CPU
(86-93 ms before), of which the two transformers about 45 ms (``nn.Linear`` on 2 positions reads
~200 MB of weights per frame) and the SEANet stacks about 30 ms (``benchmarks/streaming.py``).

Only the configuration transformers' streaming supports is taken: causal convolutions, no convolutional
shortcut, ``trim_right_ratio`` 1 (the published Mimi);
``carried_refusal`` gives the reason otherwise and ``engine="auto"`` then recomputes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from slmtok.codecs.streaming import DecoderBase, EncoderBase, Stream, StreamingError
from slmtok.types import Audio, Tokens


def carried_refusal(config) -> str | None:
    """``None`` when a ``MimiConfig`` streams with carried state here, else the one-line reason."""
    if not getattr(config, "use_causal_conv", False):
        return "this Mimi has non-causal convolutions"
    if getattr(config, "use_conv_shortcut", False):
        return "this Mimi has convolutional shortcuts, which transformers' padding cache does not index"
    if float(getattr(config, "trim_right_ratio", 1.0)) != 1.0:
        return (
            f"this Mimi trims its transposed convolutions with ratio {config.trim_right_ratio} (1 is needed)"
        )
    return None


def _mimi_classes():
    from transformers.models.mimi import modeling_mimi as m

    return m.MimiConv1d, m.MimiConvTranspose1d, m.MimiResnetBlock, m.MimiConv1dPaddingCache


def state_bytes(*objects) -> int:
    """Bytes held by the tensors of the given state objects (caches, lists, dataclasses), counted once."""
    seen: set[int] = set()
    total = 0

    def walk(obj) -> None:
        nonlocal total
        if isinstance(obj, torch.Tensor):
            if id(obj) not in seen:
                seen.add(id(obj))
                total += obj.numel() * obj.element_size()
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                walk(item)
        elif hasattr(obj, "__dataclass_fields__"):
            for name in obj.__dataclass_fields__:
                walk(getattr(obj, name))
        elif isinstance(getattr(obj, "layers", None), list):  # a transformers Cache
            for layer in obj.layers:
                walk([getattr(layer, "keys", None), getattr(layer, "values", None)])
        elif isinstance(getattr(obj, "padding_cache", None), list):  # a MimiConv1dPaddingCache
            walk(obj.padding_cache)

    for obj in objects:
        walk(obj)
    return total


# ------------------------------------------------------------------------------------------------ layers
#: on the CPU, a convolution giving at most this many output steps runs as one matrix product
#: (``F.linear`` on the unfolded input) and a transposed convolution over at most this many input steps
#: as one matrix product and an overlap-add (``F.fold``). A streamed 80 ms frame is a few steps wide at
#: the inner layers, where PyTorch 2.14's CPU convolutions are slow: its ``_slow_conv2d_forward`` took
#: 10.6 ms for the encoder's 512 -> 1024 stride-8 layer on 24 steps (``F.linear``: 5.7 ms, the weight
#: read once) and its ``conv_transpose1d`` 45-80 ms for 2 steps of the decoder's 1024 -> 512 layer (one
#: product: 5 ms). Same sums; the order of the additions in the product may differ (float32 rounding).
SMALL_STEPS = 32


def conv1d(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for an unpadded ``nn.Conv1d`` on ``x [B, C, T]`` -> ``[B, O, T']``, as one matrix
    product when few output steps ``T'`` are due on the CPU (``SMALL_STEPS``)."""
    (k,), (stride,), (dilation,) = conv.kernel_size, conv.stride, conv.dilation
    span = (k - 1) * dilation + 1
    steps = (x.shape[-1] - span) // stride + 1
    if (
        x.device.type != "cpu"
        or conv.groups != 1
        or conv.padding != (0,)
        or conv.padding_mode != "zeros"
        or not 0 < steps <= SMALL_STEPS
    ):
        return conv(x)
    cols = x.unfold(2, span, stride)  # [B, C, T', span]
    if dilation > 1:
        cols = cols[..., ::dilation]
    b, c = x.shape[:2]
    cols = cols.permute(0, 2, 1, 3).reshape(b, steps, c * k)  # [B, T', C * k]
    weight = conv.weight.reshape(conv.out_channels, c * k)
    return torch.nn.functional.linear(cols, weight, conv.bias).transpose(1, 2)


def conv_transpose1d(conv: torch.nn.ConvTranspose1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for an unpadded ``nn.ConvTranspose1d`` on ``x [B, C, T]`` -> ``[B, O, (T - 1) * stride
    + kernel]``, as one matrix product and an overlap-add when ``T <= SMALL_STEPS`` on the CPU."""
    (k,), (stride,) = conv.kernel_size, conv.stride
    b, c, steps = x.shape
    if (
        x.device.type != "cpu"
        or conv.groups != 1
        or conv.dilation != (1,)
        or conv.padding != (0,)
        or conv.output_padding != (0,)
        or steps > SMALL_STEPS
    ):
        return conv(x)
    cols = x.transpose(1, 2) @ conv.weight.reshape(c, conv.out_channels * k)  # [B, T, O * k]
    y = torch.nn.functional.fold(
        cols.transpose(1, 2), (1, (steps - 1) * stride + k), (1, k), stride=(1, stride)
    ).reshape(b, conv.out_channels, -1)
    return y if conv.bias is None else y + conv.bias[None, :, None]


def conv_step(conv, x: torch.Tensor, cache, index: int, *, pad_right: bool = False) -> torch.Tensor:
    """One causal ``MimiConv1d`` on the next piece ``x [B, C, T]`` of a stream: left context from
    ``cache`` (a ``MimiConv1dPaddingCache``, layer ``index``), and, with ``pad_right`` (the end of the
    input), the right padding ``MimiConv1d.forward`` gives the end of a whole input."""
    extra = int(conv._get_extra_padding_for_conv1d(x)) if pad_right else 0
    x = torch.cat([cache.update(x, index), x], dim=2)
    if extra > 0:
        x = conv._pad1d(x, (0, extra), mode=conv.pad_mode)
    return conv1d(conv.conv, x)


def transposed_step(conv, x: torch.Tensor, carry: dict, key: int) -> torch.Tensor:
    """One ``MimiConvTranspose1d`` (``trim_right_ratio`` 1) on the next frames ``x [B, C, T]`` -> the
    ``T * stride`` output samples they complete. The ``kernel - stride`` samples beyond them (without the
    bias, which their own frames add) wait in ``carry[key]`` and are added to the next call's first ones."""
    done = x.shape[-1] * conv.conv.stride[0]
    y = conv_transpose1d(conv.conv, x)  # [B, C', (T - 1) * stride + kernel]
    previous = carry.get(key)
    if previous is not None:
        y = torch.cat([y[..., : previous.shape[-1]] + previous, y[..., previous.shape[-1] :]], dim=-1)
    tail = y[..., done:]
    if conv.conv.bias is not None:
        tail = tail - conv.conv.bias[None, :, None]
    carry[key] = tail
    return y[..., :done]


@dataclass
class SeanetState:
    """Carried state of one SEANet stack: ``padding`` (transformers' ``MimiConv1dPaddingCache``, or
    ``None`` until built), ``index`` (``id(conv)`` -> its layer in ``padding``), ``carry`` (overlaps of
    the transposed convolutions, by layer position)."""

    padding: object = None
    index: dict[int, int] = field(default_factory=dict)
    carry: dict[int, torch.Tensor] = field(default_factory=dict)


def seanet_step(layers, x: torch.Tensor, state: SeanetState, *, pad_right: bool = False) -> torch.Tensor:
    """Run a Mimi SEANet stack (``MimiEncoder.layers`` or ``MimiDecoder.layers``) on the next piece ``x``
    of a stream, layer by layer as ``MimiEncoder.forward`` / ``MimiResnetBlock.forward`` do, with carried
    state."""
    conv_cls, transposed_cls, resnet_cls, _ = _mimi_classes()

    def conv(layer, h):
        return conv_step(layer, h, state.padding, state.index[id(layer)], pad_right=pad_right)

    for position, layer in enumerate(layers):
        if isinstance(layer, conv_cls):
            x = conv(layer, x)
        elif isinstance(layer, transposed_cls):
            x = transposed_step(layer, x, state.carry, position)
        elif isinstance(layer, resnet_cls):
            h = x
            for sub in layer.block:
                h = conv(sub, h) if isinstance(sub, conv_cls) else sub(h)
            x = x + h  # identity shortcut (``carried_refusal`` refuses convolutional ones)
        else:
            x = layer(x)
    return x


def decoder_seanet_state(layers) -> SeanetState:
    """A fresh ``SeanetState`` for ``MimiDecoder.layers``: its ``MimiConv1d`` layers (which transformers
    leaves unindexed) numbered in order, zero left context as their ``constant`` padding gives."""
    conv_cls, _, _, cache_cls = _mimi_classes()
    convs = [m for layer in layers for m in layer.modules() if isinstance(m, conv_cls)]
    for c in convs:
        if int(c.stride) != 1:
            raise StreamingError("this Mimi's decoder has strided convolutions; use engine='recompute'")
    padding = cache_cls(
        num_layers=len(convs),
        per_layer_padding=[int(c.padding_total) for c in convs],
        per_layer_padding_mode=[c.pad_mode for c in convs],
        per_layer_in_channels=[int(c.in_channels) for c in convs],
    )
    return SeanetState(padding=padding, index={id(c): i for i, c in enumerate(convs)})


# ------------------------------------------------------------------------------------------------ engine
@dataclass
class ItemEncoderState:
    """One item's encoder state: transformers' ``MimiConv1dPaddingCache`` and encoder transformer cache."""

    padding_cache: object = None
    encoder_cache: object = None


class CarriedEncoder(EncoderBase):
    """Mimi's carried-state encoder (the ``EncoderBase`` contract; see the module docstring). Each item of
    the batch carries its own state (items run alone, as ``MimiTokenizer.encode`` runs them)."""

    engine = "carried"

    def __init__(
        self, tok, batch_size: int = 1, *, n_codebooks: int | None = None, max_seconds: float | None = None
    ) -> None:
        super().__init__(tok, batch_size, n_codebooks=n_codebooks)
        self.max_seconds = max_seconds
        self.samples = 0  # per item, pushed so far at the card's rate
        self._pending = torch.zeros(batch_size, tok.card.channels, 0)  # [B, C, < hop]
        self._states = [ItemEncoderState() for _ in range(batch_size)]
        self._ref = tok.ref
        self._seanet_index: dict[int, int] | None = None  # id(MimiConv1d) -> its padding-cache layer

    @property
    def model(self):
        return self.tok.model

    def state_bytes(self) -> int:
        """Bytes of carried state (caches and the partial-frame buffer) held now."""
        return state_bytes(self._states, self._pending)

    def push(self, chunk: torch.Tensor | np.ndarray) -> Tokens:
        """Add ``chunk`` and return the whole frames it completed (possibly none)."""
        self._check_open()
        x = self._convert(chunk)
        if (
            self.max_seconds is not None
            and self.samples + x.shape[-1] > self.max_seconds * self.tok.card.sample_rate
        ):
            raise StreamingError(
                f"stream would hold {(self.samples + x.shape[-1]) / self.tok.card.sample_rate:.4g} s, more than "
                f"max_seconds={self.max_seconds:g}"
            )
        self.samples += x.shape[-1]
        pending = torch.cat([self._pending, x], dim=-1)
        whole = (pending.shape[-1] // self.hop) * self.hop
        self._pending = pending[..., whole:]
        if whole == 0:
            return self._empty()
        with torch.inference_mode():
            codes = [
                self._encode_frames(pending[i : i + 1, :, :whole], s) for i, s in enumerate(self._states)
            ]
        return self._tokens(torch.cat(codes), [self.hop] * (whole // self.hop))

    def flush(self) -> Tokens:
        """Return the last, partial frame (if any samples wait) and close the stream."""
        self._check_open()
        self._closed = True
        n = self._pending.shape[-1]
        if n == 0:
            return self._empty()
        with torch.inference_mode():
            codes = [self._encode_partial(self._pending[i : i + 1], s) for i, s in enumerate(self._states)]
        return self._tokens(torch.cat(codes), [n])

    def _encode_frames(self, wav: torch.Tensor, state: ItemEncoderState) -> torch.Tensor:
        """``wav [1, C, F * hop]`` -> codes ``[1, K, F]``: the first call through transformers' streaming
        ``encode`` (which builds the caches), the next ones layer by layer with the same caches."""
        if state.padding_cache is None:
            out = self.model.encode(
                wav.to(self.tok.device),
                num_quantizers=self.n_codebooks,
                padding_cache=state.padding_cache,
                encoder_cache=state.encoder_cache,
                use_streaming=True,
            )
            state.padding_cache, state.encoder_cache = out.padding_cache, out.encoder_cache
            return out.audio_codes.cpu()
        return self._encode_layers(wav, state, pad_right=False)

    def _encode_partial(self, wav: torch.Tensor, state: ItemEncoderState) -> torch.Tensor:
        """``wav [1, C, n < hop]`` (the end of the input) -> codes ``[1, K, 1]``, as the whole input's
        last frame: the streaming modules with the end-of-input right padding."""
        if state.padding_cache is None:  # the whole input is shorter than one frame
            return self.model.encode(
                wav.to(self.tok.device), num_quantizers=self.n_codebooks
            ).audio_codes.cpu()
        return self._encode_layers(wav, state, pad_right=True)

    def _encode_layers(self, wav: torch.Tensor, state: ItemEncoderState, *, pad_right: bool) -> torch.Tensor:
        """``wav [1, C, T]`` -> codes ``[1, K, F]`` through the encoder's modules one at a time, as
        ``MimiEncoderModel.forward`` runs them, with the carried caches (and, with ``pad_right``, the
        right padding of the end of a whole input)."""
        encoder = self.model.encoder
        if self._seanet_index is None:
            conv_cls = _mimi_classes()[0]
            convs = [m for m in encoder.encoder_seanet.modules() if isinstance(m, conv_cls)]
            self._seanet_index = {id(m): int(m.layer_idx) for m in convs}
        seanet = SeanetState(padding=state.padding_cache, index=self._seanet_index)
        h = seanet_step(encoder.encoder_seanet.layers, wav.to(self.tok.device), seanet, pad_right=pad_right)
        h = encoder.encoder_transformer(h.transpose(1, 2), cache=state.encoder_cache, use_cache=True)
        h = h.last_hidden_state.transpose(1, 2)
        down = encoder.downsample
        latents = conv_step(down, h, state.padding_cache, int(down.layer_idx), pad_right=pad_right)
        return self.model.quantizer.encode(latents, self.n_codebooks).transpose(0, 1).cpu()

    def _tokens(self, codes: torch.Tensor, samples: list[int]) -> Tokens:
        """Codes ``[B, K, F]`` -> ``Tokens`` with ``extras["samples"]`` as ``MimiTokenizer.encode`` gives."""
        frames = codes.shape[-1]
        per_frame = torch.tensor(samples, dtype=torch.long)[None, None, :].expand(self.batch_size, 1, frames)
        return Tokens(
            codes=codes.long(),
            lengths=torch.full((self.batch_size,), frames, dtype=torch.long),
            frame_rate=self.tok.card.frame_rate,
            tokenizer=self._ref,
            extras={"samples": per_frame.clone()},
        )


@dataclass
class ItemDecoderState:
    """One item's decoder state: the upsampling overlap, the decoder transformer cache, the SEANet state."""

    upsample: dict[int, torch.Tensor] = field(default_factory=dict)
    decoder_cache: object = None
    seanet: SeanetState | None = None


class CarriedDecoder(DecoderBase):
    """Mimi's carried-state decoder (the ``DecoderBase`` contract; see the module docstring). Decoded
    samples beyond the input samples the tokens record (``extras["samples"]``, the last partial frame)
    are held back as ``decode`` cuts them."""

    def __init__(self, tok, batch_size: int = 1, *, max_seconds: float | None = None) -> None:
        super().__init__(tok, batch_size)
        self.max_seconds = max_seconds
        self.frames = 0
        self._states = [ItemDecoderState() for _ in range(batch_size)]
        self._held = torch.zeros(batch_size, tok.card.channels, 0)  # decoded, not yet allowed out
        self._allowed = torch.zeros(batch_size, dtype=torch.long)  # input samples recorded, minus emitted

    def state_bytes(self) -> int:
        """Bytes of carried state (caches, overlaps, held samples) held now."""
        return state_bytes(self._states, self._held)

    def push(self, tokens: Tokens) -> Audio:
        """Add ``tokens`` and return the samples they completed."""
        width = self._check_push(tokens)
        if width == 0:
            return self._audio(torch.zeros(self.batch_size, self.tok.card.channels, 0))
        if (
            self.max_seconds is not None
            and (self.frames + width) / self.tok.card.frame_rate > self.max_seconds
        ):
            raise StreamingError(f"stream would decode more than max_seconds={self.max_seconds:g} s")
        self._codebooks = tokens.n_codebooks
        self.frames += width
        hop = self.tok.hop
        samples = tokens.extras.get("samples")
        recorded = (
            samples[:, 0].sum(-1) if samples is not None else torch.full((self.batch_size,), width * hop)
        )
        with torch.inference_mode():
            wav = [self._decode_frames(tokens.codes[i : i + 1], s) for i, s in enumerate(self._states)]
        self._held = torch.cat([self._held, torch.cat(wav)], dim=-1)
        self._allowed += recorded.long()
        n = int(torch.minimum(self._allowed, torch.tensor(self._held.shape[-1])).min())
        out, self._held = self._held[..., :n], self._held[..., n:]
        self._allowed -= n
        return self._audio(out)

    def _decode_frames(self, codes: torch.Tensor, state: ItemDecoderState) -> torch.Tensor:
        """Codes ``[1, K, F]`` -> audio ``[1, C, F * hop]`` with carried state."""
        model = self.tok.model
        decoder = model.decoder
        if state.seanet is None:
            state.seanet = decoder_seanet_state(decoder.decoder_seanet.layers)
        h = model.quantizer.decode(codes.to(self.tok.device))  # [1, D, F]
        if decoder.upsample is not None:
            h = transposed_step(decoder.upsample, h, state.upsample, 0)
        out = decoder.decoder_transformer(h.transpose(1, 2), cache=state.decoder_cache, use_cache=True)
        state.decoder_cache = out.cache
        h = out.last_hidden_state.transpose(1, 2)
        return seanet_step(decoder.decoder_seanet.layers, h, state.seanet).float().cpu()


def open_carried_stream(
    tok, batch_size: int = 1, *, n_codebooks: int | None = None, max_seconds: float | None = None
) -> Stream:
    """Encoder and decoder with Mimi's carried state (``tok`` a ``MimiTokenizer``)."""
    encoder = CarriedEncoder(tok, batch_size, n_codebooks=n_codebooks, max_seconds=max_seconds)
    return Stream(encoder, CarriedDecoder(tok, batch_size, max_seconds=max_seconds))
