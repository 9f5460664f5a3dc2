"""Speech continuation: prompt audio -> the run's tokenizer -> LM sampling (key/value cache) -> audio.

The prompt's codes become LM steps through the run's pattern; where the pattern spreads a frame over
several steps (``delay``), the prompt's codes in the first generated steps are kept and only the
others are sampled. Sampling obeys the pattern: each stream draws only codes of its codebook (and the
forced ``EMPTY`` of the delay pattern's first steps). Deduplicated units get each unit's mean duration
in the training data (``manifest["unit_durations"]``), rounded so that the total length is kept.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slmtok.errors import SlmtokError, TokenizerMismatchError
from slmtok.lm.checkpoint import load_model, read_run_config
from slmtok.lm.model import KVCache, SpeechLM
from slmtok.lm.patterns import BOS, Pattern, pattern_from_dict
from slmtok.types import Audio, TokenizerRef, Tokens


@dataclass
class LMRun:
    """A trained run, loaded: the model (eval mode), its step, the data manifest and the pattern."""

    folder: Path
    model: SpeechLM
    step: int
    manifest: dict[str, Any]
    pattern: Pattern

    @property
    def frames_per_second(self) -> float:
        """Token frames per second of audio in the training data (units/s when deduplicated)."""
        split = self.manifest["splits"]["train"]
        return split["tokens_per_second"] / self.manifest["n_codebooks"]


@dataclass
class Generation:
    """A continuation: ``audio`` (prompt + continuation, ``[1, C, T]``), its ``tokens`` ``[1, K, T']``,
    frames of prompt and of continuation, and the sampling speed in LM steps per second."""

    audio: Audio
    tokens: Tokens
    prompt_frames: int
    new_frames: int
    steps_per_second: float


def load_run(run: str | os.PathLike, device: str | torch.device = "cpu") -> LMRun:
    """Load the model, manifest and pattern of a run folder."""
    config = read_run_config(run)
    model, step = load_model(run, device)
    manifest = config["manifest"]
    return LMRun(Path(run), model, step, manifest, pattern_from_dict(manifest["pattern"]))


def _sample(
    logits: torch.Tensor, low: int, high: int, temperature: float, top_k: int | None, generator
) -> int:
    """One id in ``[low, high)`` from ``logits`` ``[V]``: greedy at temperature 0, else top-k sampling."""
    allowed = logits[low:high].float()
    if temperature <= 0 or high - low == 1:
        return low + int(allowed.argmax())
    allowed = allowed / temperature
    if top_k is not None and top_k < allowed.numel():
        floor = allowed.topk(top_k).values[-1]
        allowed = allowed.masked_fill(allowed < floor, float("-inf"))
    probs = torch.softmax(allowed, dim=-1).cpu()
    return low + int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def continue_steps(
    model: SpeechLM,
    pattern: Pattern,
    prefix: torch.Tensor,
    n_steps: int,
    *,
    forced: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Append ``n_steps`` sampled steps to ``prefix`` ``[S0, H]`` (its first row BOS) -> ``[S0 + n, H]``.

    ``forced`` ``[F, H]``: values for the first ``F`` new steps, ``-1`` where the stream is sampled.
    With the cache each step runs the model on one new step; without it, on the whole window. The
    context is the last ``block_size`` steps; with the cache, a full context restarts from its last half.
    """
    device = next(model.parameters()).device
    block = model.config.block_size
    seq = prefix.to(device).long().clone()
    vocab = model.config.stream_vocab_sizes
    cache = None

    def logits_for(steps: torch.Tensor, new_cache: bool) -> torch.Tensor:
        nonlocal cache
        if not use_cache:
            return model(steps[-block:][None])[0, -1]
        if new_cache:
            cache = KVCache.empty(model.config, 1, block, device, next(model.parameters()).dtype)
            return model(steps[None], cache)[0, -1]
        return model(steps[-1:][None], cache)[0, -1]

    logits = logits_for(seq[-block:], True)
    first_step = len(prefix) - 1  # pattern step index of the first new step (BOS is not a step)
    for i in range(n_steps):
        ranges = pattern.step_ranges(first_step + i)
        parts = logits.split(list(vocab))
        row = []
        for h, (low, high) in enumerate(ranges):
            value = int(forced[i, h]) if forced is not None and i < len(forced) else -1
            row.append(value if value >= 0 else _sample(parts[h], low, high, temperature, top_k, generator))
        seq = torch.cat([seq, torch.tensor([row], device=device)])
        if i == n_steps - 1:
            break
        if use_cache and cache.length >= block:
            logits = logits_for(seq[-(block // 2) :], True)
        else:
            logits = logits_for(seq, False)
    return seq.cpu()


def prompt_steps(pattern: Pattern, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt codes ``[K, T]`` -> (prefix ``[1 + S0, H]``: BOS and the steps the prompt fills entirely;
    forced ``[F, H]``: the prompt's codes in the steps after, ``-1`` where the LM must sample)."""
    steps = pattern.encode(codes, bos=False, eos=False)
    known = pattern.is_code(steps)
    for s in range(len(steps)):  # a token the pattern forces (the delay pattern's leading EMPTY) is known
        for h, (low, high) in enumerate(pattern.step_ranges(s)):
            known[s, h] |= high - low == 1 and int(steps[s, h]) == low
    complete = int(known.all(dim=1).long().cumprod(0).sum())
    prefix = torch.cat([pattern.special_row(BOS)[None], steps[:complete]])
    rest = steps[complete:]
    return prefix, torch.where(known[complete:], rest, torch.full_like(rest, -1))


def generate(
    run: str | os.PathLike | LMRun,
    prompt: str | os.PathLike | tuple[torch.Tensor, int],
    *,
    seconds: float = 5.0,
    temperature: float = 1.0,
    top_k: int | None = 250,
    seed: int = 0,
    device: str = "cpu",
    use_cache: bool = True,
    prompt_seconds: float | None = None,
    tokenizer: Any = None,
    checkpoint: Any = None,
) -> Generation:
    """Continue ``prompt`` (an audio file, or ``(wav [C, T] or [T], sample_rate)``) by ``seconds`` of
    audio with the run's LM, and decode prompt + continuation with the run's tokenizer.

    ``prompt_seconds`` keeps only the prompt's first seconds; ``tokenizer`` reuses a loaded tokenizer
    (it must be the one the run was trained on); ``checkpoint`` points at the tokenizer's weights when
    they moved (matched by sha256, see ``slmtok.load_for``).
    """
    import slmtok
    from slmtok.provenance import load_for

    lm = run if isinstance(run, LMRun) else load_run(run, device)
    manifest = lm.manifest
    ref = manifest["tokenizer"]
    # the run folder is data: its options are filtered and its weights found by sha256, never trusted
    tok = tokenizer or load_for(_manifest_ref(ref), device=device, checkpoint=checkpoint)
    if tok.card.name != ref["name"] or (ref.get("hash") and tok.card.hash != ref["hash"]):
        raise TokenizerMismatchError(
            f"the LM was trained on tokens of {ref['name']} (weights {str(ref.get('hash'))[:12]}), "
            f"not {tok.card.name} (weights {tok.card.hash[:12]})"
        )
    wav, rate = prompt if isinstance(prompt, tuple) else slmtok.read_audio(prompt)
    if prompt_seconds is not None:
        wav = wav[..., : int(prompt_seconds * rate)]
    tokens = tok.encode(wav, rate, n_codebooks=manifest["n_codebooks"])
    codes = tokens.item(0)
    if codes.shape[-1] == 0:
        raise SlmtokError("the prompt is too short to give one token frame")
    new_frames = max(1, round(seconds * lm.frames_per_second))
    prefix, forced = prompt_steps(lm.pattern, codes)
    total_steps = lm.pattern.n_steps(codes.shape[-1] + new_frames)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    seq = continue_steps(
        lm.model,
        lm.pattern,
        prefix,
        total_steps - (len(prefix) - 1),
        forced=forced,
        temperature=temperature,
        top_k=top_k,
        generator=generator,
        use_cache=use_cache,
    )
    elapsed = time.perf_counter() - start
    out = lm.pattern.decode(seq, strict=False)  # [K, T + new]
    extras = {}
    if manifest.get("dedup"):
        means = torch.tensor(manifest["unit_durations"], dtype=torch.float64)[out[0, codes.shape[-1] :]]
        ends = torch.cat([means.new_zeros(1), means.cumsum(0)]).round()  # rounding that keeps the total
        new = ends.diff().clamp_min(1).long()
        durations = torch.cat([tokens.extras["durations"][0, 0, : codes.shape[-1]], new])
        extras["durations"] = durations[None, None]
    result = Tokens(out[None], torch.tensor([out.shape[-1]]), tokens.frame_rate, tok.ref, extras)
    audio = tok.decode(result)
    steps = len(seq) - len(prefix)
    return Generation(audio, result, codes.shape[-1], out.shape[-1] - codes.shape[-1], steps / elapsed)


def _manifest_ref(ref: Any) -> TokenizerRef:
    """The ``TokenizerRef`` a run's manifest names (``name``, ``hash``, ``options``, ``weights``)."""
    from slmtok.provenance import ref_from_dict

    try:
        return ref_from_dict(ref)
    except ValueError as error:
        raise SlmtokError(f"the run's manifest names no usable tokenizer ({error})") from None
