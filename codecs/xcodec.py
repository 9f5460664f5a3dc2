"""``xcodec``: X-Codec (Ye et al., AAAI 2025), semantic + acoustic RVQ, wrapping ``transformers.XcodecModel``.

X-Codec runs a DAC acoustic encoder and a HuBERT / WavLM semantic model (the mean of its hidden states,
through a small convolutional semantic encoder) side by side on 16 kHz mono, concatenates both per frame
(one frame per 320 samples, 50 Hz), and quantizes the *fused* vector with one residual VQ of 8 codebooks
of 1024 (4 kbps; 0.5-2 kbps use the first 1-4). Every codebook thus carries semantic and acoustic
information and none is the semantic one: the card is ``hybrid`` with no ``semantic_codebooks``. Decoding
uses the acoustic DAC decoder only. The architecture is transformers' own (``XcodecModel.encode`` /
``decode``), not a re-implementation.

**Batch == single, exactly.** The semantic model normalises its first convolution over the whole input
(group norm) and attends over every frame, so padding changes every code of an item: slmtok runs each item
alone at its own length, exactly the tensor ``model.encode`` would see for that file alone.

**Codebooks.** ``n_codebooks`` k (1-8) keeps the first k of the full RVQ, which are the codes
``model.encode(bandwidth=...)`` gives for the bandwidths it lists (k = 1, 2, 3, 4, 8) since the RVQ is
sequential; decoding uses the codebooks given.

**Lengths.** ``n`` samples give the semantic model's frame count for ``n + hop`` samples (transformers pads
``hop / 2`` each side), about ``round(n / hop)``; ``T`` frames decode to ``T * hop`` samples. Each frame
records the input samples it covers in ``Tokens.extras["samples"]``; decoding trims each item to their
sum, ``min(n, T * hop)``. Inputs shorter than ``min_samples`` (80 samples, which transformers cannot
encode) are zero-padded to it: one frame, decoded and cut back to their length.

**Long input.** Items longer than 60 s are cut into cores with 2 s of real audio (codes) each side; the
semantic model attends over its whole input, so chunked codes only approximate whole-input ones near
boundaries (not measured).

Checkpoints: ``checkpoint=`` a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``, the files
of ``hf-audio/xcodec-hubert-librispeech``), read with ``XcodecModel.from_pretrained(local_files_only=True)``
(safetensors: no pickle); a folder of another model type, or weights that do not fill the model, are refused
with one line.
"""

from __future__ import annotations

from typing import Any

import torch

from slmtok.codecs.base import SampleTrimmedCodec
from slmtok.codecs.transformers_codec import load_pretrained, read_config, resolve_folder, stack_padded
from slmtok.errors import CodesError
from slmtok.tokenizer import content_hash
from slmtok.types import TokenizerCard


class XcodecTokenizer(SampleTrimmedCodec):
    """X-Codec behind the ``Tokenizer`` interface. Build with ``slmtok.load("xcodec")``.

    Args:
        checkpoint: a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``).
        card: the hub card to fetch both files from (default: ``xcodec``).
        n_codebooks: default codebooks per frame (1 to the model's count, 8 at 4 kbps; default all).
        trust: accepted for symmetry with the other codecs (safetensors never needs it).
    """

    chunk_seconds = 60
    context_seconds = 2
    max_batch_samples = 16000 * 60
    width_multiple_frames = 1  # pieces run at their own length anyway (see ``encode_pieces``)

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        checkpoint: Any = None,
        card: Any = None,
        n_codebooks: int | None = None,
        trust: bool = False,
    ) -> None:
        from transformers import XcodecModel

        name = "xcodec"
        source = resolve_folder(name, checkpoint=checkpoint, card=card, trust=trust)
        super().__init__(device=device, load_options=dict(source.options))
        config = read_config(source.paths["config"], source.label, "xcodec", "X-Codec")
        model = load_pretrained(XcodecModel, source.paths, source.label, "X-Codec")
        cfg = model.config
        self.model = model.to(self.device)
        self.sample_rate = int(cfg.sample_rate)
        self.hop = int(cfg.hop_length)
        frame_rate = self.sample_rate / self.hop  # exact (transformers' ``frame_rate`` rounds up)
        self.chunk_frames = int(self.chunk_seconds * frame_rate)
        self.encode_context = self.decode_context = int(self.context_seconds * frame_rate)
        max_k = int(cfg.num_quantizers)
        k = max_k if n_codebooks is None else n_codebooks
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
            raise CodesError(f"{name} n_codebooks must be 1-{max_k}, got {n_codebooks!r}")
        size = int(cfg.codebook_size)
        semantic = type(cfg.semantic_model_config).__name__.removesuffix("Config")
        self.card = TokenizerCard(
            name=name,
            kind="hybrid",
            sample_rate=self.sample_rate,
            channels=1,
            frame_rate=frame_rate,
            codebook_sizes=(size,) * k,
            max_codebooks=max_k,
            license=source.license or "unknown",
            source=source.url or "https://huggingface.co/hf-audio/xcodec-hubert-librispeech",
            description=(
                f"X-Codec {self.sample_rate / 1000:g} kHz, RVQ of DAC + {semantic} features "
                f"({max_k} codebooks of {size} at {frame_rate:g} Hz)"
            ),
            hash=content_hash({"tokenizer": name, **config}, model.state_dict()),
        )

    def semantic_frames(self, n_samples: int) -> int:
        """The semantic model's frame count for ``n_samples`` padded by ``hop / 2`` on each side (as
        ``XcodecModel.encode`` pads it): the frames transformers gives."""
        padded = torch.tensor([int(n_samples) + 2 * self.model.pad])
        return int(self.model.semantic_model._get_feat_extract_output_lengths(padded)[0])

    @property
    def min_samples(self) -> int:
        """The shortest input transformers encodes (80 samples, 5 ms, at the published strides: shorter
        ones leave the semantic model's convolutions less than a kernel); shorter items are zero-padded to
        it, one frame, and their decoded audio is cut back to their length."""
        if getattr(self, "_min_samples", None) is None:
            self._min_samples = next(n for n in range(1, 64 * self.hop) if self.semantic_frames(n) >= 1)
        return self._min_samples

    def frames_for(self, n_samples: int) -> int:
        """Frames transformers gives for ``n_samples`` samples (at least ``min_samples``)."""
        return self.semantic_frames(max(int(n_samples), self.min_samples))

    # -------------------------------------------------------------------------------- hooks
    def encode_pieces(self, wav, lengths, n_codebooks):
        """``wav [N, 1, W]`` -> codes ``[N, k, T']``: each piece through ``model.encode`` (all codebooks)
        alone, cut to its own length, first ``k`` codebooks kept."""
        codes = []
        for i, n in enumerate(lengths):
            x = wav[i : i + 1, :, : int(n)]
            if x.shape[-1] < self.min_samples:
                x = torch.nn.functional.pad(x, (0, self.min_samples - x.shape[-1]))
            codes.append(self.model.encode(x).audio_codes[0, :n_codebooks])
        return stack_padded(codes)

    def decode_pieces(self, codes, lengths):
        """``codes [N, k, T']`` -> audio ``[N, 1, W]``: each piece's own codes through ``model.decode``
        alone, ``T * hop`` samples each."""
        wavs = [
            self.model.decode(codes[i : i + 1, :, : int(n)].long()).audio_values[0]
            for i, n in enumerate(lengths)
        ]
        return stack_padded(wavs)
