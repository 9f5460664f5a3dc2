"""Run a corpus plan on an engine (``local``: this process; ``ray``: Ray Data actors) and finish it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmtok.atomic import atomic_path
from slmtok.corpus.plan import Plan, load_plan, make_plan, save_plan
from slmtok.corpus.shard import ShardResult, encode_shard, read_shard_header, shard_path
from slmtok.errors import SlmtokError

ENGINES = ("local", "ray")


def encode_corpus(
    inputs: list[str],
    out: str | Path,
    *,
    tokenizer: str = "mel-rvq",
    options: dict[str, Any] | None = None,
    engine: str = "local",
    n_codebooks: int | None = None,
    shard_size: int = 256,
    batch_seconds: float = 120.0,
    workers: int = 2,
    device: str = "cpu",
    ray_address: str | None = None,
    actors: int | None = None,
    progress: Callable[[ShardResult, Plan], None] | None = None,
) -> dict[str, Any]:
    """Encode every input into sharded token files under ``out``; resume if ``out`` holds a run.

    Args:
        inputs: audio files, folders and TSV/JSONL manifests (see ``slmtok.cli.inputs``).
        shard_size: inputs per shard (the unit of work, atomic writes and resumption).
        batch_seconds: padded audio seconds per model batch (length-sorted dynamic batching).
        workers: reader threads that decode and resample audio ahead of the model.
        engine: ``"local"`` or ``"ray"`` (one tokenizer actor per GPU, or ``actors`` CPU actors).

    Returns:
        The summary written to ``out/summary.json``.
    """
    import slmtok

    if engine not in ENGINES:
        raise SlmtokError(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")
    out = Path(out)
    options = dict(options or {})
    tok = slmtok.load(tokenizer, device=device, **options)
    plan = _resume_or_plan(out, inputs, tok, tokenizer, options, n_codebooks, shard_size)
    start = time.perf_counter()
    todo = [i for i in range(len(plan.shards)) if not shard_path(out, i).exists()]
    settings = {"n_codebooks": n_codebooks, "batch_seconds": batch_seconds, "workers": workers}
    if engine == "local":
        results = []
        for i in todo:
            results.append(encode_shard(tok, plan.shards[i], i, out, **settings))
            if progress is not None:
                progress(results[-1], plan)
    else:
        from slmtok.corpus.ray_engine import run_on_ray

        results = run_on_ray(
            plan, todo, out, tokenizer, options, device, settings, ray_address, actors, progress
        )
    return finish(out, plan, results, time.perf_counter() - start, engine)


def _resume_or_plan(out: Path, inputs, tok, tokenizer, options, n_codebooks, shard_size) -> Plan:
    existing = load_plan(out)
    if existing is None:
        if out.exists() and any(out.iterdir()):
            raise SlmtokError(f"{out} is not empty and holds no corpus run: choose a new output folder")
        plan = make_plan(
            inputs,
            tokenizer=tokenizer,
            options=tok.load_options,
            card_hash=tok.card.hash,
            n_codebooks=n_codebooks,
            shard_size=shard_size,
        )
        if plan.n_items == 0:
            raise SlmtokError("no inputs to encode")
        out.mkdir(parents=True, exist_ok=True)
        save_plan(out, plan)
        return plan
    want = (tokenizer, tok.load_options, tok.card.hash, n_codebooks)
    have = (existing.tokenizer, existing.options, existing.card_hash, existing.n_codebooks)
    if want != have:
        raise SlmtokError(
            f"{out} holds a run of {existing.tokenizer} {existing.options} (K={existing.n_codebooks}); "
            "resume it with the same tokenizer and options, or choose a new output folder"
        )
    from slmtok.cli.inputs import collect

    ids = sorted(i.name.as_posix() for i in collect(inputs))
    if ids != sorted(item.id for shard in existing.shards for item in shard):
        raise SlmtokError(f"{out} holds a run over other inputs; choose a new output folder")
    return existing


def finish(out: Path, plan: Plan, results: list[ShardResult], elapsed: float, engine: str) -> dict[str, Any]:
    """Check every shard, then write ``index.jsonl``, ``failures.jsonl`` and ``summary.json`` atomically."""
    rows, failures = [], []
    for i in range(len(plan.shards)):
        path = shard_path(out, i)
        if not path.exists():
            raise SlmtokError(f"shard {i} is missing: run the same command again to finish")
        header = read_shard_header(path)
        for item in header["items"]:
            rows.append({**item, "shard": str(path.relative_to(out))})
        failures += [{**f, "shard": str(path.relative_to(out))} for f in header["failures"]]
    planned = {item.id for shard in plan.shards for item in shard}
    done = [r["id"] for r in rows] + [f["id"] for f in failures]
    if len(done) != len(set(done)) or set(done) != planned:
        raise SlmtokError(f"corpus run in {out} is inconsistent: inputs missing or duplicated across shards")
    _write_jsonl(out / "index.jsonl", rows)
    _write_jsonl(out / "failures.jsonl", failures)
    new = [r for r in results if not r.skipped]
    audio_new = sum(r.audio_seconds for r in new)
    summary = {
        "tokenizer": plan.tokenizer,
        "options": plan.options,
        "card_hash": plan.card_hash,
        "engine": engine,
        "inputs": plan.n_items,
        "encoded": len(rows),
        "failures": len(failures),
        "shards": len(plan.shards),
        "shards_this_run": len(new),
        "audio_seconds": sum(r["duration"] for r in rows),
        "audio_seconds_this_run": audio_new,
        "seconds_this_run": elapsed,
        "audio_seconds_per_second": audio_new / elapsed if elapsed > 0 else None,
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
