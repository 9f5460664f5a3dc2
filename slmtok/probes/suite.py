"""The SLM suite (``slmtok probes run``): every tokenizer on a probe folder, measured for what a speech
LM needs -- (A) content, (B) length, (C) paralinguistics -- and for LM fitness, written into the same
versioned results as the resynthesis bench (``slmtok.leaderboard.results``, ``"suite": "slm"``).

Per tokenizer (``NAME[:key=value,...]`` as in ``slmtok bench``; one that cannot load is listed as
unavailable with the reason):

1. encode the ``content`` and ``invariance`` items, batched with their lengths; every batch of codes is
   saved to ``RESULTS/work/<tokenizer>/`` (safetensors) as it is made, so a killed run resumes there;
2. **content** (codebook 0, frames labelled by the phone at their centre, silence left out): phone and
   cluster purity, PNMI (and the PNMI of the same units shuffled across frames: the estimate's floor),
   ABX error within and across speakers;
3. **length**: units per second (codebook 0), after dedup, after BPE (``--bpe`` models fitted on this
   tokenizer), unigram entropy and entropy rate;
4. **paralinguistics**: speaker-ID accuracy of a linear classifier on unit histograms (with its
   chance level), and invariance: unit edit distance after dedup between a clean item and its noisy /
   pitch-shifted / sped-up / other-voice variants;
5. **lm_fitness**: the fixed LM recipe of ``slmtok.probes.lm_fitness`` trained on the ``train`` set's
   tokens: accuracy on the lexical, syntactic and acoustic pairs and validation bits per second.

With ``jobs`` > 1, the LM-fitness stages run in that many worker processes (one torch thread each, as
the recipe says) while this process measures the next tokenizers. Each finished stage is one row
appended to ``RESULTS/rows.partial.jsonl``; a rerun skips the stages
already done for the same tokenizer (name and card hash), probe set (fingerprint) and settings, and
retries failed ones. A sanity row, ``text-ceiling``, runs the same measures on the phone alignment itself
(A, C: one phone label per 10 ms frame; B and LM: the phone strings). Every result is labelled
"synthetic": these are not ZeroSpeech scores.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slmtok.atomic import atomic_path, open_append, remove_orphans
from slmtok.errors import SlmtokError
from slmtok.leaderboard.profile import factor_scores
from slmtok.leaderboard.results import (
    INVARIANCE_VARIANTS,
    ROWS,
    SCHEMA,
    SUITE_SLM,
    VERSION,
    dumps_row,
    environment,
    read_jsonl,
    write_rows,
    write_summary,
)
from slmtok.leaderboard.runner import TokenizerSpec, _one_line, _slug
from slmtok.probes.schema import SILENCE, ProbeItem, ProbeSet, frame_labels, load_probes
from slmtok.runlock import RunLock

JOURNAL = "rows.partial.jsonl"
WORK = "work"
STAGES = ("content", "length", "paralinguistics", "lm_fitness")
TEXT_CEILING = "text-ceiling"
SUBSET = "synthetic"
ORACLE_RATE = 100.0  # frames/s of the text ceiling's phone-label units
CODEBOOK = 0


@dataclass(frozen=True)
class SuiteSettings:
    """What the measures depend on (hashed into every row's key: change one and the stage reruns).

    ``abx_max_triplets``: ABX triplets drawn per mode (bounded cost); ``bpe``: BPE model folders
    (``slmtok bpe fit``), each used for the tokenizer it was fitted on; ``skip_lm``: no LM fitness;
    ``text_ceiling``: add the phone-alignment sanity row; ``batch_seconds``: audio per encode batch;
    ``recipe``: the LM-fitness recipe (``None``: ``slmtok.probes.lm_fitness.RECIPE``, the fixed one --
    another is for tests)."""

    seed: int = 0
    abx_max_triplets: int = 2000
    skip_lm: bool = False
    text_ceiling: bool = True
    bpe: tuple[str, ...] = ()
    batch_seconds: float = 60.0
    max_batch: int = 16
    recipe: Any = None

    def lm_recipe(self):
        """The LM-fitness recipe this run uses."""
        if self.recipe is not None:
            return self.recipe
        from slmtok.probes.lm_fitness import RECIPE

        return RECIPE

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "recipe"}
        recipe = None if self.skip_lm else asdict(self.lm_recipe())
        return {**data, "bpe": list(self.bpe), "codebook": CODEBOOK, "recipe": recipe}

    def stage_hash(self, stage: str) -> str:
        """The settings one stage depends on (encode batching never changes the codes: batch = single)."""
        used = {
            "content": ("seed", "abx_max_triplets"),
            "length": ("bpe",),
            "paralinguistics": ("seed",),
            "lm_fitness": ("seed",),
        }[stage]
        data = {k: v for k, v in self.to_dict().items() if k in used}
        if stage == "lm_fitness":
            data["recipe"] = asdict(self.lm_recipe())
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads, restoring the caller's setting afterwards."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ units
@dataclass
class Units:
    """A tokenizer's codes for the probe items: ``codes[id]`` is ``[K, T]`` int64 (valid frames only)."""

    codes: dict[str, np.ndarray] = field(default_factory=dict)
    frame_rate: float = 0.0
    vocab_size: int = 0

    def first(self, item_id: str) -> np.ndarray:
        """Codebook 0 of one item: ``[T]`` int64."""
        return self.codes[item_id][CODEBOOK]


def _batches(items: list[ProbeItem], seconds: float, max_batch: int) -> list[list[ProbeItem]]:
    """Items by length (then id), cut into batches of at most ``seconds`` of padded audio."""
    order = sorted(items, key=lambda it: (it.seconds, it.id))
    out: list[list[ProbeItem]] = []
    for item in order:
        if out and len(out[-1]) < max_batch and item.seconds * (len(out[-1]) + 1) <= seconds:
            out[-1].append(item)
        else:
            out.append([item])
    return out


def encode_items(
    tok,
    probes: ProbeSet,
    items: list[ProbeItem],
    work: Path,
    *,
    tag: str,
    batch_seconds: float = 60.0,
    max_batch: int = 16,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, np.ndarray]:
    """Encode ``items`` in padded batches (``lengths`` given, so each item gets its solo codes); each
    batch is written to ``work/batch-NNNN.safetensors`` as it is made and reused by a later call with
    the same ``tag`` (tokenizer card hash + probe fingerprint). Returns ``{id: codes [K, T] int64}``."""
    import torch
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    batches = _batches(items, batch_seconds, max_batch)
    for number, batch in enumerate(batches):
        path = work / f"batch-{number:04d}.safetensors"
        ids = [it.id for it in batch]
        if path.is_file():
            try:
                with safe_open(str(path), "np") as f:
                    meta = f.metadata() or {}
                if meta.get("tag") == tag and json.loads(meta.get("ids", "[]")) == ids:
                    saved = load_file(str(path))
                    out.update({i: saved[i].astype(np.int64) for i in ids})
                    continue
            except Exception:  # noqa: BLE001 - a torn or foreign file is re-made
                pass
        progress(f"encode batch {number + 1}/{len(batches)} ({len(batch)} items)")
        waves = [probes.read_audio(it) for it in batch]
        lengths = torch.tensor([w.shape[-1] for w in waves])
        padded = torch.zeros(len(waves), 1, int(lengths.max()))
        for i, w in enumerate(waves):
            padded[i, 0, : w.shape[-1]] = w
        with torch.inference_mode():
            tokens = tok.encode(padded, probes.header.get("sample_rate", 16000), lengths=lengths)
        codes = {}
        for i, item_id in enumerate(ids):
            n = int(tokens.lengths[i])
            codes[item_id] = tokens.codes[i, :, :n].cpu().numpy().astype(np.int64)
        with atomic_path(path) as tmp:
            save_file(
                {k: v.astype(np.int32) for k, v in codes.items()},
                str(tmp),
                metadata={"tag": tag, "ids": json.dumps(ids)},
            )
        out.update(codes)
    return out


def oracle_units(items: list[ProbeItem], phones: dict[str, int]) -> Units:
    """The text ceiling's frame units: the phone (or silence) at each 10 ms frame centre, as ids into
    ``phones`` (grown as new symbols appear)."""
    units = Units(frame_rate=ORACLE_RATE)
    for item in items:
        n = int(round(item.seconds * ORACLE_RATE))
        labels = frame_labels(item.phones, n, ORACLE_RATE)
        ids = [phones.setdefault(p, len(phones)) for p in labels]
        units.codes[item.id] = np.asarray(ids, dtype=np.int64)[None]
    units.vocab_size = len(phones)
    return units


def phone_string_units(items: list[ProbeItem], phones: dict[str, int]) -> list[np.ndarray]:
    """The phone strings (silence left out) as id sequences ``[n_phones]``."""
    return [np.asarray([phones.setdefault(p, len(phones)) for p in it.phone_string.split()]) for it in items]


def phone_rate(items: list[ProbeItem]) -> float:
    """Phones (silence excluded) per second of audio over ``items``."""
    n = sum(1 for it in items for p in it.phones if p[0] != SILENCE)
    seconds = sum(it.seconds for it in items)
    return n / seconds if seconds else 0.0


def frame_synchronous(units: Units, items: list[ProbeItem]) -> str | None:
    """``None`` when every item has about ``seconds x frame_rate`` frames (one unit per frame, as the
    phone-alignment measures need), else the reason they cannot be computed (dedup, BPE)."""
    for item in items:
        expected = item.seconds * units.frame_rate
        got = units.codes[item.id].shape[-1]
        if abs(got - expected) > max(2.0, 0.05 * expected):
            return (
                f"units are not one per frame ({got} units for {item.seconds:.2f} s at "
                f"{units.frame_rate:g} Hz: dedup or BPE?): content measures need frame-synchronous units"
            )
    return None


# --------------------------------------------------------------------------------------- measures
def _estimate(value: float, low: float | None = None, high: float | None = None, n: int | None = None,
              **extra: Any) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"value": float(value)}
    if low is not None and high is not None:
        out.update(low=float(low), high=float(high))
    if n is not None:
        out["n"] = int(n)
    out.update(extra)
    return out


