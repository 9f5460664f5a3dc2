"""Position-stable CPU kernels: a time step's output has the same bits whatever the width it is computed in.

Why: a causal encoder's frame ``t`` depends only on the input up to ``t``, so a stream that re-encodes
the input received so far (``slmtok.codecs.streaming``) should give each frame the codes the whole input
gives it. The *values* are the same, but PyTorch's CPU kernels round them differently at other widths:
oneDNN convolutions block the output width (a different split of the sums in the last block) and switch
to ATen's own kernel below ~20k elements; ATen's ELU takes a vector loop for the body of a tensor and a
scalar one (another ``expm1``) for its last elements; LSTM and matrix products take other paths for
other row counts. A latent moved by ~1e-7 flips a code where two codewords are that close to
equidistant (EnCodec 24 kHz before this module: 2 of 1239 frames of six seeded random-chunk streams on the
tiny stand-in of ``tests/test_streaming.py`` differed from the whole-input codes).

Here every such computation has a shape that does not depend on the width, and every time step a
place in it that does not either:

- ``conv1d``: the convolution as matrix products (the weight times the unfolded input) over tiles of
  ``rows`` output steps at fixed positions (tile ``j`` holds steps ``[j * rows, (j + 1) * rows)``, the last
  one zero-padded; ``rows`` depends on the layer's shape only): step ``t`` is always column ``t % rows``
  of an ``[O, C * k] @ [C * k, rows]`` product.
- ``pointwise``: element-wise layers on a width padded to a multiple of ``VECTOR_PAD``, so that no element
  falls in a scalar tail loop.
- ``lstm``: the equations of ``nn.LSTM``, the input projection in ``TILE``-step products as above, then
  one step at a time in ``[1, H]`` shapes.
- ``tiled``: a frame-local function (a quantizer) on tiles of ``TILE`` frames.

The sums are the same as PyTorch's kernels', in another order: versus the upstream model run on its own
kernels, values differ by float32 rounding (~1e-7) and a code can differ only at such a near-tie (the
parity tests check that every differing code is one). Used on the CPU for EnCodec 24 kHz's encoder
(``EncodecTokenizer``), through ``slmtok.codecs.ragged.position_stable``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

#: time steps per matrix product (rows of every product, whatever the input's width)
TILE = 256
#: element-wise layers run on widths padded to a multiple of this (2 x the widest float vector, AVX-512)
VECTOR_PAD = 64


def conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for an unpadded, ungrouped ``nn.Conv1d`` on ``x [B, C, W]`` -> ``[B, O, T']``, in
    ``[O, C * k] @ [C * k, rows]`` products over tiles of ``rows`` output steps at fixed positions (see the
    module docstring); ``rows`` depends on the layer only (``tile_rows``)."""
    if conv.groups != 1 or conv.padding != (0,) and conv.padding != 0:
        raise TypeError("position-stable conv1d needs an unpadded convolution without groups")
    (k,), (stride,), (dilation,) = conv.kernel_size, conv.stride, conv.dilation
    span = (k - 1) * dilation + 1
    b, c, width = x.shape
    steps = (width - span) // stride + 1
    out = x.new_empty((b, conv.out_channels, max(steps, 0)))
    if steps <= 0:
        return out
    rows = tile_rows(c * k)
    tiles = math.ceil(steps / rows)
    need = (tiles * rows - 1) * stride + span  # input samples the last, padded tile reads
    x = F.pad(x, (0, max(0, need - width)))
    weight = conv.weight.reshape(conv.out_channels, c * k)
    bias = None if conv.bias is None else conv.bias[:, None]
    for j in range(tiles):
        start = j * rows * stride
        cols = x[:, :, start : start + (rows - 1) * stride + span].unfold(
            2, span, stride
        )  # [B, C, rows, span]
        if dilation > 1:
            cols = cols[..., ::dilation]
        cols = cols.transpose(2, 3).reshape(b, c * k, rows)
        stop = min(rows, steps - j * rows)
        for i in range(b):  # one product per item: its columns never depend on the batch
            y = weight @ cols[i] if bias is None else torch.addmm(bias, weight, cols[i])  # [O, rows]
            out[i, :, j * rows : j * rows + stop] = y[:, :stop]
    return out


