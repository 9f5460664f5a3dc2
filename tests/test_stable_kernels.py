"""``slmtok.codecs.stable``: position-stable CPU kernels.

Two properties each: the result matches PyTorch's own layer (``nn.Conv1d``, ``nn.ELU``, ``nn.LSTM``: the
reference) to float32 rounding, and a time step's output has the same bits whatever the width of the
input it is computed in (every prefix of an input gives the same first steps, bit for bit), which
PyTorch's kernels do not promise (the last test shows oneDNN's convolution breaking it).
"""

from __future__ import annotations

import pytest
import torch

from slmtok.codecs import stable

from . import test_codec_parity as parity

one_thread = parity.one_thread  # autouse: torch on one thread for the module, restored after


@pytest.mark.parametrize(
    ("channels", "out", "kernel", "stride", "dilation"),
    [(1, 8, 7, 1, 1), (8, 16, 4, 2, 1), (16, 8, 3, 1, 3), (32, 64, 16, 8, 1)],
)
def test_conv1d_matches_torch_and_prefixes_are_bit_stable(channels, out, kernel, stride, dilation):
    g = torch.Generator().manual_seed(channels + kernel)
    conv = torch.nn.Conv1d(channels, out, kernel, stride=stride, dilation=dilation).eval()
    x = torch.randn(2, channels, 3000, generator=g)
    with torch.inference_mode():
        whole = stable.conv1d(conv, x)
        torch.testing.assert_close(whole, conv(x), rtol=1e-5, atol=1e-5)
        span = (kernel - 1) * dilation + 1
        for width in (span, span + 1, 257 * stride + span, 1111, 2999):
            prefix = stable.conv1d(conv, x[..., :width])
            assert prefix.shape[-1] == (width - span) // stride + 1
            assert torch.equal(prefix, whole[..., : prefix.shape[-1]])
        assert stable.conv1d(conv, x[..., : span - 1]).shape == (2, out, 0)


def test_pointwise_matches_torch_and_prefixes_are_bit_stable():
    x = torch.randn(2, 5, 1000, generator=torch.Generator().manual_seed(1)) * 3
    elu = torch.nn.ELU()
    whole = stable.pointwise(elu, x)
    torch.testing.assert_close(whole, elu(x), rtol=1e-6, atol=1e-6)
    for width in (1, 63, 64, 65, 999):
        assert torch.equal(stable.pointwise(elu, x[..., :width]), whole[..., :width])


def test_lstm_matches_torch_and_prefixes_are_bit_stable():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(24, 32, 2).eval()
    seq = torch.randn(600, 2, 24)
    with torch.inference_mode():
        whole = stable.lstm(lstm, seq)
        torch.testing.assert_close(whole, lstm(seq)[0], rtol=1e-5, atol=1e-5)
        for steps in (1, 255, 256, 257, 599):
            assert torch.equal(stable.lstm(lstm, seq[:steps]), whole[:steps])
        assert stable.lstm(lstm, seq[:0]).shape == (0, 2, 32)
    with pytest.raises(TypeError, match="unidirectional"):
        stable.lstm(torch.nn.LSTM(4, 4, bidirectional=True), seq[..., :4])


def test_tiled_keeps_a_frame_local_function_prefix_stable():
    x = torch.randn(3, 16, 700, generator=torch.Generator().manual_seed(2))
    book = torch.randn(50, 16, generator=torch.Generator().manual_seed(3))

    def nearest(e: torch.Tensor) -> torch.Tensor:  # [3, 16, T] -> [3, 1, T] codeword index
        return torch.cdist(e.transpose(1, 2), book[None].expand(3, -1, -1)).argmin(-1)[:, None]

    whole = stable.tiled(nearest, x)
    assert torch.equal(whole, nearest(x))
    for width in (0, 1, 256, 300, 699):
        assert torch.equal(stable.tiled(nearest, x[..., :width]), whole[..., :width])


def test_torch_convolution_rounding_depends_on_width():
    """Why the module exists: PyTorch's own CPU convolution gives the first steps of a short prefix other
    bits than the same steps of the whole input (below ~20k input values it takes ATen's kernel instead
    of oneDNN's), while ``stable.conv1d`` gives the same bits."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(32, 16, 3).eval()
    x = torch.randn(1, 32, 6000)
    widths = range(13, 600, 37)
    with torch.inference_mode():
        whole, ours = conv(x), stable.conv1d(conv, x)
        unequal = sum(not torch.equal(conv(x[..., :w]), whole[..., : w - 2]) for w in widths)
        assert all(torch.equal(stable.conv1d(conv, x[..., :w]), ours[..., : w - 2]) for w in widths)
    assert unequal > 0
