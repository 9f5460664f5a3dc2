"""``mfcc-km``: k-means units over MFCC+delta+delta-delta frames (HuBERT's first-iteration targets).

Encode: 16 kHz mono -> 39-d Kaldi MFCC + deltas at 100 frames/s -> nearest of 100 centroids (optionally
run-length deduplicated: durations in ``tokens.extras["durations"]``). Decode: each unit's mean log-mel
(a table fitted with the codebook) -> a unit vocoder, or with ``decoder="griffin-lim"`` Griffin-Lim.
The unit vocoder (``decoder="neural"``) is the Vocos decoder of ``baselines/neural_decoder.py`` trained
here on those per-unit frames (``python -m slmtok.tokenizers.baselines.train_decoder --tokenizer
mfcc-km``, weights ``weights/mfcc-km-decoder.safetensors``). Units keep phonetic content and drop speaker
and pitch, so either decoder speaks with an average voice of its training talkers.

The card hash covers what the units mean (MFCC settings, centroids, mel table), not the decoder: tokens
decode with either one. The decoder in use is ``decoder_hash`` (sha256 of its weights, or
``"griffin-lim"``).
"""

from __future__ import annotations

import os

import torch

from slmtok.batching import pad_stack
from slmtok.dedup import deduplicate, expand
from slmtok.kmeans import assign_nearest
from slmtok.tokenizer import Tokenizer, content_hash
from slmtok.tokenizers.baselines import vocode as pieces
from slmtok.tokenizers.baselines.neural_decoder import check_choice, load_choice
from slmtok.tokenizers.baselines.vocode import vocode
from slmtok.tokenizers.baselines.weights import WEIGHTS_DIR, default_weights, load_weights
from slmtok.tokenizers.features.mel import MelConfig
from slmtok.tokenizers.features.mfcc import HOP, MFCC, WINDOW
from slmtok.types import PAD_CODE, TokenizerCard
from slmtok.vocoders.griffin_lim import GriffinLimVocoder

NAME = "mfcc-km"
#: the default decoder
DEFAULT_DECODER = "neural"
#: the shipped unit vocoder (fp16 safetensors) and its card (training data, command, sha256)
DECODER_WEIGHTS = WEIGHTS_DIR / "mfcc-km-decoder.safetensors"
DECODER_CARD = WEIGHTS_DIR / "mfcc-km-decoder.card.json"


class MFCCKMeansTokenizer(Tokenizer):
    """K-means units over MFCC frames; ``dedup=True`` collapses repeats into run-length durations."""

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        checkpoint: str | os.PathLike | None = None,
        dedup: bool = False,
        n_codebooks: int | None = None,
        decoder: str = DEFAULT_DECODER,
        decoder_weights: str | os.PathLike | None = None,
    ) -> None:
        check_choice(NAME, decoder)
        options: dict = {"dedup": bool(dedup)}
        if checkpoint is not None:
            options["checkpoint"] = str(checkpoint)
        if decoder != DEFAULT_DECODER:
            options["decoder"] = decoder
        if decoder_weights is not None:
            options["decoder_weights"] = str(decoder_weights)
        super().__init__(device=device, load_options=options)
        if n_codebooks not in (None, 1):
            raise ValueError(f"{NAME} has one codebook; n_codebooks={n_codebooks} is out of range")
        tensors, config = load_weights(checkpoint or default_weights(NAME), expect=NAME)
        self.centroids = tensors["centroids"].float().to(self.device)  # [K, 39]
        self.mel_table = tensors["mel_table"].float().to(self.device)  # [K, n_mels]
        self.features = MFCC(device=self.device)
        self.vocoder = GriffinLimVocoder(MelConfig(**config["mel"]), device=self.device)
        self.dedup = bool(dedup)
        self.decoder, self.decoder_hash = load_choice(
            NAME, decoder, decoder_weights or DECODER_WEIGHTS, device=self.device
        )
        described = "a Vocos unit vocoder" if self.decoder is not None else "mel-table + Griffin-Lim decoder"
        self.card = TokenizerCard(
            name=NAME,
            kind="semantic",
            sample_rate=MFCC.sample_rate,
            channels=1,
            frame_rate=MFCC.frame_rate,
            codebook_sizes=(self.centroids.shape[0],),
            max_codebooks=1,
            semantic_codebooks=(0,),
            license="CC-BY-SA-3.0 (centroids fitted on the Asterisk prompts); code MIT",
            source=config.get("source", "slmtok embedded baseline"),
            description=f"k-means over MFCC+deltas (HuBERT iteration-1 targets), {described}"
            + (", deduplicated" if self.dedup else ""),
            hash=content_hash({**config, "dedup": self.dedup}, tensors),
        )

    def units(self, wav: torch.Tensor) -> torch.Tensor:
        """``[T]`` 16 kHz audio -> ``[T']`` units (no deduplication)."""
        return assign_nearest(self.features(wav), self.centroids)

    def _encode(self, wav, lengths, n_codebooks):
        feats = [self.features(wav[i, 0, : int(lengths[i])]) for i in range(wav.shape[0])]
        counts = [f.shape[0] for f in feats]
        units = list(assign_nearest(torch.cat(feats), self.centroids).cpu().split(counts))
        extras = {}
        if self.dedup:
            runs = [deduplicate(u) for u in units]
            units = [u for u, _ in runs]
            extras["durations"] = pad_stack([d[None] for _, d in runs], 0)
        frame_lengths = torch.tensor([u.shape[0] for u in units])
        return pad_stack([u[None] for u in units], PAD_CODE), frame_lengths, extras

    def _decode(self, codes, lengths, extras):
        items, sample_lengths = [], []
        for i in range(codes.shape[0]):
            units = codes[i, 0, : int(lengths[i])]
            if "durations" in extras:
                units = expand(units, extras["durations"][i, 0, : int(lengths[i])])
            # MFCC frame j is centred at sample j*HOP + WINDOW/2; log-mel frame m at m*HOP: mel frame m
            # takes the unit of MFCC frame m-1 (the first unit is repeated), within a quarter hop.
            n_samples = max(units.numel() - 1, 0) * HOP + WINDOW
            if self.decoder is None:
                mel = self.mel_table[torch.cat([units[:1], units])] if units.numel() else self.mel_table[:0]
                items.append(vocode(self.vocoder, mel, n_samples)[None])
            elif units.numel() == 0:
                items.append(self.mel_table.new_zeros((1, n_samples)))
            else:  # U + 2 frames (the last unit held, as in training) cover the n_samples; one item at a time
                held = (torch.arange(units.numel() + 2, device=units.device) - 1).clamp(0, units.numel() - 1)
                audio = self.decoder.decode(self.mel_table[units[held]], 1, chunk_frames=pieces.CHUNK_FRAMES)
                items.append(audio[:n_samples][None])
            sample_lengths.append(n_samples)
        return pad_stack(items), torch.tensor(sample_lengths)
