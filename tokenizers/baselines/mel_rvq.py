"""``mel-rvq``: log-mel frames quantized by residual vector quantization; the embedded default.

Encode: 16 kHz mono -> 80-band log-mel at 100 frames/s -> greedy RVQ over up to 8 codebooks of 1024
centroids (fitted stage by stage with slmtok's FAISS k-means on residuals). Decode: sum of the chosen
centroids -> a Vocos neural decoder trained here (``baselines/neural_decoder.py``, weights shipped in
``weights/mel-rvq-decoder.safetensors``, told how many codebooks it got), or with ``decoder="griffin-lim"``
the pure-DSP path: mel inverse (least squares) -> Griffin-Lim. No download either way.
Both run 60 s of frames at a time, so memory does not grow with duration; the codes equal those of a
whole-input analysis.

The card hash covers what the tokens mean (mel settings + codebooks, and the Griffin-Lim iteration count
as before), not the decoder: tokens made before the neural decoder existed, or with either decoder, decode
with either one. The decoder in use is ``decoder_hash`` (sha256 of its weights file, or
``"griffin-lim"``); the card's description names the decoder.
"""

from __future__ import annotations

import os

import torch

from slmtok.batching import pad_stack
from slmtok.kmeans import assign_nearest
from slmtok.tokenizer import Tokenizer, content_hash
from slmtok.tokenizers.baselines import vocode as pieces
from slmtok.tokenizers.baselines.neural_decoder import check_choice, load_choice
from slmtok.tokenizers.baselines.vocode import log_mel_frames, vocode
from slmtok.tokenizers.baselines.weights import WEIGHTS_DIR, default_weights, load_weights
from slmtok.tokenizers.features.mel import LogMel, MelConfig
from slmtok.types import PAD_CODE, TokenizerCard
from slmtok.vocoders.griffin_lim import GriffinLimVocoder

NAME = "mel-rvq"
#: the shipped neural decoder (fp16 safetensors) and its card (training data, command, sha256)
DECODER_WEIGHTS = WEIGHTS_DIR / "mel-rvq-decoder.safetensors"
DECODER_CARD = WEIGHTS_DIR / "mel-rvq-decoder.card.json"


class MelRVQTokenizer(Tokenizer):
    """Residual VQ of log-mel frames. ``n_codebooks`` (default 8) sets the default bitrate: 1 kbps each."""

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        checkpoint: str | os.PathLike | None = None,
        n_codebooks: int | None = None,
        griffin_lim_iters: int | None = None,
        decoder: str = "neural",
        decoder_weights: str | os.PathLike | None = None,
    ) -> None:
        check_choice(NAME, decoder)
        options = {"checkpoint": str(checkpoint)} if checkpoint is not None else {}
        if decoder != "neural":
            options["decoder"] = decoder
        if decoder_weights is not None:
            options["decoder_weights"] = str(decoder_weights)
        super().__init__(device=device, load_options=options)
        tensors, config = load_weights(checkpoint or default_weights(NAME), expect=NAME)
        self.codebooks = tensors["codebooks"].float().to(self.device)  # [Q, K, D]
        mel_config = MelConfig(**config["mel"])
        self.features = LogMel(mel_config, device=self.device)
        iters = griffin_lim_iters or config.get("griffin_lim_iters", 32)
        self.vocoder = GriffinLimVocoder(mel_config, n_iter=iters, device=self.device)
        self.decoder, self.decoder_hash = load_choice(
            NAME, decoder, decoder_weights or DECODER_WEIGHTS, device=self.device
        )
        described = "a Vocos neural decoder" if self.decoder is not None else "a Griffin-Lim decoder"
        n_max, size = self.codebooks.shape[:2]
        k = n_codebooks or n_max
        if not 1 <= k <= n_max:
            raise ValueError(f"{NAME} has {n_max} codebooks; n_codebooks={k} is out of range")
        self.card = TokenizerCard(
            name=NAME,
            kind="acoustic",
            sample_rate=mel_config.sample_rate,
            channels=1,
            frame_rate=mel_config.frame_rate,
            codebook_sizes=(size,) * k,
            max_codebooks=n_max,
            license="CC-BY-SA-3.0 (codebooks fitted on the Asterisk prompts); code MIT",
            source=config.get("source", "slmtok embedded baseline"),
            description=f"log-mel residual VQ with {described} (embedded, offline)",
            hash=content_hash({**config, "griffin_lim_iters": iters}, tensors),
        )

    @property
    def max_codebook_sizes(self) -> tuple[int, ...]:
        return (self.codebooks.shape[1],) * self.codebooks.shape[0]

    def quantize(self, frames: torch.Tensor, n_codebooks: int) -> torch.Tensor:
        """Greedy RVQ: ``[N, D]`` log-mel frames -> ``[n_codebooks, N]`` codes."""
        residual = frames.clone()
        codes = []
        for q in range(n_codebooks):
            idx = assign_nearest(residual, self.codebooks[q])
            residual -= self.codebooks[q][idx]
            codes.append(idx)
        return torch.stack(codes)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """``[K, N]`` codes -> ``[N, D]`` log-mel frames (sum of the chosen centroids)."""
        return sum(self.codebooks[q][codes[q]] for q in range(codes.shape[0]))

    def _encode(self, wav, lengths, n_codebooks):
        frames = [log_mel_frames(self.features, wav[i, 0, : int(lengths[i])]) for i in range(wav.shape[0])]
        frame_lengths = torch.tensor([f.shape[0] for f in frames])
        codes = self.quantize(torch.cat(frames), n_codebooks)  # [K, sum T']
        return pad_stack(list(codes.split(frame_lengths.tolist(), dim=1)), PAD_CODE), frame_lengths, {}

    def _decode(self, codes, lengths, extras):
        items = []
        for i in range(codes.shape[0]):
            n = int(lengths[i])
            frames = (
                self.dequantize(codes[i, :, :n])
                if n
                else self.codebooks.new_zeros(0, self.codebooks.shape[-1])
            )
            n_samples = self.vocoder.num_samples(n) if n else 0
            if self.decoder is None:
                items.append(vocode(self.vocoder, frames, n_samples)[None])
            else:  # one item at a time (batch decode equals single decode), in the baselines' pieces
                audio = self.decoder.decode(frames, codes.shape[1], chunk_frames=pieces.CHUNK_FRAMES)
                items.append(audio[:n_samples][None])
        return pad_stack(items), torch.tensor([x.shape[-1] for x in items])
