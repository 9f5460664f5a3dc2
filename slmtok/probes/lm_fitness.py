"""LM fitness (issue #11): one fixed recipe of slmtok's own LM per tokenizer, scored on minimal pairs.

For a tokenizer (or the phone strings: the text ceiling) and a probe folder:

1. encode the ``train``, ``valid`` and pair items (``lexical``, ``syntactic``, ``acoustic``) in padded
   batches with their lengths (each item gets its solo codes), cached in ``OUT/codes.safetensors``;
2. write the ``train`` items' codes as an LM data folder (``OUT/data``, the ``delay`` pattern for several
   codebooks) and train ``RECIPE``'s model on it with ``slmtok.lm.train`` (``OUT/run``, resumable);
3. score every ``valid`` and pair item alone, from its BOS row, in windows of the model's context
   (``block_size`` steps, each window after the first sliding by ``score_stride``): the summed
   log-likelihood of its code tokens (special tokens are not scored, as in training);
4. report the share of pairs whose good member gets the higher score, with a bootstrap CI over pairs,
   and validation bits per second of audio (total nats / ln 2 / audio seconds).

Length normalisation. Each pair set is scored twice: ``sum`` (total log-likelihood) and ``mean``
(log-likelihood per scored code token). The headline is ``mean``: the two members of a pair are spoken
separately and differ in duration (a non-word's phones, an ungrammatical word, a speaker change all
change how long the audio is), so with ``sum`` a longer member loses for being longer, at a rate that
grows with the tokenizer's tokens per second -- the comparison would measure duration, not the LM. Ties
count one half.

Budget. The same model, the same training speech and the same number of LM positions (steps x batch x
context) for every tokenizer: the same compute, so a tokenizer with more tokens per second of audio sees
less audio for it (factor B, which is what the measure is meant to show). One torch thread (the
recipe's ``threads``) on CPU, so minutes per row compare across tokenizers on one machine.

Scoring budget. Each pair set (and the valid set) is scored within ``score_budget`` LM positions: a
seeded prefix of its pairs, at least ``min_pairs`` (``within_budget``). On a default probe build that is
every pair for tokenizers up to about 100 frames/s, and about 10 pairs per set for 16 kHz sample tokens
(``n_pairs`` against ``n_pairs_available``; the CI widens accordingly).

Results are labelled "synthetic": these are not ZeroSpeech scores.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError
from slmtok.probes.schema import PAIR_SETS, ProbeItem, ProbeSet, load_probes

if TYPE_CHECKING:
    import torch

    from slmtok.lm.model import SpeechLM
    from slmtok.lm.patterns import Pattern
    from slmtok.tokenizer import Tokenizer

SCHEMA = "slmtok.probes.lm_fitness"
VERSION = 1
TEXT_CEILING = "text-ceiling:phones"
REQUEST = "request.json"
CODES = "codes.safetensors"
RESULT = "lm_fitness.json"
NORMALISATIONS = ("mean", "sum")


@dataclass(frozen=True)
class Recipe:
    """The fixed LM-fitness recipe: one model, one budget, one scoring rule for every tokenizer.

    Budget: ``max_steps x batch_size x block_size`` LM positions (1.02 M by default), the same for every
    tokenizer; a position holds one frame of every codebook under the ``delay`` pattern.
    """

    name: str = "lm-fitness-v1"
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # 0.79 M parameters without embeddings
    dropout: float = 0.1
    block_size: int = 256  # context in LM steps
    batch_size: int = 16  # windows per optimizer step
    max_steps: int = 250
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    weight_decay: float = 0.1
    pattern: str = "delay"  # several codebooks: codebook k delayed by k steps (MusicGen)
    seed: int = 0
    threads: int = 1  # torch threads while training and scoring (restored afterwards)
    device: str = "cpu"
    score_stride: int = 192  # windows after the first slide by this many steps (>= 64 steps of context)
    score_positions: int = 4096  # LM positions per scoring batch
    score_budget: int = 300_000  # LM positions scored per pair set (and for valid), see ``within_budget``
    min_pairs: int = 10  # pairs (valid items) scored whatever the budget
    bootstrap: int = 2000  # resamples of pairs for the CI
    ci: float = 0.95
    headline: str = "mean"  # "mean": log-likelihood per code token; "sum": total log-likelihood
    max_batch: int = 16  # items per encode batch
    batch_seconds: float = 60.0  # padded audio per encode batch

    @property
    def positions(self) -> int:
        """LM positions the model trains on (steps x batch x context)."""
        return self.max_steps * self.batch_size * self.block_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPE = Recipe()


# ------------------------------------------------------------------------------------------ sources
@dataclass
class _Source:
    """What the LM is trained on: a name (and tokenizer reference), codebook sizes, and ``encode``
    (items -> ``{id: codes [K, T] int64}`` and ``{id: reason}`` for items that could not be encoded)."""

    name: str
    ref: dict[str, Any]
    codebook_sizes: tuple[int, ...]
    frame_rate: float
    encode: Callable[[list[ProbeItem]], tuple[dict[str, np.ndarray], dict[str, str]]]
    text: bool = False


def _audio_source(tok: Tokenizer, probes: ProbeSet, n_codebooks: int | None, recipe: Recipe) -> _Source:
    from slmtok.provenance import ref_to_dict

    k = n_codebooks or tok.card.n_codebooks
    if not 1 <= k <= len(tok.max_codebook_sizes):
        raise SlmtokError(f"{tok.card.name!r} has {len(tok.max_codebook_sizes)} codebooks; {k} asked for")

    def encode(items: list[ProbeItem]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        return _encode_audio(tok, probes, items, k, recipe)

    ref = {**ref_to_dict(tok.ref), "card": tok.card.to_dict(), "n_codebooks": k}
    return _Source(tok.card.name, ref, tuple(tok.max_codebook_sizes[:k]), tok.card.frame_rate, encode)


def phone_vocabulary(items: list[ProbeItem]) -> list[str]:
    """Sorted phone symbols of the items' ``phone_string``s: phone ``i`` of the list is code ``i``."""
    return sorted({p for item in items for p in item.phone_string.split()})


