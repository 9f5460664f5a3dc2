"""Run the bench: every tokenizer on every corpus file, scored against the original, resumably.

For each tokenizer (``NAME`` or a shell pattern, optionally ``:key=value,...`` load options):
load it (a failure, e.g. weights that cannot be downloaded, lists it as unavailable with the reason),
then per file: read, encode, decode (timed, peak memory measured), resample the original and the
resynthesis to the evaluation rate (mono), and score. Each finished row is appended to a journal
(``rows.partial.jsonl``); a rerun with the same output folder skips rows already done with the same
tokenizer hash, file and settings. Codes are re-encoded for skipped rows (cheap) so corpus-level
codebook statistics stay complete.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slmtok.atomic import atomic_path, open_append, remove_orphans
from slmtok.leaderboard.corpus import CorpusItem, corpus_fingerprint
from slmtok.leaderboard.results import (
    ORIGINAL,
    ROWS,
    SCHEMA,
    VERSION,
    aggregate,
    dumps_row,
    environment,
    read_jsonl,
    write_rows,
    write_summary,
)
from slmtok.leaderboard.scoring import Scorer, ScoreSettings
from slmtok.metrics import rates
from slmtok.metrics.cost import PeakMemory, Timer, count_parameters, device_name
from slmtok.metrics.signal import resample_to
from slmtok.runlock import RunLock

JOURNAL = "rows.partial.jsonl"
AUDIO_CACHE = 64  # files


@dataclass(frozen=True)
class TokenizerSpec:
    """A tokenizer to bench: registry ``name``, load ``options``, and the ``key`` naming its rows."""

    key: str
    name: str
    options: dict[str, Any]


def parse_specs(patterns: list[str], registered: list[str]) -> list[TokenizerSpec]:
    """``PATTERN[:key=value,...]`` -> specs, in order, without duplicates. A pattern matching no
    registered name is kept as a name (so that loading it reports why it is unknown)."""
    specs: list[TokenizerSpec] = []
    for text in patterns:
        pattern, _, raw = text.partition(":")
        options: dict[str, Any] = {}
        for part in filter(None, raw.split(",")):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise ValueError(f"tokenizer option {part!r} in {text!r} must be KEY=VALUE")
            try:
                options[key.replace("-", "_")] = json.loads(value)
            except json.JSONDecodeError:
                options[key.replace("-", "_")] = value
        names = [n for n in registered if fnmatch.fnmatchcase(n, pattern)] or [pattern]
        suffix = ",".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in options.items())
        for name in names:
            key = f"{name}:{suffix}" if suffix else name
            if all(s.key != key for s in specs):
                specs.append(TokenizerSpec(key, name, options))
    return specs


def _one_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}".strip().rstrip(":")


def _mono_at(wav: torch.Tensor, rate: int, target: int) -> np.ndarray:
    return resample_to(wav.double().mean(dim=0).numpy(), rate, target)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


class Bench:
    """One bench run into ``out``: call ``run(specs)``; ``progress(message)`` gets one line per step."""

    def __init__(
        self,
        items: list[CorpusItem],
        out: Path,
        settings: ScoreSettings | None = None,
        *,
        device: str = "cpu",
        examples: int = 2,
        example_seconds: float = 4.0,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.items, self.out, self.device = items, Path(out), device
        self.settings = settings or ScoreSettings()
        self.examples, self.example_seconds = examples, example_seconds
        self.progress = progress or (lambda message: None)
        key = json.dumps(self.settings.to_dict(), sort_keys=True)
        self.settings_hash = hashlib.sha256(key.encode()).hexdigest()[:16]
        self._audio: dict[str, tuple[torch.Tensor, int]] = {}
        self._example_files = {
            it.id for subset in dict.fromkeys(i.subset for i in items)
            for it in [i for i in items if i.subset == subset][:examples]
        }  # fmt: skip

    # ------------------------------------------------------------------------------------- inputs
    def _read(self, item: CorpusItem) -> tuple[torch.Tensor, int]:
        """The file's audio ``[C, T]`` and rate; the last few files are kept (each tokenizer reads them all)."""
        if item.id not in self._audio:
            from slmtok.encoding import read_input

            if len(self._audio) >= AUDIO_CACHE:
                self._audio.pop(next(iter(self._audio)))
            self._audio[item.id] = read_input(
                item.path, item.source, start=item.start, duration=item.duration
            )
        return self._audio[item.id]

    def _row_key(self, tokenizer: str, card_hash: str, item: CorpusItem) -> str:
        """What a finished row depends on: tokenizer and weights, file (id, segment, size), settings."""
        size = item.path.stat().st_size if item.path.exists() else -1
        segment = f"{item.start:g}+{item.duration:g}" if item.duration is not None else f"{item.start:g}"
        return f"{tokenizer}|{card_hash}|{item.id}|{segment}|{size}|{self.settings_hash}"

    def _example(self, item: CorpusItem, key: str, wav: np.ndarray) -> str | None:
        if item.id not in self._example_files:
            return None
        from slmtok.audio import write_audio

        rel = Path("examples") / _slug(item.id) / f"{_slug(key)}.ogg"
        (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
        n = int(self.example_seconds * self.settings.eval_rate)
        clip = torch.from_numpy(np.clip(wav[:n], -1, 1)).float()[None]
        write_audio(self.out / rel, clip, self.settings.eval_rate)
        return rel.as_posix()

    # ---------------------------------------------------------------------------------------- run
    def run(self, specs: list[TokenizerSpec]) -> dict[str, Any]:
        """Bench every spec; write ``rows.jsonl`` and ``results.json``; return the summary.

        One run at a time per folder (a second is refused while the first holds its lock); temporary
        files of a killed run are removed and its journalled rows reused, each exactly once."""
        self.out.mkdir(parents=True, exist_ok=True)
        with RunLock(self.out, "bench"):
            remove_orphans(self.out, recursive=True)
            return self._run(specs)

    def _open_journal(self) -> tuple[dict[str, dict[str, Any]], Any]:
        """Rows already finished (``rows.jsonl`` and the journal of a killed run) by key, and the journal
        opened for appending. A last line torn by a kill is cut off first: appended rows would otherwise
        glue onto it and be lost. A symlink at the journal's path is refused, not followed."""
        path = self.out / JOURNAL
        journal_rows = read_jsonl(path)
        if path.exists() and not path.is_symlink():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                with atomic_path(path) as tmp:
                    tmp.write_text("".join(dumps_row(r) + "\n" for r in journal_rows), encoding="utf-8")
        done = {r["key"]: r for r in read_jsonl(self.out / ROWS) + journal_rows if "key" in r}
        return done, open_append(path)

    def _run(self, specs: list[TokenizerSpec]) -> dict[str, Any]:
        import slmtok

        done, journal = self._open_journal()
        scorer = Scorer(self.settings, self.device)
        for group, status in scorer.status.items():
            self.progress(f"metric back-end {group}: " + ("ok" if status.available else status.reason))
        rows: list[dict[str, Any]] = []
        tokenizers: dict[str, dict[str, Any]] = {}
        code_stats: dict[str, dict[str, dict[str, Any]]] = {}
        rate = self.settings.eval_rate

        def keep(row: dict[str, Any]) -> None:
            rows.append(row)
            if row["key"] not in done:
                journal.write(dumps_row(row) + "\n")
                journal.flush()

        try:
            tokenizers[ORIGINAL] = {"key": ORIGINAL, "name": ORIGINAL, "kind": "reference", "status": "ok"}
            for number, item in enumerate(self.items, 1):
                self.progress(f"{ORIGINAL}: {number}/{len(self.items)} {item.id}")
                key = self._row_key(ORIGINAL, "", item)
                if key in done:
                    keep(done[key])
                    continue
                wav, sr = self._read(item)
                reference = _mono_at(wav, sr, rate)
                row = self._base_row(key, ORIGINAL, item, wav, sr)
                row.update(scorer.score_original(item.id, reference, item.text))
                row["example"] = self._example(item, ORIGINAL, reference)
                keep(row)
            for spec in specs:
                self.progress(f"loading {spec.key}")
                try:
                    tok = slmtok.load(spec.name, device=self.device, **spec.options)
                except Exception as error:  # noqa: BLE001 - listed as unavailable, with the reason
                    tokenizers[spec.key] = {
                        "key": spec.key, "name": spec.name, "options": spec.options,
                        "status": "unavailable", "reason": _one_line(error),
                    }  # fmt: skip
                    self.progress(f"{spec.key}: unavailable ({_one_line(error)})")
                    continue
                tokenizers[spec.key] = self._describe(spec, tok)
                histograms: dict[str, list[torch.Tensor] | None] = {}
                seconds: dict[str, float] = {}
                for number, item in enumerate(self.items, 1):
                    self.progress(f"{spec.key}: {number}/{len(self.items)} {item.id}")
                    row = self._bench_file(spec, tok, item, scorer, done, histograms, seconds)
                    if row.get("status") != "ok":
                        self.progress(f"{spec.key}: {item.id} failed ({row.get('error', 'unknown error')})")
                    keep(row)
                code_stats[spec.key] = {
                    subset: rates.codebook_stats(h, seconds[subset]) for subset, h in histograms.items() if h
                }
                all_h = None
                for h in histograms.values():
                    if h:
                        all_h = rates.add_histograms(all_h, h)
                if all_h:
                    code_stats[spec.key]["all"] = rates.codebook_stats(all_h, sum(seconds.values()))
                del tok
        finally:
            journal.close()
        summary = {
            "schema": SCHEMA,
            "version": VERSION,
            "environment": environment(device_name(self.device)),
            "settings": {
                **self.settings.to_dict(),
                "device": self.device,
                "settings_hash": self.settings_hash,
            },
            "corpus": {
                "files": len(self.items),
                "subsets": sorted({i.subset for i in self.items}),
                "seconds": {
                    s: sum(r["seconds"] for r in rows if r["tokenizer"] == ORIGINAL and r["subset"] == s)
                    for s in sorted({i.subset for i in self.items})
                },
                "fingerprint": corpus_fingerprint(self.items),
            },  # fmt: skip
            "backends": {g: s.to_dict() for g, s in scorer.status.items()},
            "tokenizers": list(tokenizers.values()),
            "codebook_stats": code_stats,
            "aggregates": aggregate(rows, tokenizers, code_stats),
        }
        write_rows(self.out, rows)
        write_summary(self.out, summary)
        (self.out / JOURNAL).unlink(missing_ok=True)
        return summary

    def _describe(self, spec: TokenizerSpec, tok) -> dict[str, Any]:
        card = tok.card
        return {
            "key": spec.key,
            "name": spec.name,
            "options": spec.options,
            "status": "ok",
            "kind": card.kind,
            "card": card.to_dict(),
            "card_hash": card.hash,
            "decoder_hash": getattr(tok, "decoder_hash", None),
            "sample_rate": card.sample_rate,
            "frame_rate": card.frame_rate,
            "codebook_sizes": list(card.codebook_sizes),
            "bitrate": card.bitrate,
            "parameters": count_parameters(tok),
            "device": device_name(self.device),
        }

    def _base_row(self, key: str, tokenizer: str, item: CorpusItem, wav: torch.Tensor, sr: int) -> dict:
        return {
            "key": key,
            "tokenizer": tokenizer,
            "file": item.id,
            "subset": item.subset,
            "seconds": wav.shape[-1] / sr,
            "input_rate": sr,
            "eval_rate": self.settings.eval_rate,
            "status": "ok",
        }

    def _bench_file(self, spec, tok, item, scorer, done, histograms, seconds) -> dict[str, Any]:
        wav, sr = self._read(item)
        key = self._row_key(spec.key, _identity(tok), item)
        sizes = list(tok.max_codebook_sizes)
        try:
            with Timer(self.device) as t_enc, PeakMemory(self.device) as m_enc:
                tokens = tok.encode(wav, sr)
        except Exception as error:  # noqa: BLE001 - one bad file is a row with its reason
            return {
                **self._base_row(key, spec.key, item, wav, sr),
                "status": "error",
                "error": _one_line(error),
            }
        duration = wav.shape[-1] / sr
        hist = rates.code_histograms(tokens, sizes)
        histograms[item.subset] = rates.add_histograms(histograms.get(item.subset), hist)
        seconds[item.subset] = seconds.get(item.subset, 0.0) + duration
        if key in done:
            return done[key]
        row = self._base_row(key, spec.key, item, wav, sr)
        k = tokens.n_codebooks
        row.update(
            n_codebooks=k,
            frames=int(tokens.lengths.sum()),
            tokens=int(tokens.lengths.sum()) * k,
            bits=sum(int(tokens.lengths.sum()) * math.log2(s) for s in sizes[:k]),
            bits_dedup=rates.effective_bitrate(tokens, sizes[:k], duration) * duration,
            encode_seconds=t_enc.seconds,
            encode_peak_bytes=m_enc.peak_bytes,
            card_hash=tok.card.hash,
        )
        try:
            with Timer(self.device) as t_dec, PeakMemory(self.device) as m_dec:
                audio = tok.decode(tokens)
        except Exception as error:  # noqa: BLE001
            return {**row, "status": "error", "error": _one_line(error)}
        row.update(
            decode_seconds=t_dec.seconds,
            decode_peak_bytes=m_dec.peak_bytes,
            peak_bytes=max(m_enc.peak_bytes, m_dec.peak_bytes),
        )
        reference = _mono_at(wav, sr, self.settings.eval_rate)
        estimate = _mono_at(audio.item(0), audio.sample_rate, self.settings.eval_rate)
        row.update(scorer.score(item.id, reference, estimate, item.text))
        row["example"] = self._example(item, spec.key, estimate)
        return row


def _identity(tok) -> str:
    """What a cached row was made with: the card hash (the tokens' meaning) plus, for tokenizers whose
    decoder can change without changing the tokens (``mel-rvq``'s neural decoder), the decoder's hash."""
    decoder = getattr(tok, "decoder_hash", None)
    return f"{tok.card.hash}+{decoder}" if decoder else tok.card.hash
