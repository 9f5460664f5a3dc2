"""MFCC + delta + delta-delta (39-d, 100 Hz): HuBERT's first-iteration clustering features.

Matches fairseq's ``examples/hubert/simple_kmeans/dump_mfcc_feature.py``: Kaldi-compatible MFCC
(``torchaudio.compliance.kaldi.mfcc``, 25 ms window, 10 ms shift, no energy) on [-1, 1] float audio,
followed by first and second order deltas.
"""

from __future__ import annotations

import torch

WINDOW = 400  # samples at 16 kHz (25 ms)
HOP = 160  # samples at 16 kHz (10 ms)


class MFCC:
    """``[T]`` mono 16 kHz audio -> ``[T', 39]`` with ``T' = 1 + (max(T, 400) - 400) // 160``.

    Items shorter than one 25 ms window are zero-padded to one window.
    """

    sample_rate = 16000
    dim = 39
    frame_rate = 100.0

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    def num_frames(self, n_samples: int) -> int:
        return 1 + (max(n_samples, WINDOW) - WINDOW) // HOP

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        import torchaudio.compliance.kaldi as kaldi
        import torchaudio.functional as AF

        x = wav.to(self.device, torch.float32)
        if x.shape[-1] < WINDOW:
            x = torch.nn.functional.pad(x, (0, WINDOW - x.shape[-1]))
        mfcc = kaldi.mfcc(x[None], sample_frequency=self.sample_rate, use_energy=False).T  # [13, T']
        deltas = AF.compute_deltas(mfcc)
        ddeltas = AF.compute_deltas(deltas)
        return torch.cat([mfcc, deltas, ddeltas], dim=0).T.contiguous()