def _phone_source(items: list[ProbeItem]) -> _Source:
    phones = phone_vocabulary(items)
    ids = {p: i for i, p in enumerate(phones)}
    seconds = sum(it.seconds for it in items)
    rate = sum(len(it.phone_string.split()) for it in items) / seconds if seconds else 1.0

    def encode(wanted: list[ProbeItem]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        codes = {
            it.id: np.array([[ids[p] for p in it.phone_string.split()]], dtype=np.int64) for it in wanted
        }
        return codes, {}

    ref = {"name": TEXT_CEILING, "hash": "", "options": {}, "phones": phones}
    return _Source(TEXT_CEILING, ref, (max(len(phones), 2),), rate, encode, text=True)


def _batches(items: list[ProbeItem], seconds: float, max_batch: int) -> list[list[ProbeItem]]:
    """Items by duration (then id), cut into batches of at most ``seconds`` of padded audio."""
    out: list[list[ProbeItem]] = []
    for item in sorted(items, key=lambda it: (it.seconds, it.id)):
        if out and len(out[-1]) < max_batch and item.seconds * (len(out[-1]) + 1) <= seconds:
            out[-1].append(item)
        else:
            out.append([item])
    return out


def _encode_audio(
    tok: Tokenizer, probes: ProbeSet, items: list[ProbeItem], k: int, recipe: Recipe
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``{id: codes [K, T] int64}`` of each item (padded batches with lengths); an item the tokenizer
    refuses is left out with its one-line reason (the others of its batch are encoded alone)."""
    from slmtok.tokenizer import encode_list

    codes: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    rate = int(probes.header.get("sample_rate", 16000))
    for batch in _batches(items, recipe.batch_seconds, recipe.max_batch):
        waves = [probes.read_audio(it)[None] for it in batch]  # [1, T] each
        for item, tokens in zip(batch, encode_list(tok, waves, rate, n_codebooks=k), strict=True):
            if isinstance(tokens, SlmtokError):
                failed[item.id] = str(tokens).splitlines()[0]
            else:
                codes[item.id] = tokens.item(0).numpy().astype(np.int64)
    return codes, failed


# ------------------------------------------------------------------------------------------ caching
def _request(source: _Source, probes: ProbeSet, recipe: Recipe) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "tokenizer": source.ref,
        "probes": probes.header.get("fingerprint"),
        "recipe": recipe.to_dict(),
    }


def _check_request(out: Path, request: dict[str, Any]) -> None:
    """Record what ``out`` holds, or refuse to reuse a folder that holds another request's work."""
    path = out / REQUEST
    wanted = json.loads(json.dumps(request))
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            saved = None
        if saved != wanted:
            raise SlmtokError(
                f"{out} holds LM-fitness work of another tokenizer, probe set or recipe; use another folder"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(wanted, indent=1), encoding="utf-8")


def _cached_codes(
    out: Path, source: _Source, items: list[ProbeItem], log: Callable[[str], None]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The items' codes from ``out/codes.safetensors``, encoding and writing it first if absent."""
    from safetensors.numpy import load_file, save_file

    path = out / CODES
    ids = [it.id for it in items]
    if path.exists():
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
        if json.loads(meta.get("ids", "[]")) == ids:
            tensors = load_file(str(path))
            lengths = tensors["lengths"].tolist()
            if not lengths:
                return {}, json.loads(meta["failed"])
            parts = np.split(tensors["codes"].astype(np.int64), np.cumsum(lengths)[:-1], axis=1)
            encoded = [i for i in ids if i not in json.loads(meta["failed"])]
            return dict(zip(encoded, parts, strict=True)), json.loads(meta["failed"])
    log(f"{source.name}: encoding {len(items)} probe items")
    codes, failed = source.encode(items)
    encoded = [i for i in ids if i in codes]
    k = len(source.codebook_sizes)
    joined = np.concatenate([codes[i] for i in encoded], axis=1) if encoded else np.zeros((k, 0))
    tensors = {
        "codes": np.ascontiguousarray(joined, dtype=np.int32),
        "lengths": np.array([codes[i].shape[1] for i in encoded], dtype=np.int64),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"ids": json.dumps(ids), "failed": json.dumps(failed)})
    return codes, failed


# ------------------------------------------------------------------------------------------ training
@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads, restoring the caller's setting afterwards."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(
    out: Path,
    source: _Source,
    train_items: list[ProbeItem],
    codes: dict[str, np.ndarray],
    recipe: Recipe,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Write the LM data folder of the training items (if absent) and train (or resume) the run."""
    from slmtok.lm.data import MANIFEST, Utterance, load_manifest, write_dataset
    from slmtok.lm.training import TrainConfig, train

    data = out / "data"
    kept = [it for it in train_items if it.id in codes and codes[it.id].shape[1]]
    if not kept:
        raise SlmtokError(f"{source.name}: no training item has any tokens")
    if (data / MANIFEST).exists():
        manifest = load_manifest(data)
    else:
        manifest = write_dataset(
            data,
            [it.id for it in kept],
            (Utterance(it.id, codes[it.id], it.seconds) for it in kept),
            tokenizer=source.ref,
            codebook_sizes=source.codebook_sizes,
            frame_rate=source.frame_rate,
            pattern=recipe.pattern,
            valid_fraction=0.0,  # the probe folder's own valid set is scored below
            seed=recipe.seed,
            overwrite=True,
        )
    config = TrainConfig(
        model="tiny",
        model_overrides={
            "n_layer": recipe.n_layer,
            "n_head": recipe.n_head,
            "n_embd": recipe.n_embd,
            "dropout": recipe.dropout,
        },
        block_size=recipe.block_size,
        batch_size=recipe.batch_size,
        max_steps=recipe.max_steps,
        learning_rate=recipe.learning_rate,
        warmup_steps=recipe.warmup_steps,
        weight_decay=recipe.weight_decay,
        eval_interval=recipe.max_steps,
        save_interval=max(1, recipe.max_steps // 3),  # resumable at thirds
        log_interval=max(1, recipe.max_steps // 10),
        seed=recipe.seed,
        device=recipe.device,
    )
    began = time.perf_counter()
    result = train(data, out / "run", config, log=log)
    train_split = manifest["splits"]["train"]
    return {
        "steps": result.step,
        "positions": recipe.positions,
        "train_items": train_split["utterances"],
        "train_audio_seconds": train_split["audio_seconds"],
        "train_code_tokens": train_split["code_tokens"],
        "train_steps": train_split["steps"],
        "epochs": recipe.positions / train_split["steps"],
        "tokens_per_second": train_split["tokens_per_second"],
        "final_loss": _last_loss(out / "run"),
        "seconds_this_call": time.perf_counter() - began,
    }


def _last_loss(run: Path) -> float | None:
    """The last training loss logged in a run's ``metrics.jsonl`` (None if there is none)."""
    from slmtok.lm.checkpoint import METRICS

    loss = None
    path = run / METRICS
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            loss = row.get("loss", loss)
    return loss


# ------------------------------------------------------------------------------------------ scoring
def _windows(n: int, block: int, stride: int) -> list[tuple[int, int, int]]:
    """``(start, end, first scored)`` windows over ``n`` targets: every target scored once, each (after
    the first window's) with at least ``block - stride`` steps of context."""
    if n <= block:
        return [(0, n, 0)]
    out, done, start = [], 0, 0
    while done < n:
        start = min(start, n - block)
        out.append((start, start + block, done))
        done = start + block
        start += stride
    return out


def score_sequences(
    model: SpeechLM,
    pattern: Pattern,
    codes: list[np.ndarray],
    *,
    stride: int,
    positions: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood of each utterance alone: ``codes[i]`` ``[K, T_i]`` -> (nats ``[N]``, the summed
    log-probability of its code tokens, <= 0; scored tokens ``[N]`` = ``K * T_i``).

    Each utterance is ``[BOS, pattern steps, EOS]`` (special tokens are context, never scored), cut into
    windows of the model's context (``_windows``); windows are padded into batches of about
    ``positions`` LM positions (padding after a window's end cannot change it: attention is causal).
    """
    import torch
    import torch.nn.functional as F

    block = model.config.block_size
    code_vocab = torch.tensor(pattern.code_vocab)
    pieces: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (utterance, x [L, H], y [L, H])
    for i, c in enumerate(codes):
        seq = pattern.encode(torch.from_numpy(np.asarray(c)))  # [S, H]
        x, y = seq[:-1], seq[1:].clone()
        y[y >= code_vocab] = -100
        for start, end, first in _windows(len(x), block, stride):
            target = y[start:end].clone()
            target[: first - start] = -100
            pieces.append((i, x[start:end], target))
    pieces.sort(key=lambda p: len(p[1]))
    nats = np.zeros(len(codes))
    counts = np.zeros(len(codes), dtype=np.int64)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    i = 0
    with torch.inference_mode():
        while i < len(pieces):
            width = len(pieces[min(len(pieces) - 1, i)][1])
            take = max(1, positions // max(width, 1))
            batch = pieces[i : i + take]
            i += len(batch)
            width = max(len(p[1]) for p in batch)
            x = torch.zeros(len(batch), width, pattern.n_streams, dtype=torch.long)
            y = torch.full((len(batch), width, pattern.n_streams), -100, dtype=torch.long)
            for b, (_, xs, ys) in enumerate(batch):
                x[b, : len(xs)], y[b, : len(ys)] = xs, ys
            logits = model(x.to(device))
            loss = torch.zeros(len(batch), width, device=device)
            for h, part in enumerate(model.stream_logits(logits)):
                target = y[..., h].to(device)
                ce = F.cross_entropy(
                    part.float().transpose(1, 2), target, ignore_index=-100, reduction="none"
                )
                loss += ce
            per_window = loss.sum(dim=1).double().cpu().numpy()
            scored = (y != -100).sum(dim=(1, 2)).numpy()
            for b, (utt, _, _) in enumerate(batch):
                nats[utt] -= per_window[b]
                counts[utt] += scored[b]
    model.train(was_training)
    return nats, counts


def pair_accuracy(
    good: np.ndarray, bad: np.ndarray, *, bootstrap: int = 2000, ci: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Share of pairs whose good member scores higher (ties count 1/2), with a percentile bootstrap
    CI over pairs: ``{"accuracy", "ci": [low, high], "n_pairs", "ties"}`` (accuracy None if no pairs)."""
    good, bad = np.asarray(good, dtype=float), np.asarray(bad, dtype=float)
    wins = np.where(good > bad, 1.0, np.where(good == bad, 0.5, 0.0))
    n = len(wins)
    if not n:
        return {"accuracy": None, "ci": None, "n_pairs": 0, "ties": 0}
    rng = np.random.default_rng(seed)
    means = wins[rng.integers(0, n, size=(bootstrap, n))].mean(axis=1)
    tail = (1 - ci) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {
        "accuracy": float(wins.mean()),
        "ci": [float(low), float(high)],
        "n_pairs": n,
        "ties": int((good == bad).sum()),
    }


def _pair_set(
    name: str,
    pairs: list[tuple[ProbeItem, ProbeItem]],
    scores: dict[str, tuple[float, int]],
    recipe: Recipe,
    text: bool,
) -> dict[str, Any]:
    """Accuracy of one pair set under both normalisations (headline first), and per ``variant`` of the
    bad member where the set has them (acoustic: ``changed:<factor>``)."""
    label = {"mean": "mean log-likelihood per code token", "sum": "summed log-likelihood"}
    if text and name == "acoustic":
        return {
            "accuracy": None,
            "ci": None,
            "n_pairs": 0,
            "reason": "both members have the same text: phone strings cannot tell them apart",
        }
    usable = [(g, b) for g, b in pairs if scores.get(g.id, (0, 0))[1] and scores.get(b.id, (0, 0))[1]]

    def score(item: ProbeItem, how: str) -> float:
        nats, count = scores[item.id]
        return nats / count if how == "mean" else nats

    def accuracy(subset: list[tuple[ProbeItem, ProbeItem]], how: str) -> dict[str, Any]:
        good = np.array([score(g, how) for g, _ in subset])
        bad = np.array([score(b, how) for _, b in subset])
        return pair_accuracy(good, bad, bootstrap=recipe.bootstrap, ci=recipe.ci, seed=recipe.seed)

    entry: dict[str, Any] = {**accuracy(usable, recipe.headline), "normalisation": label[recipe.headline]}
    entry["dropped_pairs"] = len(pairs) - len(usable)
    for how in NORMALISATIONS:
        entry[how] = {**accuracy(usable, how), "normalisation": label[how]}
    variants = sorted({b.variant for _, b in usable if b.variant})
    if variants:
        entry["by_variant"] = {
            v: accuracy([(g, b) for g, b in usable if b.variant == v], recipe.headline) for v in variants
        }
    return entry


def _unigram_bits(train: list[np.ndarray], valid: list[np.ndarray], sizes: tuple[int, ...]) -> float:
    """Bits of the ``valid`` codes under per-codebook unigrams of the ``train`` codes (add-one)."""
    bits = 0.0
    for q, size in enumerate(sizes):
        counts = np.bincount(np.concatenate([c[q] for c in train]), minlength=size)[:size] + 1.0
        logp = np.log2(counts / counts.sum())
        for c in valid:
            bits -= float(logp[c[q]].sum())
    return bits


# ------------------------------------------------------------------------------------------ entry points
def lm_fitness(
    tokenizer: Tokenizer | str,
    probes: ProbeSet | str | os.PathLike,
    out_dir: str | os.PathLike,
    recipe: Recipe = RECIPE,
    *,
    n_codebooks: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``recipe``'s LM on a tokenizer's codes of the probe ``train`` set and score it.

    Args:
        tokenizer: a loaded tokenizer or a registered name (loaded on ``recipe.device``).
        probes: a probe folder (``slmtok probes build``) or its loaded ``ProbeSet``.
        out_dir: work folder (codes, LM data, run, ``lm_fitness.json``); a rerun resumes there.
        n_codebooks: codebooks the LM models (default: the card's), under ``recipe.pattern``.
        log: where progress lines go (default: nowhere).

    Returns:
        The result (also written to ``out_dir/lm_fitness.json``): ``lexical``, ``syntactic``,
        ``acoustic`` (each ``accuracy``, ``ci``, ``n_pairs``, ``normalisation``, both normalisations
        under ``mean`` / ``sum``), ``valid_bits_per_second``, training facts and timings.
    """
    probes = probes if isinstance(probes, ProbeSet) else load_probes(probes)
    if isinstance(tokenizer, str):
        import slmtok

        tokenizer = slmtok.load(tokenizer, device=recipe.device)
    return _run(_audio_source(tokenizer, probes, n_codebooks, recipe), probes, Path(out_dir), recipe, log)


def text_ceiling(
    probes: ProbeSet | str | os.PathLike,
    out_dir: str | os.PathLike,
    recipe: Recipe = RECIPE,
    *,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The same recipe on the items' phone strings (phone symbols -> integer ids, one per token): what
    an LM gets from exact phones without any acoustics. Acoustic pairs have the same text in both
    members, so they are not scored (``accuracy`` None with the reason); bits per second are phone-string
    bits over the same audio seconds."""
    probes = probes if isinstance(probes, ProbeSet) else load_probes(probes)
    items = _needed_items(probes)
    return _run(_phone_source(items), probes, Path(out_dir), recipe, log)


def _needed_items(probes: ProbeSet) -> list[ProbeItem]:
    return [it for it in probes.items if it.set in ("train", "valid", *PAIR_SETS)]


def _run(
    source: _Source, probes: ProbeSet, out: Path, recipe: Recipe, log: Callable[[str], None] | None
) -> dict[str, Any]:
    if recipe.headline not in NORMALISATIONS:
        raise SlmtokError(
            f"recipe headline must be one of {', '.join(NORMALISATIONS)}, got {recipe.headline!r}"
        )
    log = log or (lambda line: None)
    _check_request(out, _request(source, probes, recipe))
    if (out / RESULT).exists():
        return json.loads((out / RESULT).read_text(encoding="utf-8"))
    timings: dict[str, float] = {}
    items = _needed_items(probes)
    train_items = probes.by_set("train")
    if not train_items:
        raise SlmtokError(f"{probes.root}: the probe folder has no train items to train the LM on")
    with _threads(recipe.threads):
        began = time.perf_counter()
        codes, failed = _cached_codes(out, source, items, log)
        timings["encode"] = time.perf_counter() - began
        began = time.perf_counter()
        training = _train(out, source, train_items, codes, recipe, log)
        timings["train"] = time.perf_counter() - began
        began = time.perf_counter()
        result = _score(out, source, probes, codes, recipe, log)
        timings["score"] = time.perf_counter() - began
    result.update(
        training=training,
        failed_items=failed,
        timings_seconds=timings,
        threads=recipe.threads,
    )
    with atomic_path(out / RESULT) as tmp:
        tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def within_budget(
    groups: list[tuple[ProbeItem, ...]], steps: dict[str, int], budget: int, minimum: int, seed: int
) -> list[tuple[ProbeItem, ...]]:
    """The groups (pairs, or single valid items) to score: a prefix of one seeded permutation of them,
    as long as its LM positions (``steps`` per item) fit ``budget``, and at least ``minimum`` groups;
    returned in their original order. The permutation depends on the seed and the number of groups
    only, so a tokenizer with fewer tokens per second scores a superset of a faster one's pairs."""
    kept, used = [], 0
    for i in np.random.default_rng(seed).permutation(len(groups)).tolist():
        cost = sum(steps.get(item.id, 0) for item in groups[i])
        if len(kept) >= minimum and used + cost > budget:
            break
        kept.append(i)
        used += cost
    return [groups[i] for i in sorted(kept)]


def _score(
    out: Path,
    source: _Source,
    probes: ProbeSet,
    codes: dict[str, np.ndarray],
    recipe: Recipe,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from slmtok.lm.checkpoint import load_model
    from slmtok.lm.data import TokenData

    model, step = load_model(out / "run", recipe.device)
    pattern = TokenData(out / "data").pattern
    steps = {i: pattern.n_steps(c.shape[1]) + 1 for i, c in codes.items()}  # BOS + pattern steps

    def chosen(groups: list[tuple[ProbeItem, ...]]) -> list[tuple[ProbeItem, ...]]:
        return within_budget(groups, steps, recipe.score_budget, recipe.min_pairs, recipe.seed)

    valid_all = [(it,) for it in probes.by_set("valid") if it.id in codes and codes[it.id].shape[1]]
    pairs_all = {name: probes.pairs(name) for name in PAIR_SETS}
    selected = {name: chosen(pairs) for name, pairs in pairs_all.items()}
    if source.text:  # both members of an acoustic pair have the same phones
        selected["acoustic"] = []
    wanted = {
        it.id for group in [*chosen(valid_all), *(p for v in selected.values() for p in v)] for it in group
    }
    scored = [it for it in probes.items if it.id in wanted and it.id in codes and codes[it.id].shape[1]]
    log(f"{source.name}: scoring {len(scored)} items")
    nats, counts = score_sequences(
        model,
        pattern,
        [codes[it.id] for it in scored],
        stride=recipe.score_stride,
        positions=recipe.score_positions,
    )
    scores = {it.id: (float(n), int(c)) for it, n, c in zip(scored, nats, counts, strict=True)}
    valid = [it for (it,) in valid_all if it.id in scores]
    seconds = sum(it.seconds for it in valid)
    valid_nats = -sum(scores[it.id][0] for it in valid)
    valid_tokens = sum(scores[it.id][1] for it in valid)
    train_codes = [codes[it.id] for it in probes.by_set("train") if it.id in codes]
    unigram = _unigram_bits(train_codes, [codes[it.id] for it in valid], source.codebook_sizes)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "version": VERSION,
        "label": "synthetic",
        "tokenizer": source.name,
        "kind": "text" if source.text else "audio",
        "tokenizer_ref": source.ref,
        "probes": {"root": str(probes.root), "fingerprint": probes.header.get("fingerprint")},
        "recipe": recipe.to_dict(),
        "pattern": pattern.name,
        "codebook_sizes": list(source.codebook_sizes),
        "model": {
            "step": step,
            "parameters": model.num_parameters(),
            "parameters_without_embeddings": model.num_parameters(embeddings=False),
        },
        "headline": recipe.headline,
        "valid_items": len(valid),
        "valid_items_available": len(valid_all),
        "valid_seconds": seconds,
        "valid_tokens": valid_tokens,
        "valid_nats_per_token": valid_nats / valid_tokens if valid_tokens else None,
        "valid_bits_per_second": valid_nats / math.log(2) / seconds if seconds else None,
        "valid_unigram_bits_per_second": unigram / seconds if seconds else None,
    }
    for name in PAIR_SETS:
        result[name] = {
            **_pair_set(name, selected[name], scores, recipe, source.text),
            "n_pairs_available": len(pairs_all[name]),
            "budget_positions": recipe.score_budget,
        }
    return result
