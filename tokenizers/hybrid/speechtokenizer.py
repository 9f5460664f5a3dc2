"""``speechtokenizer``: SpeechTokenizer (Zhang et al. 2023), wrapping the ``speechtokenizer`` package.

A SEANet encoder with a bidirectional LSTM, then 8 residual codebooks of 1024 at 50 frames/s (16 kHz).
Codebook 0 is distilled from HuBERT and carries content (``card.semantic_codebooks == (0,)``); the others
add speaker and acoustic detail. Codes come from ``quantizer.encode(emb, n_q=k)``, the upstream
``SpeechTokenizer.encode(x, n_q)``, with ``k`` a per-call argument.

**Exact batching.** Items run through ``slmtok.codecs.ragged``: reflection padding per item, and the
backward LSTM direction started at each item's own last frame (each item reversed within its length); each
item runs alone at a canonical width (its length rounded up to a grid) on one intra-op thread, items in
parallel, so its codes are the same bits alone or in any batch (``ChunkedCodec``). Against the upstream
call on the unpadded item the latents differ by rounding only (other widths), so codes agree except at
near-ties (the tests and the benchmark count them).

**Long input.** Items longer than 60 s are cut into 60 s cores with 5 s of context on each side. The
bidirectional LSTM sees the whole input in a whole-input encode, so a chunked code can differ from the
whole-input one, mostly within a frame or two of a core boundary (measured in the tests).

Checkpoints: ``checkpoint=(config.json, SpeechTokenizer.pt)`` or a folder holding ``config.json`` and
one ``.pt`` state dict, as published in ``fnlp/SpeechTokenizer``; without it both come from the hub card.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from slmtok.codecs import ragged
from slmtok.codecs.base import ChunkedCodec
from slmtok.codecs.loading import CheckpointError, check_inited, fold_weight_norm, resolve_source
from slmtok.errors import CodesError
from slmtok.tokenizer import content_hash
from slmtok.types import TokenizerCard

NAME = "speechtokenizer"


def split_checkpoint(checkpoint: Any) -> dict[str, Path]:
    """``(config, weights)`` pair, or a folder with ``config.json`` and exactly one ``.pt`` file."""
    if isinstance(checkpoint, (list, tuple)):
        if len(checkpoint) != 2:
            raise CheckpointError("speechtokenizer checkpoint= takes (config.json, weights.pt)")
        return {"config": Path(os.fspath(checkpoint[0])), "weights": Path(os.fspath(checkpoint[1]))}
    folder = Path(os.fspath(checkpoint))
    if not folder.is_dir():
        raise CheckpointError(
            f"speechtokenizer checkpoint= takes (config.json, weights.pt) or a folder, got {folder}"
        )
    weights = sorted(folder.glob("*.pt"))
    if len(weights) != 1:
        raise CheckpointError(
            f"{folder} must hold config.json and exactly one .pt checkpoint, found {len(weights)}"
        )
    return {"config": folder / "config.json", "weights": weights[0]}


class SpeechTokenizerTokenizer(ChunkedCodec):
    """SpeechTokenizer behind the ``Tokenizer`` interface. Build with ``slmtok.load("speechtokenizer")``.

    Args:
        checkpoint: ``(config.json, SpeechTokenizer.pt)`` or a folder holding both.
        card: the hub card to fetch both files from (default ``"speechtokenizer"``).
        n_codebooks: default codebooks per frame (default all 8).
        trust: admit numpy values in a checkpoint that no card has verified (code is never admitted).
    """

    chunk_frames = 60 * 50
    encode_context = 5 * 50
    decode_context = 5 * 50
    max_batch_samples = 16000 * 60

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        checkpoint: Any = None,
        card: Any = None,
        n_codebooks: int | None = None,
        trust: bool = False,
    ) -> None:
        from speechtokenizer import SpeechTokenizer

        source = resolve_source(
            NAME,
            checkpoint=checkpoint,
            card=card,
            trust=trust,
            roles=("config", "weights"),
            split_checkpoint=split_checkpoint,
        )
        super().__init__(device=device, load_options=source.options)
        try:
            config = json.loads(source.paths["config"].read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"cannot read SpeechTokenizer config {source.paths['config']}: {error}"
            ) from None
        state = source.load_state_dict()
        model = SpeechTokenizer(config).eval()
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise CheckpointError(f"{source.label} does not match its config: {first}") from None
        check_inited(model, source.label)
        fold_weight_norm(model)
        self.model = model.to(self.device)
        self.hop = int(math.prod(config["strides"]))
        sample_rate = int(config["sample_rate"])
        n_q, size = int(config["n_q"]), int(config["codebook_size"])
        k = n_codebooks or n_q
        if not 1 <= k <= n_q:
            raise CodesError(f"{NAME} has {n_q} codebooks; n_codebooks={k} is out of range")
        self.card = TokenizerCard(
            name=NAME,
            kind="hybrid",
            sample_rate=sample_rate,
            channels=1,
            frame_rate=sample_rate / self.hop,
            codebook_sizes=(size,) * k,
            max_codebooks=n_q,
            semantic_codebooks=(0,),
            license=source.license or "Apache-2.0",
            source=source.url or "https://github.com/ZhangXInFD/SpeechTokenizer",
            description="SpeechTokenizer: RVQ codec, codebook 0 distilled from HuBERT (content), 1-7 acoustic",
            hash=content_hash({"tokenizer": NAME, **config}, state),
        )

    def encode_pieces(self, wav, lengths, n_codebooks):
        emb, frames = ragged.run(self.model.encoder, wav, lengths)
        codes = self.model.quantizer.encode(emb, n_q=n_codebooks, st=0)  # [K, N, T']
        return codes.transpose(0, 1), frames

    def decode_pieces(self, codes, lengths):
        quantized = self.model.quantizer.decode(codes.transpose(0, 1), st=0)
        return ragged.run(self.model.decoder, quantized, lengths)