def _ci(result: dict[str, Any], key: str, n_key: str | None = None, **extra: Any) -> dict[str, Any]:
    ci = result.get("ci")
    low, high = ci if ci is not None else (None, None)
    n = result.get(n_key) if n_key else None
    return _estimate(result[key], low, high, n, **extra)


def _attempt(out: dict[str, Any], keys: tuple[str, ...], compute: Callable[[], dict[str, Any]]) -> None:
    """Add ``compute()``'s metrics to ``out``; on a one-measure failure record it under ``out["_errors"]``
    for each of ``keys`` (the other measures of the stage are kept)."""
    try:
        out.update(compute())
    except Exception as error:  # noqa: BLE001 - e.g. ABX over 16 kHz "units" refused for its cost
        out.setdefault("_errors", {}).update({k: _one_line(error) for k in keys})


def content_measures(units: Units, items: list[ProbeItem], settings: SuiteSettings) -> dict[str, Any]:
    """(A) purity, PNMI and ABX (within / across speakers) of codebook 0 against the phone alignment."""
    from slmtok.probes.measures.abx import abx_error
    from slmtok.probes.measures.content import phone_unit_stats

    reason = frame_synchronous(units, items)
    if reason:
        raise SlmtokError(reason)
    seqs = [units.first(it.id) for it in items]
    labels = [frame_labels(it.phones, len(s), units.frame_rate) for it, s in zip(items, seqs, strict=True)]
    stats = phone_unit_stats(seqs, labels)
    out = {k: _estimate(stats[k], n=stats["n_frames"]) for k in ("phone_purity", "cluster_purity", "pnmi")}
    # The plug-in PNMI is biased upwards when units are many for the frames counted (1024 codes over a
    # few minutes): the same units shuffled across frames measure that floor.
    pooled = np.random.default_rng(settings.seed).permutation(np.concatenate(seqs))
    shuffled = np.split(pooled, np.cumsum([len(x) for x in seqs])[:-1])
    floor = phone_unit_stats(shuffled, labels)
    out["pnmi_shuffled"] = _estimate(floor["pnmi"], n=floor["n_frames"])
    for mode in ("within", "across"):

        def abx(mode: str = mode) -> dict[str, Any]:
            result = abx_error(
                seqs,
                [it.phones for it in items],
                [it.speaker for it in items],
                units.frame_rate,
                mode=mode,
                max_triplets=settings.abx_max_triplets,
                seed=settings.seed,
            )
            if result.get("error") is None:
                raise SlmtokError(f"no ABX {mode} triplet in the content items")
            return {f"abx_{mode}": _ci(result, "error", "n_triplets")}

        _attempt(out, (f"abx_{mode}",), abx)
    return out


