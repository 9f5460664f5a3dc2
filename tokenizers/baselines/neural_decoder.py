"""The neural decoders of ``mel-rvq`` and ``mfcc-km``: log-mel frames (dequantized codes, or each unit's mean
log-mel) -> 16 kHz audio with Vocos.

Architecture (the ``vocos`` package's own modules, not a re-implementation): a ConvNeXt
``VocosBackbone`` over the 80-band log-mel frames (100 frames/s), conditioned on the number of codebooks
through adaptive layer norm (id ``K - 1``: the decoder knows how coarse its input is), and an
``ISTFTHead`` (inverse STFT, ``hop_length`` 160, ``padding="same"``) that gives ``hop_length`` samples per
frame. Everything is frame-local except the backbone's convolutions, so long inputs are decoded in pieces
with ``context_frames`` of input on each side: each piece's inner frames see exactly the inputs they see
in a whole-input run, and the pieces' spectra are joined before one inverse STFT per piece (see
``MelDecoder.decode``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

#: frames per decoded piece (60 s at 100 frames/s): bounds memory for long inputs
CHUNK_FRAMES = 6000
#: what ``decoder=`` takes in ``mel-rvq`` and ``mfcc-km``
DECODERS = ("neural", "griffin-lim")


@dataclass(frozen=True)
class DecoderConfig:
    """Shape of the decoder. ``mel_mean``/``mel_std`` normalise the natural-log mel input."""

    n_mels: int = 80
    dim: int = 384
    intermediate_dim: int = 1152
    num_layers: int = 8
    n_fft: int = 640
    hop_length: int = 160
    max_codebooks: int = 8
    mel_mean: float = -5.0
    mel_std: float = 3.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DecoderConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def context_frames(self) -> int:
        """Input frames on each side that a backbone output frame depends on (embed conv + blocks, kernel 7),
        plus the inverse STFT's overlap in frames."""
        return 3 * (1 + self.num_layers) + self.n_fft // self.hop_length


class MelDecoder(nn.Module):
    """``[B, T', n_mels]`` log-mel + ``[B]`` codebook counts -> ``[B, T' * hop_length]`` audio."""

    def __init__(self, config: DecoderConfig | None = None) -> None:
        super().__init__()
        from vocos.heads import ISTFTHead
        from vocos.models import VocosBackbone

        self.config = c = config or DecoderConfig()
        self.backbone = VocosBackbone(
            input_channels=c.n_mels,
            dim=c.dim,
            intermediate_dim=c.intermediate_dim,
            num_layers=c.num_layers,
            adanorm_num_embeddings=c.max_codebooks,
        )
        self.head = ISTFTHead(dim=c.dim, n_fft=c.n_fft, hop_length=c.hop_length, padding="same")

    def spectrum(self, log_mel: torch.Tensor, n_codebooks: torch.Tensor) -> torch.Tensor:
        """``[B, T', n_mels]``, ``[B]`` -> complex STFT frames ``[B, n_fft // 2 + 1, T']``."""
        c = self.config
        x = ((log_mel - c.mel_mean) / c.mel_std).transpose(1, 2)
        ids = (n_codebooks.long() - 1).clamp(0, c.max_codebooks - 1)[:, None]  # [B, 1]: broadcasts over T'
        h = self.backbone(x, bandwidth_id=ids)  # [B, T', dim]
        # ISTFTHead.forward, minus its final inverse STFT (so pieces can be joined before it)
        h = self.head.out(h).transpose(1, 2)  # [B, n_fft + 2, T']
        mag, phase = h.chunk(2, dim=1)
        mag = torch.exp(mag).clip(max=1e2)
        return mag * (torch.cos(phase) + 1j * torch.sin(phase))

    def forward(self, log_mel: torch.Tensor, n_codebooks: torch.Tensor) -> torch.Tensor:
        """``[B, T', n_mels]``, ``[B]`` -> ``[B, T' * hop_length]`` audio (training path, one piece)."""
        return self.head.istft(self.spectrum(log_mel, n_codebooks))

    @torch.no_grad()
    def decode(
        self, log_mel: torch.Tensor, n_codebooks: int, *, chunk_frames: int | None = None
    ) -> torch.Tensor:
        """``[T', n_mels]`` frames of one item -> ``[T' * hop_length]`` audio, in pieces of ``chunk_frames``.

        Each piece's spectrum frames are computed from the piece plus ``context_frames`` of input on both
        sides, so they equal the whole-input frames (up to float rounding of differently sized matrix
        products); the inverse STFT of a piece also takes ``n_fft / hop`` spectrum frames beyond it, and
        keeps only the piece's own samples, which are then exactly those of a whole-item inverse STFT.
        """
        c = self.config
        chunk = chunk_frames or CHUNK_FRAMES
        frames = log_mel.shape[0]
        if frames == 0:
            return log_mel.new_zeros(0)
        k = torch.tensor([n_codebooks], device=log_mel.device)
        ctx = c.context_frames
        istft_ctx = c.n_fft // c.hop_length
        out = []
        for start in range(0, frames, chunk):
            stop = min(frames, start + chunk)
            lo, hi = max(0, start - ctx), min(frames, stop + ctx)
            spec = self.spectrum(log_mel[None, lo:hi], k)[0]  # [F, hi - lo]
            a, b = max(lo, start - istft_ctx), min(hi, stop + istft_ctx)
            audio = self.head.istft(spec[None, :, a - lo : b - lo])[0]  # [(b - a) * hop]
            hop = c.hop_length
            out.append(audio[(start - a) * hop : (stop - a) * hop])
        return torch.cat(out)


