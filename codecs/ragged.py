"""Run the upstream codecs' layer stacks on padded input so that every item gets what it gets alone.

**What padding breaks, and how each layer here repairs it.** EnCodec's and SpeechTokenizer's ``SConv1d``
pad every input by *reflection* plus an "extra" right padding that depends on the length; GroupNorm
(EnCodec 48 kHz) averages over time; DAC's convolutions pad with zeros, but after the first layer the
positions past an item's end hold biases and activations, not zeros; a bidirectional LSTM reads an item
backwards from the end of the batch. So every layer here runs on ``(x [B, C, W], lengths)`` and builds
each item's input exactly as the layer builds it for that item alone (its own reflection or zero
padding, zeros past its end, GroupNorm over its own frames, the backward LSTM started from its own last
frame), and returns each item's output length with the upstream layer's own arithmetic. Positions past
an item's length hold garbage that no later layer reads. Stacked inputs are padded to the width a
full-width item would have, so an item's tensors have the same shapes whatever its neighbours.

**Rounding.** The values an item sees are then exactly its own, but CPU kernels do not promise the same
*rounding* for a value computed in a tensor of another shape: oneDNN convolutions split their sums
differently for other widths and, at small widths, other batch sizes; ATen's ELU rounds its vectorised
loop and its scalar tail differently; oneDNN's LSTM takes a matrix-vector path for a batch of one. A
latent can then move by ~1e-7, enough to flip a code where two codewords are that close to equidistant.
A kernel's rounding can also depend on how many threads split it. ``ChunkedCodec`` therefore runs
each item on its own by default (``B == 1``, one intra-op thread, items in parallel on a thread pool) at
a *canonical width* that depends only on its own length: an item meets exactly the same shapes and
kernels alone or in any batch, so its codes are the same bits. Stacking several items in one call (``stack_batches``, the
default on CUDA) gives each item its own values but only promises equality up to that rounding. Within
``position_stable()`` (EnCodec 24 kHz's encoder) the CPU convolutions, element-wise layers and LSTMs of
``slmtok.codecs.stable`` also make a time step's bits independent of the width, so a prefix's first
frames equal the whole input's (streaming).

Versus the upstream package called on the unpadded item (on one torch thread), the codes are equal: the
parity tests require 0 differing frames (EnCodec 24 kHz, on position-stable kernels: differing frames
only at verified near-ties); latents at another width can differ by rounding, so a code
could flip only where two codewords are equidistant to ~1e-7. An item at its own width (EnCodec 48 kHz
segments, which have no canonical padding) meets upstream's shapes exactly, and its codes and audio are
upstream's bit for bit. Upstream on more threads rounds differently by itself (near-ties of its own).
Layers are dispatched on their class through ``RULES``; a module without a rule raises ``TypeError``.
Shapes: ``x`` is ``[B, C, W]`` float, ``lengths`` a list of ``B`` ints, each ``<= W``.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import sys
import threading
from collections.abc import Callable, Iterator

import torch
from torch import nn

from slmtok.codecs import stable

Rule = Callable[[nn.Module, torch.Tensor, list[int]], tuple[torch.Tensor, list[int]]]
RULES: dict[type, Rule] = {}
#: element-wise layers whose kernels give an element the same bits whatever the tensor: whole batch
_POINTWISE: set[type] = {nn.Identity, nn.Tanh}
#: element-wise layers whose bits depend on the element's place in the tensor (vector loop vs scalar
#: tail, as ATen's ELU): applied row by row, each row ``[1, C, W]`` shaped as the item alone
_POINTWISE_ROWS: set[type] = {nn.ELU, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.PReLU}


_STATE = threading.local()


@contextlib.contextmanager
def position_stable() -> Iterator[None]:
    """Within this block (this thread only), SEANet convolutions, element-wise layers and LSTMs run on
    CPU kernels of ``slmtok.codecs.stable``, whose rounding of a time step does not depend on the width."""
    before = getattr(_STATE, "stable", False)
    _STATE.stable = True
    try:
        yield
    finally:
        _STATE.stable = before


def _stable(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and getattr(_STATE, "stable", False)


def run(module: nn.Module, x: torch.Tensor, lengths: list[int]) -> tuple[torch.Tensor, list[int]]:
    """Apply ``module`` to each item of ``x [B, C, W]`` as if alone; return ``(y [B, C', W'], lengths')``."""
    _load_rules()
    for cls in type(module).__mro__:
        if cls in _POINTWISE:
            return module(x), lengths
        if cls in _POINTWISE_ROWS:
            return (stable.pointwise(module, x) if _stable(x) else _rows(module, x)), lengths
        rule = RULES.get(cls)
        if rule is not None:
            return rule(module, x, lengths)
    raise TypeError(f"no ragged rule for layer {type(module).__module__}.{type(module).__name__}")


def mask_beyond(x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """A copy of ``x [B, C, W]`` with zeros at positions ``>= lengths[b]`` (``x`` itself if none)."""
    width = x.shape[-1]
    if all(n >= width for n in lengths):
        return x
    keep = torch.arange(width, device=x.device)[None, :] < torch.tensor(lengths, device=x.device)[:, None]
    return x * keep[:, None, :].to(x.dtype)


def _rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module`` applied to each ``[1, C, W]`` row of a contiguous ``x`` on its own."""
    if x.shape[0] == 1:
        return module(x)
    x = x.contiguous()
    return torch.cat([module(x[i : i + 1]) for i in range(x.shape[0])])


def stack_items(items: list[torch.Tensor], width: int = 0) -> torch.Tensor:
    """``[1, C, W_i]`` tensors -> ``[B, C, max(width, W_i)]``, zero-padded on the right."""
    width = max(width, *(t.shape[-1] for t in items))
    out = items[0].new_zeros((len(items), items[0].shape[1], width))
    for i, t in enumerate(items):
        out[i, :, : t.shape[-1]] = t[0]
    return out


# ------------------------------------------------------------------------------------------ rules
def _sequential(module: nn.Sequential, x, lengths):
    for layer in module:
        x, lengths = run(layer, x, lengths)
    return x, lengths


def _conv1d(module: nn.Conv1d, x, lengths):
    """Plain ``nn.Conv1d`` with zero padding (DAC's WNConv1d): zeros past each item, as alone."""
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        raise TypeError(
            f"ragged Conv1d needs numeric zero padding, got {module.padding_mode}/{module.padding}"
        )
    (k,), (s,), (d,), (p,) = module.kernel_size, module.stride, module.dilation, module.padding
    y = module(mask_beyond(x, lengths))
    return y, [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n in lengths]


def _conv_transpose1d(module: nn.ConvTranspose1d, x, lengths):
    """Plain ``nn.ConvTranspose1d`` (DAC's WNConvTranspose1d): zero inputs past each item add nothing."""
    (k,), (s,), (d,), (p,), (op,) = (
        module.kernel_size,
        module.stride,
        module.dilation,
        module.padding,
        module.output_padding,
    )
    y = module(mask_beyond(x, lengths))
    return y, [(n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n in lengths]


def _groupnorm_items(norm: nn.Module, y: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """GroupNorm (EnCodec's time_group_norm) over each item's own frames; Identity passes through."""
    if isinstance(norm, nn.Identity):
        return y
    if not isinstance(norm, nn.GroupNorm):
        raise TypeError(f"no ragged rule for normalization {type(norm).__name__}")
    out = y.clone()
    for i, n in enumerate(lengths):
        out[i : i + 1, :, :n] = norm(y[i : i + 1, :, :n])
    return out


def _seanet_conv1d(module: nn.Module, x, lengths):
    """EnCodec / SpeechTokenizer ``SConv1d``: each item padded as alone (reflect or zero, causal or
    centred, plus the length-dependent extra right padding), then the convolution and its norm."""
    conv_mod = sys.modules[type(module).__module__]
    conv = module.conv.conv
    (k,), (s,), (d,) = conv.kernel_size, conv.stride, conv.dilation
    padding_total = (k - 1) * d - (s - 1)

    def padded(xi: torch.Tensor) -> torch.Tensor:  # SConv1d.forward's padding, for one item
        extra = conv_mod.get_extra_padding_for_conv1d(xi, k, s, padding_total)
        if module.causal:
            pads = (padding_total, extra)
        else:
            right = padding_total // 2
            pads = (padding_total - right, right + extra)
        return conv_mod.pad1d(xi, pads, mode=module.pad_mode)

    items = [padded(x[i : i + 1, :, :n]) for i, n in enumerate(lengths)]
    full = padded(x.new_zeros((1, 1, x.shape[-1]))).shape[-1]  # what a full-width item pads to
    out_lengths = [(t.shape[-1] - d * (k - 1) - 1) // s + 1 for t in items]
    stacked = stack_items(items, full)
    y = stable.conv1d(conv, stacked) if _stable(x) else conv(stacked)
    return _groupnorm_items(module.conv.norm, y, out_lengths), out_lengths


def _seanet_conv_transpose1d(module: nn.Module, x, lengths):
    """EnCodec / SpeechTokenizer ``SConvTranspose1d``: zeros past each item, norm over the item's full
    output, then the same fixed trimming as upstream (left trim shared, right trim by length)."""
    convtr = module.convtr.convtr
    (k,), (s,) = convtr.kernel_size, convtr.stride
    padding_total = k - s
    full = [(n - 1) * s + k for n in lengths]
    y = _groupnorm_items(module.convtr.norm, convtr(mask_beyond(x, lengths)), full)
    right = math.ceil(padding_total * module.trim_right_ratio) if module.causal else padding_total // 2
    left = padding_total - right
    out_lengths = [f - left - right for f in full]
    # trimmed on both sides as upstream: a full-width item gets exactly upstream's shape (and kernels)
    return y[..., left : left + max(out_lengths)], out_lengths


def _resnet_block(module: nn.Module, x, lengths):
    """SEANet residual block: ``shortcut(x) + block(x)`` with both branches ragged."""
    skip, skip_lengths = run(module.shortcut, x, lengths)
    y, y_lengths = run(module.block, x, lengths)
    if skip_lengths != y_lengths:
        raise ValueError("ragged residual block: branch lengths differ")
    width = min(skip.shape[-1], y.shape[-1])
    return skip[..., :width] + y[..., :width], y_lengths


def _dac_residual_unit(module: nn.Module, x, lengths):
    """DAC ``ResidualUnit``: ``x + block(x)``, cropping ``x`` symmetrically when the block shortens it."""
    y, y_lengths = run(module.block, x, lengths)
    crops = {(n - m) // 2 for n, m in zip(lengths, y_lengths, strict=True)}
    if len(crops) != 1:
        raise ValueError("ragged DAC residual unit: items are cropped differently")
    crop = crops.pop()
    if crop > 0:
        x = x[..., crop:]
    width = min(x.shape[-1], y.shape[-1])
    return x[..., :width] + y[..., :width], y_lengths


def _dac_block(module: nn.Module, x, lengths):
    return run(module.block, x, lengths)


def _dac_decoder(module: nn.Module, x, lengths):
    return run(module.model, x, lengths)


def _seanet_lstm(module: nn.Module, x, lengths):
    """EnCodec / SpeechTokenizer ``SLSTM`` (``[B, C, W]`` in and out, optional skip, optional
    bidirectional); a unidirectional LSTM never reads past an item's end, a backward one starts there."""
    seq = x.permute(2, 0, 1)  # [W, B, C]
    bidirectional = getattr(module, "bidirectional", False)
    if bidirectional:
        y = lstm_ragged(module.lstm, seq, lengths)
    else:
        y = stable.lstm(module.lstm, seq) if _stable(x) else module.lstm(seq)[0]
    if getattr(module, "skip", True):
        y = y + (seq.repeat(1, 1, 2) if bidirectional else seq)
    return y.permute(1, 2, 0), lengths


def reverse_items(seq: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Reverse ``seq [T, B, C]`` in time within each item's first ``lengths[b]`` steps (the rest stays)."""
    steps = seq.shape[0]
    t = torch.arange(steps, device=seq.device)[:, None]
    n = torch.tensor(lengths, device=seq.device)[None, :]
    index = torch.where(t < n, n - 1 - t, t)  # [T, B]
    return seq.gather(0, index[:, :, None].expand_as(seq))


def lstm_ragged(lstm: nn.LSTM, seq: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """A (possibly bidirectional, multi-layer) ``nn.LSTM`` on ``seq [T, B, C]`` where item ``b`` has
    ``lengths[b]`` valid steps: layer by layer, the forward direction on the padded batch, the backward
    direction on each item reversed within its own length. Returns ``[T, B, H * directions]``."""
    if lstm.batch_first or lstm.proj_size:
        raise TypeError("ragged LSTM supports time-first LSTMs without projections")
    directions = 2 if lstm.bidirectional else 1
    layers = _split_lstm(lstm)
    out = seq
    for layer in range(lstm.num_layers):
        outputs = []
        for direction in range(directions):
            cell = layers[layer * directions + direction]
            if direction == 0:
                outputs.append(cell(out)[0])
            else:
                outputs.append(reverse_items(cell(reverse_items(out, lengths))[0], lengths))
        out = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
    return out


def _split_lstm(lstm: nn.LSTM) -> list[nn.LSTM]:
    """One single-layer, single-direction ``nn.LSTM`` per (layer, direction), sharing ``lstm``'s weights;
    cached on the module."""
    cached = getattr(lstm, "_slmtok_split", None)
    if cached is not None:
        return cached
    directions = 2 if lstm.bidirectional else 1
    cells = []
    for layer in range(lstm.num_layers):
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            size_in = lstm.input_size if layer == 0 else lstm.hidden_size * directions
            cell = nn.LSTM(size_in, lstm.hidden_size, 1, bias=lstm.bias)
            cell = cell.to(device=getattr(lstm, f"weight_ih{suffix}").device)
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    if hasattr(lstm, name + suffix):
                        getattr(cell, name + "_l0").copy_(getattr(lstm, name + suffix))
            cells.append(cell.eval())
    object.__setattr__(lstm, "_slmtok_split", cells)  # not a registered submodule: not in state_dict
    return cells


# ------------------------------------------------------------------------------------------ registry
_LOADED = False
_LOCK = threading.Lock()


def _load_rules() -> None:
    """Register rules for the upstream packages that are installed (each imported on first use)."""
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if not _LOADED:
            _register_rules()
            _LOADED = True


def _register_rules() -> None:
    RULES.update({nn.Sequential: _sequential, nn.Conv1d: _conv1d, nn.ConvTranspose1d: _conv_transpose1d})
    for package in ("encodec", "speechtokenizer"):
        try:
            conv = importlib.import_module(f"{package}.modules.conv")
            seanet = importlib.import_module(f"{package}.modules.seanet")
            lstm = importlib.import_module(f"{package}.modules.lstm")
        except ImportError:
            continue
        RULES[conv.SConv1d] = _seanet_conv1d
        RULES[conv.SConvTranspose1d] = _seanet_conv_transpose1d
        RULES[seanet.SEANetResnetBlock] = _resnet_block
        RULES[lstm.SLSTM] = _seanet_lstm
        RULES[seanet.SEANetEncoder] = lambda m, x, n: run(m.model, x, n)
        RULES[seanet.SEANetDecoder] = lambda m, x, n: run(m.model, x, n)
        if hasattr(seanet, "Snake1d"):
            _POINTWISE.add(seanet.Snake1d)
    try:
        dac_model = importlib.import_module("dac.model.dac")
        dac_layers = importlib.import_module("dac.nn.layers")
    except ImportError:
        return
    _POINTWISE.add(dac_layers.Snake1d)
    RULES[dac_model.ResidualUnit] = _dac_residual_unit
    RULES[dac_model.EncoderBlock] = _dac_block
    RULES[dac_model.DecoderBlock] = _dac_block
    RULES[dac_model.Encoder] = _dac_block
    RULES[dac_model.Decoder] = _dac_decoder