def tile_rows(depth: int) -> int:
    """Output steps per product for a convolution reading ``depth = C * k`` inputs per step: about 256k
    unfolded values (few Python steps for the thin, long early layers), between ``TILE`` and 8192."""
    return max(TILE, min(8192, 1 << max(0, (262144 // depth).bit_length() - 1)))


def pointwise(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An element-wise ``module`` on each ``[1, C, W]`` row of ``x [B, C, W]``, the width padded to a
    multiple of ``VECTOR_PAD`` so that every element takes the kernel's vector loop (and none the
    scalar loop ATen runs on a tensor's last elements). Returns a view of the padded result."""
    b, c, width = x.shape
    padded = x.new_zeros((b, c, width + -width % VECTOR_PAD))
    padded[..., :width] = x
    if b == 1:
        return module(padded)[..., :width]
    return torch.cat([module(padded[i : i + 1]) for i in range(b)])[..., :width]


def linear_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x [T, C], weight [O, C], bias)`` -> ``[T, O]``, in contiguous ``[TILE, C]`` products at
    fixed rows (the last one zero-padded)."""
    steps = x.shape[0]
    tiles = math.ceil(steps / TILE)
    padded = x.new_zeros((tiles * TILE, x.shape[1]))
    padded[:steps] = x
    out = x.new_empty((tiles * TILE, weight.shape[0]))
    for j in range(tiles):
        out[j * TILE : (j + 1) * TILE] = F.linear(padded[j * TILE : (j + 1) * TILE], weight, bias)
    return out[:steps]


def lstm(module: nn.LSTM, seq: torch.Tensor) -> torch.Tensor:
    """A unidirectional ``nn.LSTM`` (time first, no projection) on ``seq [T, B, C]`` -> ``[T, B, H]``, from
    zero state, with ``nn.LSTM``'s equations (gates ``i, f, g, o``): each layer's input projection in
    ``[TILE, C]`` products at fixed rows, then one step at a time in ``[1, H]`` shapes; each item alone."""
    if module.bidirectional or module.batch_first or module.proj_size:
        raise TypeError("position-stable LSTM supports time-first, unidirectional LSTMs without projections")
    steps, batch, _ = seq.shape
    hidden = module.hidden_size
    out = seq.new_empty((steps, batch, hidden))
    for i in range(batch):
        h_seq = seq[:, i]  # [T, C]
        for layer in range(module.num_layers):
            w_ih, w_hh = (getattr(module, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh"))
            b_ih, b_hh = (getattr(module, f"{name}_l{layer}", None) for name in ("bias_ih", "bias_hh"))
            gates_in = linear_rows(h_seq, w_ih, b_ih)  # [T, 4H]
            if b_hh is not None:
                gates_in = gates_in + b_hh
            w_hh_t = w_hh.T
            h = c = seq.new_zeros((1, hidden))
            layer_out = seq.new_empty((steps, hidden))
            for t in range(steps):
                gates = torch.addmm(gates_in[t : t + 1], h, w_hh_t)  # [1, 4H]
                act = gates.sigmoid()
                c = (
                    act[:, hidden : 2 * hidden] * c
                    + act[:, :hidden] * gates[:, 2 * hidden : 3 * hidden].tanh()
                )
                h = act[:, 3 * hidden :] * c.tanh()
                layer_out[t] = h[0]
            h_seq = layer_out
        out[:, i] = h_seq
    return out


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """A frame-local ``fn`` (``[..., TILE] -> [..., TILE]`` on the last axis) on ``x [..., T]`` in tiles of
    ``TILE`` frames at fixed positions, the last one zero-padded -> ``[..., T]``."""
    steps = x.shape[-1]
    if steps == 0:
        return fn(x)
    tiles = math.ceil(steps / TILE)
    x = F.pad(x, (0, tiles * TILE - steps))
    return torch.cat([fn(x[..., j * TILE : (j + 1) * TILE]) for j in range(tiles)], dim=-1)[..., :steps]
