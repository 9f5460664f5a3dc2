"""``BpeTokenizer``: a tokenizer whose codes are BPE ids over another tokenizer's units.

``slmtok.load(NAME, bpe="BPE/")`` wraps tokenizer ``NAME`` (loaded with the other options) in the BPE
model of the folder, which must have been fit on ``NAME``'s units (same card hash). Encode: the base's
codebook-0 units ``[T']`` (deduplicated first when the BPE was fit with ``--dedup``) -> BPE ids
``[B, 1, T_bpe]``. Decode: ids -> units (exactly the base's, run lengths restored) -> the base's decoder,
so ``decode(encode(x))`` is the base's ``decode(encode(x, n_codebooks=1))``.

Rates follow the deduplicated-units convention (``slmtok.dedup``, semantic bundles): ``card.frame_rate``
and ``tokens.frame_rate`` are the base's frames per second (nominal; ``card.bitrate`` is an upper
bound), and ``tokens.extras["durations"]`` ``[B, 1, T_bpe]`` holds the base frames each BPE id stands
for, so a token's audio span, an item's length in seconds and the decode-size limit stay exact. With
``--dedup``, ``tokens.extras["unit_durations"]`` ``[B, L, T_bpe]`` (``L`` = the most units one id stands
for) holds the run length of each unit inside each id, which decoding needs to be exact; without it
(e.g. LM-generated ids), an id's frames are shared evenly among its units.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slmtok.batching import pad_stack
from slmtok.bpe.model import BpeError, BpeModel, deduplicate_units, load_bpe
from slmtok.errors import TokenizerMismatchError
from slmtok.tokenizer import Tokenizer, content_hash
from slmtok.types import PAD_CODE, TokenizerCard, Tokens


def card_name(base_name: str, vocab_size: int) -> str:
    """``mfcc-km`` + 4096 -> ``mfcc-km+bpe4096``."""
    return f"{base_name}+bpe{vocab_size}"


def check_base(tok: Tokenizer, codebook: int | None) -> int:
    """The codebook a BPE over ``tok``'s units uses: 0 for single-codebook tokenizers and hybrids (their
    content codebook 0); multi-codebook acoustic tokenizers only when ``codebook=0`` is asked explicitly
    (codebook 0 alone is a coarse code). ``BpeError`` otherwise."""
    card = tok.card
    if codebook not in (None, 0):
        raise BpeError(f"BPE runs over codebook 0 only, not codebook {codebook}")
    if card.max_codebooks == 1 or (card.kind == "hybrid" and 0 in card.semantic_codebooks):
        return 0
    if codebook == 0:
        return 0
    raise BpeError(
        f"{card.name!r} is a {card.kind} tokenizer with {card.max_codebooks} codebooks; BPE over its units "
        "would drop all but the first: pass --codebook 0 (codebook=0) to fit on codebook 0 alone"
    )


class BpeTokenizer(Tokenizer):
    """BPE ids over a base tokenizer's units. See the module docstring.

    Args:
        base: the base tokenizer (loaded without deduplication: the BPE model's own flag decides).
        model: the BPE model fit on ``base``'s units.
    """

    def __init__(self, base: Tokenizer, model: BpeModel) -> None:
        if model.path is None:
            raise BpeError("a BPE tokenizer needs a saved BPE folder (slmtok bpe fit)")
        super().__init__(device=base.device, load_options={**base.load_options, "bpe": str(model.path)})
        wanted = model.card["base"]
        if wanted["name"] != base.card.name or (wanted["hash"] and wanted["hash"] != base.card.hash):
            raise TokenizerMismatchError(
                f"BPE folder {model.path} was fit on {wanted['name']!r} (weights {wanted['hash'][:12]}), "
                f"not on this {base.card.name!r} (weights {base.card.hash[:12]}); fit one for it with slmtok bpe fit"
            )
        if base.max_codebook_sizes[model.card["codebook"]] != model.n_units:
            raise TokenizerMismatchError(
                f"BPE folder {model.path} is over {model.n_units} units but {base.card.name!r} codebook 0 has "
                f"{base.max_codebook_sizes[0]}"
            )
        self.base, self.model = base, model
        self.causal = False  # BPE merges look ahead an unbounded number of frames
        self._pieces = [torch.from_numpy(p) for p in model.pieces]
        self._piece_lengths = torch.from_numpy(model.piece_lengths())
        c = base.card
        rates = {"output_sample_rate": c.output_sample_rate} if getattr(c, "output_sample_rate", None) else {}
        self.card = TokenizerCard(
            name=card_name(c.name, model.vocab_size),
            kind=c.kind,
            sample_rate=c.sample_rate,
            channels=c.channels,
            frame_rate=c.frame_rate,
            codebook_sizes=(model.vocab_size,),
            max_codebooks=1,
            semantic_codebooks=(0,) if 0 in c.semantic_codebooks else (),
            license=c.license,
            source=c.source,
            description=f"BPE ({model.vocab_size} ids{', over deduplicated units' if model.dedup else ''}) "
            f"over codebook 0 of {c.name}; frame_rate is {c.name}'s (nominal), durations give frames per id",
            hash=content_hash(
                {"base": c.hash, "bpe": model.sha256, "codebook": 0, "dedup": model.dedup, "bpe_version": 1}
            ),
            **rates,
        )

    # ---------------------------------------------------------------------------------- hooks
    def _encode(self, wav, lengths, n_codebooks):
        codes, frames, extras = self.base._encode(wav, lengths, 1)
        if extras:
            raise BpeError(
                f"{self.base.card.name!r} emits {', '.join(sorted(extras))} beside its codes, which BPE ids "
                "cannot carry; load it without dedup (the BPE model's own --dedup deduplicates)"
            )
        codes, frames = codes.cpu(), frames.cpu()
        streams, runs = [], []
        for i in range(codes.shape[0]):
            units = codes[i, 0, : int(frames[i])].numpy()
            run = np.ones(units.size, dtype=np.int64)
            if self.model.dedup:
                units, run = deduplicate_units(units)
            streams.append(units)
            runs.append(run)
        ids = self.model.encode_batch(streams)
        token_frames, unit_frames = [], []
        width = self.model.max_piece_units
        for item_ids, run in zip(ids, runs, strict=True):
            n_units = self.model.piece_lengths()[item_ids] if item_ids.size else np.zeros(0, np.int64)
            bounds = np.r_[0, np.cumsum(n_units)]
            token_frames.append(torch.from_numpy(np.add.reduceat(run, bounds[:-1]) if run.size else run))
            if self.model.dedup:
                table = np.zeros((width, item_ids.size), dtype=np.int64)
                for j in range(width):  # the j-th unit of every id that has one
                    has = n_units > j
                    table[j, has] = run[bounds[:-1][has] + j]
                unit_frames.append(torch.from_numpy(table))
        out = {"durations": pad_stack([d[None] for d in token_frames], 0)}
        if self.model.dedup:
            out["unit_durations"] = pad_stack(unit_frames, 0)
        id_lengths = torch.tensor([i.size for i in ids])
        return pad_stack([torch.from_numpy(i)[None] for i in ids], PAD_CODE), id_lengths, out

    def _decode(self, codes, lengths, extras):
        items = []
        for i in range(codes.shape[0]):
            ids = codes[i, 0, : int(lengths[i])].cpu()
            units = (
                torch.cat([self._pieces[j] for j in ids.tolist()]) if ids.numel() else torch.zeros(0).long()
            )
            if self.model.dedup:
                units = torch.repeat_interleave(units, self._unit_runs(ids, extras, i))
            items.append(units)
        base_codes = pad_stack([u[None] for u in items], PAD_CODE)
        base_lengths = torch.tensor([u.numel() for u in items])
        tokens = Tokens(base_codes, base_lengths, self.base.card.frame_rate, self.base.ref)
        audio = self.base.decode(tokens)
        return audio.wav, audio.lengths

    def _unit_runs(self, ids: torch.Tensor, extras: dict[str, torch.Tensor], i: int) -> torch.Tensor:
        """Run length of every unit of item ``i``'s ids ``[T_bpe]``: ``unit_durations`` when given, else
        each id's ``durations`` shared evenly among its units (remainder to the first), else 1 frame."""
        n_units = self._piece_lengths[ids]
        t = ids.numel()
        given = extras.get("unit_durations")
        if given is not None and given.shape[1] >= (int(n_units.max()) if t else 0):
            table = given[i, :, :t].cpu().long()  # [L, T_bpe]
            mask = torch.arange(table.shape[0])[:, None] < n_units[None, :]
            return table.T[mask.T].clamp_min(0)
        total = extras.get("durations")
        if total is None:
            return torch.ones(int(n_units.sum()), dtype=torch.long)
        frames = total[i, 0, :t].cpu().long().clamp_min(0)
        share, rest = frames // n_units, frames % n_units
        index = torch.cat([torch.arange(int(n)) for n in n_units.tolist()]) if t else torch.zeros(0).long()
        owner = torch.repeat_interleave(torch.arange(t), n_units)
        return share[owner] + (index < rest[owner]).long()


def load_with_bpe(
    name: str, bpe: str | os.PathLike, *, device: str = "cpu", checkpoint: Any = None, **options: Any
) -> BpeTokenizer:
    """``slmtok.load(name, bpe=FOLDER, ...)``: the base tokenizer the BPE folder was fit on (``name`` is
    that base's name, or the BPE tokenizer's own, e.g. ``mfcc-km+bpe4096``), wrapped in the BPE model."""
    from slmtok.api import load

    if not isinstance(bpe, (str, os.PathLike)) or not str(bpe):
        raise BpeError(f"bpe= must be a BPE folder path, got {bpe!r}")
    model = load_bpe(Path(bpe))
    base_name = model.card["base"]["name"]
    if name not in (base_name, card_name(base_name, model.vocab_size)):
        raise TokenizerMismatchError(
            f"BPE folder {bpe} was fit on {base_name!r}, not {name!r}; use -t {base_name} or fit one for {name}"
        )
    if options.get("dedup"):
        raise BpeError(
            f"with bpe= the base is loaded without dedup: BPE folder {bpe} decides (its dedup is "
            f"{str(model.dedup).lower()}); drop dedup=true"
        )
    base = load(base_name, device=device, checkpoint=checkpoint, **options)
    return BpeTokenizer(base, model)
