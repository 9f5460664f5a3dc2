"""``ChunkedCodec``: the batching, chunking and bookkeeping shared by the RVQ codec wrappers.

A subclass wraps one upstream model and implements two hooks on *pieces* (whole items, or chunks of
long items), each piece encoded as if alone (see ``slmtok.codecs.ragged``):

- ``encode_pieces(wav [N, C, W], lengths, n_codebooks) -> codes [N, K, T'], frame lengths``
- ``decode_pieces(codes [N, K, T'], lengths) -> wav [N, C, W'], sample lengths``

**Per-item lengths.** Every model here maps ``n`` samples to ``ceil(n / hop)`` frames (its convolutions
pad the last partial frame) and ``T`` frames back to about ``T * hop`` samples (DAC's decoder, with odd
strides, gives a few samples less); each item's lengths are the ones the model computes for it alone.

**Batching.** Each piece is padded to a canonical width, its length rounded up to
``width_multiple_frames`` frames; the ragged runner makes that padding invisible. On CPU (default)
each piece then runs on its own at its canonical width with one intra-op thread, ``workers`` pieces at
a time on a thread pool, so it meets exactly the same shapes and kernels alone or in any batch:
batch == single, bit for bit (see ``ragged``). Only the pool's own threads are set to one intra-op
thread; the caller's thread and torch's process-wide setting are left alone (``threads``), so other
threads, including another encode running at the same time, are unaffected. The speed comes from running whole items in parallel
instead of splitting every small kernel over threads, and from the shapes: few canonical widths let
oneDNN reuse its prepared plans across items, where a per-file loop builds new ones for every length.
With ``stack_batches`` (default on CUDA) pieces of the same canonical width share stacked calls of at
most ``max_batch_samples`` padded samples; each item still sees only its own values, equal to its
single-item result up to floating-point rounding.

**Long input.** An item longer than ``chunk_frames`` frames is cut into cores of ``chunk_frames`` frames,
each encoded with ``context_frames`` frames of real audio on both sides, whose codes are dropped. For a
model whose receptive field is finite (DAC) a context that covers it makes chunked codes equal to whole-
input codes (up to floating-point rounding: the pieces have other widths). For models with LSTMs (EnCodec,
SpeechTokenizer) the state at a chunk's start is rebuilt from the context only, so a frame near a core
boundary can get another code than in a whole-input encode (rare with seconds of context; measured in the
tests). Decoding cuts codes the same way, in frames. Memory is bounded by the largest forward call, not by
duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from slmtok.batching import pad_stack
from slmtok.codecs.threads import map_single_threaded
from slmtok.tokenizer import Tokenizer
from slmtok.types import PAD_CODE


@dataclass(frozen=True)
class Piece:
    """Part ``[start, stop)`` (in samples or frames) of item ``item``; keep ``[keep_from, keep_to)`` of
    its output (in output frames for encoding, output samples for decoding)."""

    item: int
    start: int
    stop: int
    keep_from: int
    keep_to: int


def plan_pieces(item: int, n_frames: int, chunk: int, context: int, scale: int, total: int) -> list[Piece]:
    """Cut an item of ``n_frames`` frames (``total`` input units, ``scale`` units per frame) into cores of
    ``chunk`` frames with ``context`` frames each side. Units are samples when encoding (scale = hop)
    and frames when decoding (scale = 1); ``keep_*`` are in output frames (encode) or frames (decode)."""
    if n_frames <= chunk + 2 * context:
        return [Piece(item, 0, total, 0, n_frames)]
    pieces = []
    for core in range(0, n_frames, chunk):
        first = max(0, core - context)
        last = min(n_frames, core + chunk + context)
        pieces.append(
            Piece(
                item,
                first * scale,
                min(total, last * scale),
                core - first,
                min(core + chunk, n_frames) - first,
            )
        )
    return pieces


def group_pieces(widths: list[int], max_samples: int, max_items: int) -> list[list[int]]:
    """Indices grouped for one forward call each: only equal ``widths`` (canonical, padded widths)
    together, at most ``max_samples // width`` (and ``max_items``) per group, widest first; ``max_samples``
    0 puts every index in a group of its own."""
    groups: list[list[int]] = []
    for width in sorted(set(widths), reverse=True):
        members = [i for i, w in enumerate(widths) if w == width]
        size = max(1, min(max_items, max_samples // width))
        groups += [members[j : j + size] for j in range(0, len(members), size)]
    return groups


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class ChunkedCodec(Tokenizer):
    """Base of the RVQ codec wrappers: pieces, groups and stitching around two subclass hooks."""

    #: samples per frame at ``card.sample_rate``
    hop: int
    #: samples per decoded frame at ``card.output_sample_rate`` (``None``: ``hop``, the same rate)
    output_hop: int | None = None
    #: frames per piece core when a long item is cut (encode and decode)
    chunk_frames: int = 1500
    #: frames of context on each side of a core (encode, decode)
    encode_context: int = 100
    decode_context: int = 100
    #: padded samples (x channels) per forward call, and items per call
    max_batch_samples: int = 24000 * 60
    max_batch_items: int = 64
    #: canonical widths are rounded up to a multiple of this many frames
    width_multiple_frames: int = 16
    #: run several pieces in one stacked call (fast on GPUs, equal to single-item results up to
    #: floating-point rounding) instead of one at a time (same bits alone or batched); None: on CUDA only
    stack_batches: bool | None = None
    #: CPU pieces run one per worker thread, each on one intra-op thread (default: torch's thread count)
    workers: int | None = None

    # -------------------------------------------------------------------------------- hooks
    def encode_pieces(
        self, wav: torch.Tensor, lengths: list[int], n_codebooks: int
    ) -> tuple[torch.Tensor, list[int]]:
        """``wav [N, C, W]`` (pieces at the card's rate), ``lengths`` in samples -> codes
        ``[N, K, T']`` (any values past each length) and frame lengths."""
        raise NotImplementedError

    def decode_pieces(self, codes: torch.Tensor, lengths: list[int]) -> tuple[torch.Tensor, list[int]]:
        """``codes [N, K, T']`` (valid up to ``lengths`` frames) -> ``wav [N, C, W']`` and sample lengths."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------- Tokenizer
    @property
    def max_codebook_sizes(self) -> tuple[int, ...]:
        """Every codebook of the model (all the same size), not just the default ``n_codebooks``."""
        return (self.card.codebook_sizes[0],) * self.card.max_codebooks

    def frames_for(self, n_samples: int) -> int:
        """Frames the model gives for ``n_samples`` samples: ``ceil(n / hop)``."""
        return math.ceil(n_samples / self.hop)

    def _encode(self, wav, lengths, n_codebooks):
        lengths = [int(n) for n in lengths]
        pieces = [
            p
            for i, n in enumerate(lengths)
            for p in plan_pieces(i, self.frames_for(n), self.chunk_frames, self.encode_context, self.hop, n)
        ]
        inputs = [wav[p.item, :, p.start : p.stop] for p in pieces]
        outputs = self._run_groups(inputs, lambda x, n: self.encode_pieces(x, n, n_codebooks), self.hop, 0.0)
        codes, frames = self._stitch(pieces, outputs, len(lengths), PAD_CODE)
        return codes, frames, {}

    def _decode(self, codes, lengths, extras):
        lengths = [int(n) for n in lengths]
        pieces = [
            p
            for i, n in enumerate(lengths)
            for p in plan_pieces(i, n, self.chunk_frames, self.decode_context, 1, n)
        ]
        inputs = [codes[p.item, :, p.start : p.stop] for p in pieces]
        outputs = self._run_groups(inputs, self.decode_pieces, 1, 0)
        hop = self.output_hop or self.hop
        scaled = [Piece(p.item, p.start, p.stop, p.keep_from * hop, p.keep_to * hop) for p in pieces]
        return self._stitch(scaled, outputs, len(lengths), 0.0)

    def _run_groups(self, inputs: list[torch.Tensor], call, units_per_frame: int, pad) -> list[torch.Tensor]:
        """Run ``call(batch [N, C, W], lengths)`` on groups of ``[C, n_i]`` inputs (``units_per_frame``
        input units per frame: ``hop`` samples, or 1 frame); return each input's output ``[C', n'_i]``.

        Every input is padded to its *canonical width*, ``n_i`` rounded up to ``width_multiple_frames``
        frames. By default (CPU) each input then runs alone, on one intra-op thread, and up to
        ``workers`` inputs run at once on a thread pool: an input meets the same shapes and the same
        single-threaded kernels alone or in any batch, so it gets the same bits (see ``ragged``). With
        ``stack_batches``, inputs of one canonical width share stacked calls instead."""
        multiple = self.width_multiple_frames * units_per_frame
        widths = [round_up(x.shape[-1], multiple) for x in inputs]
        max_units = self.max_batch_samples * units_per_frame // self.hop
        stack = self.device.type == "cuda" if self.stack_batches is None else self.stack_batches
        groups = group_pieces(widths, max_units if stack else 0, self.max_batch_items)
        long_piece = self.chunk_frames * units_per_frame // 2

        def run(group: list[int]) -> list[torch.Tensor]:
            batch = pad_stack([inputs[i] for i in group], pad)
            batch = torch.nn.functional.pad(batch, (0, widths[group[0]] - batch.shape[-1]), value=pad)
            out, out_lengths = call(batch, [inputs[i].shape[-1] for i in group])
            if widths[group[0]] >= long_piece:  # pieces of long items: keep the resident size flat
                release_freed_memory()
            return [out[j, :, : out_lengths[j]] for j in range(len(group))]

        if stack or self.device.type != "cpu":
            results = [run(group) for group in groups]
        else:
            # each group on a pool thread of its own with one intra-op thread; the caller's thread
            # and torch's process-wide settings are never touched (see ``slmtok.codecs.threads``)
            results = map_single_threaded(run, groups, self.workers or torch.get_num_threads())
        outputs: list[torch.Tensor | None] = [None] * len(inputs)
        for group, out in zip(groups, results, strict=True):
            for i, o in zip(group, out, strict=True):
                outputs[i] = o
        return outputs  # type: ignore[return-value]

    @staticmethod
    def _stitch(
        pieces: list[Piece], outputs: list[torch.Tensor], batch: int, pad: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenate the kept part of each item's pieces in order (a last piece may come out shorter,
        e.g. DAC's decoder with odd strides) and pad the items into a batch; return it and the lengths."""
        per_item: list[list[torch.Tensor]] = [[] for _ in range(batch)]
        for piece, out in zip(pieces, outputs, strict=True):
            per_item[piece.item].append(out[:, piece.keep_from : piece.keep_to])
        items = [torch.cat(parts, dim=-1) for parts in per_item]
        return pad_stack(items, pad), torch.tensor([x.shape[-1] for x in items])


def release_freed_memory() -> None:
    """Hand memory that was freed back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Worker threads allocate activations of varying sizes in their own glibc arenas, which keep freed
    holes: over an hour-long input the resident size then creeps up although nothing is kept alive
    (``benchmarks/codecs_speed.py memory``). Trimming after each piece of a chunked item keeps it flat."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


class SampleTrimmedCodec(ChunkedCodec):
    """A ``ChunkedCodec`` whose tokens record the input samples of each frame (``extras["samples"]``
    ``[B, 1, T]``: ``hop``, less in the last frame) so that decoding cuts each item back to its input
    length (its duration at ``card.output_sample_rate``, rounded up to a whole sample); codes without
    them (e.g. generated by an LM) decode to whole frames. Used by the codecs whose decoder gives whole
    frames only (SNAC and the transformers codecs); subclasses set ``hop``."""

    hop: int

    def _encode(self, wav, lengths, n_codebooks):
        codes, frames, extras = super()._encode(wav, lengths, n_codebooks)
        start = torch.arange(codes.shape[-1])[None, :] * self.hop  # [1, T]
        n = torch.as_tensor([int(x) for x in lengths])[:, None]
        samples = (n - start).clamp(0, self.hop)
        samples = samples.masked_fill(torch.arange(codes.shape[-1])[None, :] >= frames[:, None], 0)
        return codes, frames, {**extras, "samples": samples[:, None, :]}

    def _decode(self, codes, lengths, extras):
        wav, out_lengths = super()._decode(codes, lengths, extras)
        samples = extras.get("samples")
        if samples is None:
            return wav, out_lengths
        frames = torch.arange(samples.shape[-1], device=samples.device)[None, :] < lengths[:, None]
        keep = (samples[:, 0] * frames).sum(dim=-1).cpu()
        rate_in, rate_out = self.card.sample_rate, self.card.output_sample_rate
        if rate_out != rate_in:  # input samples -> decoded samples, rounded up
            keep = (keep * rate_out + rate_in - 1) // rate_in
        out_lengths = torch.minimum(out_lengths, keep)
        width = int(out_lengths.max()) if len(out_lengths) else 0
        beyond = torch.arange(width)[None, None, :] >= out_lengths[:, None, None]
        return wav[..., :width].masked_fill(beyond.to(wav.device), 0.0), out_lengths