def length_measures(
    seqs: list[np.ndarray], seconds: list[float], bpe: Callable[[np.ndarray], np.ndarray] | None = None
) -> dict[str, Any]:
    """(B) units/s, after dedup, after BPE (``bpe``: unit ids -> BPE ids), entropy and entropy rates."""
    from slmtok.probes.measures.length import length_stats

    stats = length_stats(seqs, seconds, bpe=bpe)
    n = len(seqs)
    names = {
        "unit_rate": "tokens_per_second",
        "dedup_rate": "dedup_tokens_per_second",
        "bpe_rate": "bpe_tokens_per_second",
        "unigram_entropy": "unigram_entropy_bits",
        "entropy_rate": "entropy_rate_bits_per_second",
        "bigram_entropy_rate": "bigram_entropy_rate_bits_per_second",
    }
    return {key: _estimate(stats[name], n=n) for key, name in names.items() if stats.get(name) is not None}


def paralinguistic_measures(
    units: Units, content: list[ProbeItem], groups: dict[str, list[ProbeItem]], settings: SuiteSettings
) -> dict[str, Any]:
    """(C) speaker-ID accuracy (with its chance level) on the content items, invariance per variant."""
    from slmtok.probes.measures.invariance import invariance_stats
    from slmtok.probes.measures.speaker import speaker_id_accuracy

    out: dict[str, Any] = {}

    def speaker() -> dict[str, Any]:
        result = speaker_id_accuracy(
            [units.first(it.id) for it in content],
            [it.speaker for it in content],
            units.vocab_size,
            seed=settings.seed,
        )
        return {"speaker_id_accuracy": _ci(result, "accuracy", "n_items", chance=float(result["chance"]))}

    def variants() -> dict[str, Any]:
        by_item = {it.id: units.first(it.id) for members in groups.values() for it in members}
        found: dict[str, Any] = {}
        for variant, stats in invariance_stats(by_item, groups, seed=settings.seed).items():
            key = INVARIANCE_VARIANTS.get(variant)
            if key is not None:
                found[key] = _ci(stats, "distance", "n_groups")
        if found:
            mean = sum(v["value"] for v in found.values()) / len(found)
            found["invariance"] = _estimate(mean, n=len(groups))
        return found

    _attempt(out, ("speaker_id_accuracy",), speaker)
    if groups:
        _attempt(out, ("invariance",), variants)
    return out


