"""``mulaw-8bit``: WaveNet-style mu-law sample tokens, 256 codes per sample (the long-sequence extreme)."""

from __future__ import annotations

import torch

from slmtok.tokenizer import Tokenizer, content_hash
from slmtok.types import PAD_CODE, TokenizerCard

NAME = "mulaw-8bit"


class MuLawTokenizer(Tokenizer):
    """mu-law companding (mu = 255) then 8-bit quantization of every sample at ``sample_rate`` Hz."""

    def __init__(
        self, *, device: str | torch.device = "cpu", sample_rate: int = 16000, n_codebooks: int | None = None
    ) -> None:
        super().__init__(device=device, load_options={"sample_rate": int(sample_rate)})
        if n_codebooks not in (None, 1):
            raise ValueError(f"{NAME} has one codebook; n_codebooks={n_codebooks} is out of range")
        self.mu = 255
        config = {"tokenizer": NAME, "mu": self.mu, "sample_rate": int(sample_rate)}
        self.card = TokenizerCard(
            name=NAME,
            kind="baseline",
            sample_rate=int(sample_rate),
            channels=1,
            frame_rate=float(sample_rate),
            codebook_sizes=(self.mu + 1,),
            max_codebooks=1,
            license="MIT (no weights)",
            source="ITU-T G.711 mu-law; van den Oord et al. 2016, WaveNet",
            description="mu-law 8-bit sample tokens: near-transparent, one token per sample",
            hash=content_hash(config),
        )

    def _encode(self, wav, lengths, n_codebooks):
        import torchaudio.functional as AF

        codes = AF.mu_law_encoding(wav.clamp(-1.0, 1.0), self.mu + 1)  # [B, 1, T]
        mask = torch.arange(wav.shape[-1], device=wav.device)[None, None] >= lengths[:, None, None]
        return codes.masked_fill(mask, PAD_CODE), lengths, {}

    def _decode(self, codes, lengths, extras):
        import torchaudio.functional as AF

        wav = AF.mu_law_decoding(codes.clamp_min(0), self.mu + 1)
        mask = torch.arange(codes.shape[-1], device=codes.device)[None, None] >= lengths[:, None, None]
        return wav.masked_fill(mask, 0.0), lengths
