"""``neucodec``: Neuphonic's NeuCodec, wrapping ``transformers.NeuCodecModel``.

NeuCodec extends X-Codec2 (``slmtok.codecs.xcodec2``): the same semantic (Wav2Vec2-BERT on an 80-bin
Kaldi fbank) + acoustic encoder and one finite scalar quantizer (8 dimensions of 4 levels: one codebook of
65536 codes) at 50 Hz for 16 kHz mono input, but its Vocos decoder **upsamples: it returns 24 kHz audio**,
480 samples per frame. The card says both rates: ``sample_rate`` 16000 (what ``encode`` converts its
input to) and ``output_sample_rate`` 24000 (``decode``'s ``audio.sample_rate``). The architecture is
transformers' own (``NeuCodecFeatureExtractor`` + ``NeuCodecModel.encode`` / ``decode``), built from the
checkpoint's config; nothing is re-implemented.

**Batch == single, exactly.** As for X-Codec2, the fbank is normalised over the whole input and the
transformers attend over the whole sequence, so each item runs alone at its own length (exactly what
``feature_extractor(x)`` + ``model.encode`` give for that file alone); decoding runs each item alone too.

**Lengths.** transformers' feature extractor appends one zero sample and pads to a multiple of 320; the
acoustic branch then gives one frame more than the semantic one and the model keeps the shorter, so
``n >= 320`` samples give ``n // 320`` frames: the last ``n % 320`` samples (under 20 ms) are in no frame,
as in transformers. Below 320 samples transformers' feature extractor fails (its fbank window of 400
samples does not fit the padded 320); slmtok pads such an input with zeros to 320 samples, which gives
exactly one frame (``frames_for``), so 1 to 319 samples encode to one frame covering them and the zeros.
Each frame records the input samples it covers in ``Tokens.extras["samples"]`` ``[B, 1, T]``; decoding
trims each item to their sum at 24 kHz (rounded up), so an item decodes to ``T * 480`` samples, or to
its input's duration for one under 320 samples. Codes without ``samples`` decode to ``T * 480``.

**Long input.** As X-Codec2: items over ``chunk_frames`` (60 s) are cut into cores with 5 s of real
audio each side; the model is not causal, so codes near a core boundary can differ from a whole-input
encode.

Checkpoints: ``checkpoint=`` a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``), read
with ``NeuCodecModel.from_pretrained(local_files_only=True)`` (safetensors: no pickle); a folder of another
model type, or weights that do not fill the model, are refused with one line. Without it both files come
from the hub card ``neucodec`` (the ``neuphonic/neucodec`` repo transformers' NeuCodec docs load).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from slmtok.codecs.base import SampleTrimmedCodec
from slmtok.codecs.loading import CheckpointError
from slmtok.codecs.transformers_codec import load_pretrained, read_config, resolve_folder
from slmtok.codecs.xcodec2 import Xcodec2Tokenizer
from slmtok.tokenizer import content_hash
from slmtok.types import TokenizerCard

MODEL_TYPE = "neucodec"


class NeuCodecTokenizer(Xcodec2Tokenizer):
    """NeuCodec behind the ``Tokenizer`` interface (16 kHz in, 24 kHz out). Build with
    ``slmtok.load("neucodec", ...)``.

    Args:
        checkpoint: a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``).
        card: the hub card to fetch both files from (default: ``neucodec``).
        n_codebooks: 1 (the only codebook), accepted for symmetry with the other codecs.
        trust: accepted for symmetry with the other codecs (safetensors never needs it).
    """

    NAME = "neucodec"

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        checkpoint: Any = None,
        card: Any = None,
        n_codebooks: int | None = None,
        trust: bool = False,
    ) -> None:
        from transformers import NeuCodecFeatureExtractor, NeuCodecModel

        name = self.NAME
        source = resolve_folder(name, checkpoint=checkpoint, card=card, trust=trust)
        SampleTrimmedCodec.__init__(self, device=device, load_options=dict(source.options))
        config = read_config(source.paths["config"], source.label, MODEL_TYPE, "NeuCodec")
        model = load_pretrained(NeuCodecModel, source.paths, source.label, "NeuCodec")
        self.model = model.to(self.device)
        cfg = model.config
        self.sample_rate = int(cfg.input_sampling_rate)
        self.output_sample_rate = int(cfg.output_sampling_rate)
        self.hop = int(cfg.encoder_hop_length)  # input samples per frame (16 kHz)
        self.output_hop = int(cfg.hop_length)  # decoded samples per frame (24 kHz)
        if self.output_hop * self.sample_rate != self.hop * self.output_sample_rate:
            raise CheckpointError(
                f"{source.label}: decoder hop {self.output_hop} at {self.output_sample_rate} Hz is not the "
                f"encoder hop {self.hop} at {self.sample_rate} Hz"
            )
        self.features = NeuCodecFeatureExtractor(sampling_rate=self.sample_rate, hop_length=self.hop)
        size = int(math.prod(int(level) for level in cfg.quantization_levels))
        if n_codebooks is not None:
            self._check_n_codebooks_value(int(n_codebooks))
        frame_rate = self.sample_rate / self.hop
        self.card = TokenizerCard(
            name=name,
            kind="acoustic",
            sample_rate=self.sample_rate,
            output_sample_rate=self.output_sample_rate,
            channels=1,
            frame_rate=frame_rate,
            codebook_sizes=(size,),
            max_codebooks=1,
            license=source.license or "unknown",
            source=source.url or "https://huggingface.co/neuphonic/neucodec",
            description=(
                f"NeuCodec {self.sample_rate / 1000:g} kHz in, {self.output_sample_rate / 1000:g} kHz out, "
                f"semantic + acoustic encoder, one FSQ codebook of {size} at {frame_rate:g} Hz"
            ),
            hash=content_hash({"tokenizer": name, **config}, model.state_dict()),
        )

    def frames_for(self, n_samples: int) -> int:
        """Frames for ``n_samples`` input samples: ``n // 320`` (transformers), one below 320 samples
        (padded with zeros to 320 first; see the module)."""
        return max(1, int(n_samples) // self.hop)

    def encode_pieces(self, wav, lengths, n_codebooks):
        """``wav [N, 1, W]`` -> codes ``[N, 1, T']``: each piece alone through the feature extractor and
        ``model.encode`` (``Xcodec2Tokenizer.encode_pieces``), a piece under one hop zero-padded to it."""
        width = max(wav.shape[-1], self.hop)
        padded = wav.new_zeros(wav.shape[0], wav.shape[1], width)
        for i, n in enumerate(lengths):
            padded[i, :, : int(n)] = wav[i, :, : int(n)]
        return super().encode_pieces(padded, [max(int(n), self.hop) for n in lengths], n_codebooks)