def load_decoder(
    path, *, device: str | torch.device = "cpu", expect: str = "mel-rvq-decoder"
) -> tuple[MelDecoder, dict]:
    """Load ``(decoder, config dict)`` from a safetensors file written by ``save_decoder`` for ``expect``
    (``"mel-rvq-decoder"`` or ``"mfcc-km-decoder"``; fp16 or fp32 storage; the model runs in fp32)."""
    from slmtok.tokenizers.baselines.weights import load_weights

    tensors, config = load_weights(path, expect=expect)
    model = MelDecoder(DecoderConfig.from_dict(config["decoder"]))
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.to(device).eval(), config


def save_decoder(path, model: MelDecoder, extra: dict, *, half: bool = True, name: str = "mel-rvq-decoder"):
    """Write the decoder's weights (fp16 when ``half``) and config (+ ``extra`` provenance) atomically, for
    ``name`` (``"<tokenizer>-decoder"``)."""
    from slmtok.tokenizers.baselines.weights import save_weights

    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
    return save_weights(path, tensors, {"tokenizer": name, "decoder": model.config.to_dict(), **extra})


def check_choice(name: str, decoder: str) -> None:
    """One-line ``SlmtokError`` unless ``decoder`` is one of ``DECODERS`` (for tokenizer ``name``)."""
    from slmtok.errors import SlmtokError

    if decoder not in DECODERS:
        raise SlmtokError(f"{name} decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")


def load_choice(
    name: str, decoder: str, weights, *, device: str | torch.device = "cpu"
) -> tuple[MelDecoder | None, str]:
    """``(model, decoder_hash)`` for tokenizer ``name``'s ``decoder`` option: ``"neural"`` loads the file
    ``weights`` (written for ``"<name>-decoder"``) and hashes it (sha256); ``"griffin-lim"`` gives
    ``(None, "griffin-lim")``."""
    import hashlib
    from pathlib import Path

    check_choice(name, decoder)
    if decoder != "neural":
        return None, decoder
    path = Path(weights)
    model, _ = load_decoder(path, device=device, expect=f"{name}-decoder")
    return model, hashlib.sha256(path.read_bytes()).hexdigest()