def lm_measures(result: dict[str, Any]) -> dict[str, Any]:
    """LM fitness: ``slmtok.probes.lm_fitness``'s result -> suite metrics (the headline normalisation's
    pair accuracies with their bootstrap CI, validation bits/s); a pair set without an accuracy is
    recorded with its reason, and the whole result is kept under ``"_detail"``."""
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in ("lexical", "syntactic", "acoustic"):
        entry = result.get(name)
        if isinstance(entry, dict) and entry.get("accuracy") is not None:
            out[f"{name}_accuracy"] = _ci(entry, "accuracy", "n_pairs")
        else:
            why = entry.get("reason") if isinstance(entry, dict) else None
            errors[f"{name}_accuracy"] = why or f"no {name} pairs in the probe set"
    if result.get("valid_bits_per_second") is not None:
        out["valid_bits_per_second"] = _estimate(result["valid_bits_per_second"], n=result.get("valid_items"))
    if errors:
        out["_errors"] = errors
    out["_detail"] = {
        k: result.get(k)
        for k in ("headline", "valid_unigram_bits_per_second", "valid_nats_per_token", "model", "training",
                  "timings_seconds", "recipe", "pattern", "failed_items")
        if k in result
    }  # fmt: skip
    for name in ("lexical", "syntactic", "acoustic"):
        entry = result.get(name)
        if isinstance(entry, dict):
            out["_detail"][name] = {
                k: v for k, v in entry.items() if k in ("sum", "mean", "by_variant", "normalisation")
            }
    return out


