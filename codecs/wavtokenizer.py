"""``wavtokenizer-*``: WavTokenizer (Ji et al., ICLR 2025), one codebook, wrapping ``transformers.WavTokenizerModel``.

WavTokenizer is an EnCodec-style SEANet encoder (non-causal convolutions, an LSTM), one VQ codebook of
4096 entries, and a Vocos decoder (ConvNeXt blocks, one self-attention layer over the whole sequence,
an inverse-STFT head): 24 kHz mono in, one code per ``hop`` samples (600: 40 Hz, 320: 75 Hz). The
architecture is transformers' own (``WavTokenizerModel.encode`` / ``decode``), not a re-implementation.

**Batch == single, exactly.** The encoder pads with ``reflect`` and its convolutions see both sides, so
in a padded batch an item's last frames see the padding; the decoder's attention sees every frame. slmtok
therefore runs each item alone at its own length (``encode_pieces`` / ``decode_pieces``), exactly the
tensor ``model.encode`` / ``model.decode`` would see for that file alone.

**Lengths.** ``n`` samples give ``ceil(n / hop)`` codes; ``T`` codes decode to ``T * hop`` samples. Each
frame records the input samples it covers in ``Tokens.extras["samples"]`` ``[B, 1, T]``; decoding trims
each item to their sum, i.e. to its input length. Codes without it decode to ``T * hop`` samples.

**Long input.** Items longer than ``chunk_seconds`` (60 s) are cut into cores with ``context_seconds``
(2 s) of real audio (codes) each side. The model is not causal and its decoder attends over the whole
input, so chunked codes and audio only approximate whole-input ones near chunk boundaries (not measured).

Checkpoints: ``checkpoint=`` a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``, the
files of the hub repo ``swiss-ai/wavtokenizer-large-unify-40token``), read with
``WavTokenizerModel.from_pretrained(local_files_only=True)`` (safetensors: no pickle); a folder of another
model type or another hop than the variant's, or weights that do not fill the model, are refused with one
line.
Only the 40 Hz release is published in transformers' format (card ``wavtokenizer-40hz``); ``wavtokenizer-75hz``
takes ``checkpoint=`` only (a folder converted from the original 75 Hz ``.ckpt``) and says so without it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from slmtok.codecs.base import SampleTrimmedCodec
from slmtok.codecs.loading import CheckpointError
from slmtok.codecs.transformers_codec import load_pretrained, read_config, resolve_folder, stack_padded
from slmtok.errors import CodesError
from slmtok.tokenizer import content_hash
from slmtok.types import TokenizerCard

VARIANTS = {"40hz": 600, "75hz": 320}  # variant -> hop (samples per code at 24 kHz)
NO_HF_RELEASE = {"75hz"}  # variants with no transformers-format release (no hub card): checkpoint= only


class WavTokenizerTokenizer(SampleTrimmedCodec):
    """WavTokenizer behind the ``Tokenizer`` interface. Build with ``slmtok.load("wavtokenizer-40hz")``.

    Args:
        variant: ``"40hz"`` (hop 600) or ``"75hz"`` (hop 320); a checkpoint of another hop is refused.
        checkpoint: a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``).
        card: the hub card to fetch both files from (default: ``wavtokenizer-<variant>``).
        n_codebooks: 1 (the only codebook) or None.
        trust: accepted for symmetry with the other codecs (safetensors never needs it).
    """

    default_codebooks = 1
    chunk_seconds = 60
    context_seconds = 2
    max_batch_samples = 24000 * 60
    width_multiple_frames = 1  # pieces run at their own length anyway (see ``encode_pieces``)

    def __init__(
        self,
        *,
        variant: str = "40hz",
        device: str | torch.device = "cpu",
        checkpoint: Any = None,
        card: Any = None,
        n_codebooks: int | None = None,
        trust: bool = False,
    ) -> None:
        from transformers import WavTokenizerModel

        if variant not in VARIANTS:
            raise CheckpointError(f"wavtokenizer variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        name = f"wavtokenizer-{variant}"
        if checkpoint is None and card is None and variant in NO_HF_RELEASE:
            raise CheckpointError(
                f"{name}: no transformers-format release of this variant is known (the 75 Hz checkpoints "
                "ship as Lightning .ckpt pickles); pass checkpoint= a WavTokenizerModel save_pretrained folder"
            )
        source = resolve_folder(name, checkpoint=checkpoint, card=card, trust=trust)
        super().__init__(device=device, load_options=dict(source.options))
        config = read_config(source.paths["config"], source.label, "wavtokenizer", "WavTokenizer")
        model = load_pretrained(WavTokenizerModel, source.paths, source.label, "WavTokenizer")
        cfg = model.config
        if int(cfg.audio_channels) != 1:
            raise CheckpointError(f"{source.label}: WavTokenizer is mono, got {cfg.audio_channels} channels")
        self.hop = int(cfg.hop_length)
        if self.hop != VARIANTS[variant]:
            raise CheckpointError(
                f"{source.label}: hop {self.hop} samples, not the {VARIANTS[variant]} of {name}"
            )
        self.model = model.to(self.device)
        self.sample_rate = int(cfg.sampling_rate)
        frame_rate = self.sample_rate / self.hop  # exact (transformers' ``frame_rate`` rounds up)
        self.chunk_frames = int(self.chunk_seconds * frame_rate)
        self.encode_context = self.decode_context = int(self.context_seconds * frame_rate)
        if n_codebooks not in (None, 1):
            raise CodesError(f"{name} has one codebook, got n_codebooks={n_codebooks}")
        size = int(cfg.codebook_size)
        self.card = TokenizerCard(
            name=name,
            kind="acoustic",
            sample_rate=self.sample_rate,
            channels=1,
            frame_rate=frame_rate,
            codebook_sizes=(size,),
            max_codebooks=1,
            license=source.license or "unknown",
            source=source.url or "https://huggingface.co/swiss-ai/wavtokenizer-large-unify-40token",
            description=(
                f"WavTokenizer {self.sample_rate / 1000:g} kHz, one codebook of {size} at {frame_rate:g} Hz"
            ),
            hash=content_hash({"tokenizer": name, **config}, model.state_dict()),
        )

    def frames_for(self, n_samples: int) -> int:
        """Codes transformers gives for ``n_samples`` samples: ``ceil(n / hop)``."""
        return math.ceil(int(n_samples) / self.hop)

    # -------------------------------------------------------------------------------- hooks
    def encode_pieces(self, wav, lengths, n_codebooks):
        """``wav [N, 1, W]`` -> codes ``[N, 1, T']``: each piece through ``model.encode`` alone, cut to its
        own length (a padded batch would change its last codes: reflect padding, two-sided convolutions)."""
        codes = [self.model.encode(wav[i : i + 1, :, : int(n)]).audio_codes[0] for i, n in enumerate(lengths)]
        return stack_padded(codes)

    def decode_pieces(self, codes, lengths):
        """``codes [N, 1, T']`` -> audio ``[N, 1, W]``: each piece's own codes through ``model.decode``
        alone (its attention sees every frame), ``T * hop`` samples each."""
        wavs = [
            self.model.decode(codes[i : i + 1, :, : int(n)].long()).audio_values[0]
            for i, n in enumerate(lengths)
        ]
        return stack_padded(wavs)