def lm_job(job: tuple[Any, ...], probes: str, out: str, recipe: Any, device: str = "cpu") -> dict[str, Any]:
    """One LM-fitness stage, runnable in a worker process (everything it takes pickles): ``job`` is
    ``("tokenizer", name, load options)`` or ``("text",)`` for the text ceiling; returns the suite
    metrics (``lm_measures``)."""
    from slmtok.probes.lm_fitness import lm_fitness, text_ceiling

    if job[0] == "text":
        began = time.perf_counter()
        return {**lm_measures(text_ceiling(probes, out, recipe)), "_seconds": time.perf_counter() - began}
    import slmtok

    tok = slmtok.load(job[1], device=device, **job[2])
    began = time.perf_counter()
    return {**lm_measures(lm_fitness(tok, probes, out, recipe)), "_seconds": time.perf_counter() - began}


def _bpe_for(settings: SuiteSettings, card_hash: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The ``--bpe`` model fitted on codebook 0 of this tokenizer (same card hash), as a units -> BPE ids
    callable (deduplicating first when it was fitted on deduplicated units); ``None`` if none was."""
    if not settings.bpe:
        return None
    from slmtok.bpe import bpe_encode_units, load_bpe
    from slmtok.bpe.model import read_card

    for folder in settings.bpe:
        card = read_card(folder)
        if card["base"]["hash"] == card_hash and card["codebook"] == CODEBOOK:
            model = load_bpe(folder)
            return lambda units: bpe_encode_units(model, units)
    return None


# -------------------------------------------------------------------------------------------- run
class Suite:
    """One suite run into ``out``: ``Suite(probes, out, settings).run(specs)``."""

    def __init__(
        self,
        probes: ProbeSet | str | Path,
        out: str | Path,
        settings: SuiteSettings | None = None,
        *,
        device: str = "cpu",
        threads: int | None = None,
        jobs: int = 1,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.probes = probes if isinstance(probes, ProbeSet) else load_probes(probes)
        self.out, self.device, self.threads = Path(out), device, threads
        if jobs < 1:
            raise SlmtokError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self._pool: Any = None
        self._pending: list[tuple[str, str, Path, Any]] = []
        self.settings = settings or SuiteSettings()
        self.progress = progress or (lambda message: None)
        self.fingerprint = str(self.probes.header.get("fingerprint", ""))
        self.content = self.probes.by_set("content")
        self.groups = self.probes.groups()
        self.invariance_items = [it for members in self.groups.values() for it in members]
        if not self.content:
            raise SlmtokError(f"{self.probes.root}: no content items: rebuild it with slmtok probes build")

    def run(self, specs: list[TokenizerSpec]) -> dict[str, Any]:
        """Run every spec (and the text ceiling); write ``rows.jsonl`` and ``results.json``; return the
        summary. One run at a time per folder; a killed run's finished stages and encoded batches are
        reused."""
        if self.out.exists() and not self.out.is_dir():
            raise SlmtokError(f"results folder {self.out} is a file")
        self.out.mkdir(parents=True, exist_ok=True)
        with RunLock(self.out, "probes run"), torch_threads(self.threads):
            remove_orphans(self.out, recursive=True)
            if self.jobs == 1 or self.settings.skip_lm:
                return self._run(specs)
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # LM fitness (one torch thread per training) of several tokenizers at once, in fresh
            # processes; every other stage and all writing stay in this one.
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"))
            try:
                return self._run(specs)
            finally:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool, self._pending = None, []

    # ---------------------------------------------------------------------------------- journal
    def _row_key(self, tokenizer: str, card_hash: str, stage: str) -> str:
        return f"{tokenizer}|{card_hash}|{self.fingerprint}|{stage}|{self.settings.stage_hash(stage)}"

    def _stages(self) -> tuple[str, ...]:
        return tuple(s for s in STAGES if not (s == "lm_fitness" and self.settings.skip_lm))

    def _open_journal(self) -> tuple[dict[str, dict[str, Any]], Any]:
        path = self.out / JOURNAL
        journal_rows = read_jsonl(path)
        if path.exists() and not path.is_symlink():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                with atomic_path(path) as tmp:
                    tmp.write_text("".join(dumps_row(r) + "\n" for r in journal_rows), encoding="utf-8")
        rows = read_jsonl(self.out / ROWS) + journal_rows
        done = {r["key"]: r for r in rows if "key" in r and r.get("status") == "ok"}
        return done, open_append(path)

    def _run(self, specs: list[TokenizerSpec]) -> dict[str, Any]:
        import slmtok

        done, journal = self._open_journal()
        rows: list[dict[str, Any]] = []
        tokenizers: list[dict[str, Any]] = []

        def keep(row: dict[str, Any]) -> None:
            rows.append(row)
            if row["key"] not in done:
                journal.write(dumps_row(row) + "\n")
                journal.flush()

        try:
            for spec in specs:
                self.progress(f"loading {spec.key}")
                try:
                    tok = slmtok.load(spec.name, device=self.device, **spec.options)
                except Exception as error:  # noqa: BLE001 - listed as unavailable, with the reason
                    tokenizers.append(
                        {"key": spec.key, "name": spec.name, "options": spec.options,
                         "status": "unavailable", "reason": _one_line(error)}
                    )  # fmt: skip
                    self.progress(f"{spec.key}: unavailable ({_one_line(error)})")
                    continue
                tokenizers.append(self._describe(spec, tok))
                self._tokenizer_rows(spec, tok, done, keep)
                del tok
            if self.settings.text_ceiling:
                tokenizers.append(
                    {"key": TEXT_CEILING, "name": TEXT_CEILING, "kind": "reference", "status": "ok",
                     "options": {}, "card_hash": "phones"}
                )  # fmt: skip
                self._text_ceiling_rows(done, keep)
            for tokenizer, card_hash, work, future in self._pending:
                self._stage(tokenizer, card_hash, "lm_fitness", done, keep, future.result)
                self._cleanup(tokenizer, card_hash, work, done)
        finally:
            journal.close()
        summary = self._summary(rows, tokenizers)
        write_rows(self.out, rows)
        write_summary(self.out, summary)
        (self.out / JOURNAL).unlink(missing_ok=True)
        if (self.out / WORK).is_dir() and not any((self.out / WORK).iterdir()):
            (self.out / WORK).rmdir()  # every tokenizer finished: no codes left to resume from
        return summary

    def _cleanup(self, tokenizer: str, card_hash: str, work: Path, done) -> None:
        """Remove a tokenizer's work folder (its codes, its LM run) once every stage of it is done."""
        if all(self._row_key(tokenizer, card_hash, s) in done for s in self._stages()):
            shutil.rmtree(work, ignore_errors=True)

    def _lm(self, tokenizer: str, card_hash: str, work: Path, job: tuple, done, keep, compute) -> None:
        """The LM-fitness stage: here (``compute``), or in a worker process when ``jobs`` > 1 (its row
        is journalled when it finishes, after the other tokenizers' measures)."""
        key = self._row_key(tokenizer, card_hash, "lm_fitness")
        if self._pool is None or key in done:
            self._stage(tokenizer, card_hash, "lm_fitness", done, keep, compute)
            self._cleanup(tokenizer, card_hash, work, done)
            return
        self.progress(f"{tokenizer}: lm_fitness started in a worker process")
        future = self._pool.submit(
            lm_job, job, str(self.probes.root), str(work / "lm"), self.settings.lm_recipe(), self.device
        )
        self._pending.append((tokenizer, card_hash, work, future))

    def _stage(self, tokenizer: str, card_hash: str, stage: str, done, keep, compute) -> bool:
        """Run one stage unless done; journal its row (a finished one joins ``done``); True when it is
        (now) done."""
        key = self._row_key(tokenizer, card_hash, stage)
        if key in done:
            keep(done[key])
            return True
        self.progress(f"{tokenizer}: {stage}")
        row: dict[str, Any] = {"key": key, "tokenizer": tokenizer, "stage": stage, "file": stage}
        start, seconds = time.perf_counter(), None
        try:
            metrics = compute()
            seconds = metrics.pop("_seconds", None)  # a worker's own compute time (not the wait for it)
            detail = metrics.pop("_detail", None)
            row.update(status="ok", metric_errors=metrics.pop("_errors", {}), metrics=metrics)
            if detail is not None:
                row["detail"] = detail
        except Exception as error:  # noqa: BLE001 - one failed stage is a row with its reason
            row.update(status="error", error=_one_line(error), metrics={})
            self.progress(f"{tokenizer}: {stage} failed ({_one_line(error)})")
        row["compute_seconds"] = time.perf_counter() - start
        if row["status"] == "ok" and seconds is not None:
            row["compute_seconds"] = seconds
        keep(row)
        if row["status"] == "ok":
            done[key] = row
        return row["status"] == "ok"

    def _tokenizer_rows(self, spec: TokenizerSpec, tok, done, keep) -> None:
        card = tok.card
        work = self.out / WORK / _slug(spec.key)
        cache: dict[str, Units] = {}

        def units() -> Units:
            if "u" not in cache:
                tag = f"{card.hash}|{self.fingerprint}"
                codes = encode_items(
                    tok, self.probes, self.content + self.invariance_items, work / "codes", tag=tag,
                    batch_seconds=self.settings.batch_seconds, max_batch=self.settings.max_batch,
                    progress=lambda m: self.progress(f"{spec.key}: {m}"),
                )  # fmt: skip
                cache["u"] = Units(codes, float(card.frame_rate), int(tok.max_codebook_sizes[CODEBOOK]))
            return cache["u"]

        def lm() -> dict[str, Any]:
            from slmtok.probes.lm_fitness import lm_fitness

            return lm_measures(
                lm_fitness(
                    tok, self.probes, work / "lm", self.settings.lm_recipe(),
                    log=lambda m: self.progress(f"{spec.key}: {m}"),
                )
            )  # fmt: skip

        computes = {
            "content": lambda: content_measures(units(), self.content, self.settings),
            "length": lambda: length_measures(
                [units().first(it.id) for it in self.content],
                [it.seconds for it in self.content],
                _bpe_for(self.settings, card.hash),
            ),
            "paralinguistics": lambda: paralinguistic_measures(
                units(), self.content, self.groups, self.settings
            ),
            "lm_fitness": lm,
        }
        for stage in self._stages():
            if stage == "lm_fitness":
                job = ("tokenizer", spec.name, spec.options)
                self._lm(spec.key, card.hash, work, job, done, keep, computes[stage])
            else:
                self._stage(spec.key, card.hash, stage, done, keep, computes[stage])
        self._cleanup(spec.key, card.hash, work, done)

    def _text_ceiling_rows(self, done, keep) -> None:
        phones: dict[str, int] = {SILENCE: 0}
        items = self.content + self.invariance_items
        for it in items:  # a fixed phone inventory, independent of which stage runs
            for p in it.phones:
                phones.setdefault(p[0], len(phones))
        oracle = oracle_units(items, phones)

        def lm() -> dict[str, Any]:
            from slmtok.probes.lm_fitness import text_ceiling

            return lm_measures(
                text_ceiling(
                    self.probes, self.out / WORK / TEXT_CEILING / "lm", self.settings.lm_recipe(),
                    log=lambda m: self.progress(f"{TEXT_CEILING}: {m}"),
                )
            )  # fmt: skip

        computes = {
            "content": lambda: content_measures(oracle, self.content, self.settings),
            "length": lambda: length_measures(
                phone_string_units(self.content, dict(phones)), [it.seconds for it in self.content]
            ),
            "paralinguistics": lambda: paralinguistic_measures(
                oracle, self.content, self.groups, self.settings
            ),
            "lm_fitness": lm,
        }
        work = self.out / WORK / TEXT_CEILING
        for stage in self._stages():
            if stage == "lm_fitness":
                self._lm(TEXT_CEILING, "phones", work, ("text",), done, keep, computes[stage])
            else:
                self._stage(TEXT_CEILING, "phones", stage, done, keep, computes[stage])
        self._cleanup(TEXT_CEILING, "phones", work, done)

    # ---------------------------------------------------------------------------------- summary
    def _describe(self, spec: TokenizerSpec, tok) -> dict[str, Any]:
        from slmtok.metrics.cost import count_parameters, device_name

        card = tok.card
        return {
            "key": spec.key,
            "name": spec.name,
            "options": spec.options,
            "status": "ok",
            "kind": card.kind,
            "card": card.to_dict(),
            "card_hash": card.hash,
            "sample_rate": card.sample_rate,
            "frame_rate": card.frame_rate,
            "codebook_sizes": list(card.codebook_sizes),
            "bitrate": card.bitrate,
            "parameters": count_parameters(tok),
            "device": device_name(self.device),
        }

    def _summary(self, rows: list[dict[str, Any]], tokenizers: list[dict[str, Any]]) -> dict[str, Any]:
        from slmtok.metrics.cost import device_name

        header = self.probes.header
        rate = phone_rate(self.content)
        content_seconds = sum(it.seconds for it in self.content)
        aggregates = []
        for t in tokenizers:
            if t.get("status") != "ok":
                continue
            mine = [r for r in rows if r["tokenizer"] == t["key"]]
            metrics: dict[str, Any] = {}
            not_measured: dict[str, str] = {}
            for r in mine:
                metrics.update(r.get("metrics") or {})
                not_measured.update(r.get("metric_errors") or {})
            if t.get("bitrate") is not None:
                metrics["bitrate"] = {"value": float(t["bitrate"]), "n": len(self.content)}
            metrics.update({k: {"value": v} for k, v in factor_scores(metrics, rate).items()})
            failed = [r for r in mine if r.get("status") != "ok"]
            aggregates.append(
                {
                    "tokenizer": t["key"],
                    "subset": SUBSET,
                    "files": len(mine) - len(failed),
                    "failed": len(failed),
                    "errors": [
                        {"file": r["stage"], "error": r.get("error", "unknown error")} for r in failed
                    ],
                    "seconds": content_seconds,
                    "stages": {r["stage"]: r.get("status") for r in mine},
                    "not_measured": not_measured,
                    "metrics": metrics,
                }
            )
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "suite": SUITE_SLM,
            "label": "synthetic",
            "environment": environment(device_name(self.device)),
            "settings": {
                **self.settings.to_dict(),
                "device": self.device,
                "threads": self.threads,
                "jobs": self.jobs,
            },
            "probes": {
                "path": str(self.probes.root),
                "fingerprint": self.fingerprint,
                "seed": header.get("seed"),
                "version": header.get("version"),
                "sets": header.get("sets", {}),
                "voices": len(header.get("voices", [])),
                "espeak_ng": header.get("espeak_ng"),
                "phone_rate": rate,
            },
            "corpus": {
                "files": len(self.content),
                "subsets": [SUBSET],
                "seconds": {SUBSET: content_seconds},
                "fingerprint": self.fingerprint,
            },
            "stages": list(self._stages()),
            "tokenizers": tokenizers,
            "aggregates": aggregates,
        }
