"""Run a corpus plan on an engine (``local``: this process; ``ray``: Ray Data actors) and finish it."""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmtok.atomic import TMP_SUFFIX, atomic_path, remove_orphans
from slmtok.corpus.plan import (
    Plan,
    as_items,
    describe_request,
    is_relative,
    load_plan_and_request,
    made_absolute,
    make_plan,
    recorded_cwd,
    request_changes,
    resized,
    save_plan,
)
from slmtok.corpus.shard import (
    ShardResult,
    check_shard,
    encode_shard,
    read_shard_header,
    readable,
    shard_path,
)
from slmtok.errors import SlmtokError
from slmtok.provenance import PATH_OPTIONS
from slmtok.runlock import LOCK_NAME, RunLock

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
    warn: Callable[[str], None] | None = None,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Encode every input into sharded token files under ``out``; resume if ``out`` holds a run.

    Args:
        inputs: audio files, folders and TSV/JSONL manifests (see ``slmtok.inputs``).
        shard_size: inputs per shard (the unit of work, atomic writes and resumption).
        batch_seconds: padded audio seconds per model batch (length-sorted dynamic batching).
        workers: reader threads that decode and resample audio ahead of the model.
        engine: ``"local"`` or ``"ray"`` (one tokenizer actor per GPU, or ``actors`` CPU actors).
        warn: where one-line warnings go (a damaged shard encoded again); default ``warnings.warn``.
        retry_failed: on a restart, encode again every shard with failures. Without it, a shard is
            encoded again when an input that could not be read can be read now.

    One run at a time per output folder: a second one is refused while the first holds the folder's
    lock. A restart checks that the command asks for what the run was started with (tokenizer, options,
    weights, K, shard size, inputs), removes the temporary files of a killed run, and encodes again every
    shard that is missing, truncated or damaged. Paths are stored absolute, so a run resumes from any
    working directory; local weights files (``checkpoint=`` ...) are compared by sha256.

    Returns:
        The summary written to ``out/summary.json``.
    """
    import slmtok

    if engine not in ENGINES:
        raise SlmtokError(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    out = Path(out)
    options = _absolute_paths(dict(options or {}))
    tok = slmtok.load(tokenizer, device=device, **options)
    inputs = as_items(inputs)  # the corpus is walked once; the request and the plan share the items
    request = describe_request(
        inputs,
        tokenizer=tokenizer,
        options=tok.load_options,
        card_hash=tok.card.hash,
        n_codebooks=n_codebooks,
        shard_size=shard_size,
    )
    _check_new_folder(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(out, "encode-corpus"):
            remove_orphans(out, recursive=True)
            plan = _resume_or_plan(out, inputs, tok, tokenizer, n_codebooks, shard_size, request)
            created = False
            settings = {"n_codebooks": n_codebooks, "batch_seconds": batch_seconds, "workers": workers}
            return _run(out, plan, tok, tokenizer, options, engine, device, ray_address, actors, progress,
                        warn, settings, retry_failed)  # fmt: skip
    finally:
        if created:  # planning failed in a folder this call made: leave nothing behind
            (out / LOCK_NAME).unlink(missing_ok=True)
            _rmdir_if_empty(out)


def _absolute_paths(options: dict[str, Any]) -> dict[str, Any]:
    """Load options with local weights paths made absolute (Ray actors may run elsewhere)."""
    for key in PATH_OPTIONS:
        value = options.get(key)
        if isinstance(value, (str, os.PathLike)) and str(value) and os.path.exists(value):
            options[key] = os.path.abspath(value)
    return options


def _retry(out: Path, index: int, items, retry_failed: bool) -> str | None:
    """Why shard ``index`` (complete) is encoded again, or ``None``: it has failures and
    ``retry_failed``, or an input it could not read is readable now."""
    failures = read_shard_header(shard_path(out, index))["failures"]
    if not failures:
        return None
    if retry_failed:
        return f"{len(failures)} failed input(s), --retry-failed"
    by_id = {item.id: item for item in items}
    now = [f["id"] for f in failures if f.get("stage", "read") == "read" and readable(by_id[f["id"]])]
    return f"{len(now)} input(s) that failed to read are readable now" if now else None


def _run(
    out, plan, tok, tokenizer, options, engine, device, ray_address, actors, progress, warn, settings, retry
):
    start = time.perf_counter()
    todo, force = [], []
    for i, items in enumerate(plan.shards):
        path = shard_path(out, i)
        if not path.exists():
            todo.append(i)
        elif (problem := check_shard(path, items)) is not None:
            warn(f"shard {i} ({path.relative_to(out)}) is damaged: {problem}; encoding it again")
            todo.append(i)
        elif (why := _retry(out, i, items, retry)) is not None:
            warn(f"shard {i} ({path.relative_to(out)}): {why}; encoding it again")
            todo.append(i)
            force.append(i)
    if engine == "local":
        results = []
        for i in todo:
            results.append(encode_shard(tok, plan.shards[i], i, out, force=i in force, **settings))
            if progress is not None:
                progress(results[-1], plan)
    else:
        from slmtok.corpus.ray_engine import run_on_ray

        results = run_on_ray(
            plan, todo, out, tokenizer, options, device, settings, ray_address, actors, progress, force
        )
    return finish(out, plan, results, time.perf_counter() - start, engine)


def _is_bookkeeping(name: str) -> bool:
    """Files a run may leave in a folder before its plan exists: the lock and temporary files."""
    return name == LOCK_NAME or name.endswith(TMP_SUFFIX)


def _check_new_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SlmtokError(f"--output {out} is a file; name a folder")
    fresh = out.exists() and not (out / "plan.json").exists()
    if fresh and any(not _is_bookkeeping(entry.name) for entry in os.scandir(out)):
        raise SlmtokError(f"{out} is not empty and holds no corpus run: choose a new output folder")


def _rmdir_if_empty(out: Path) -> None:
    with contextlib.suppress(OSError):
        out.rmdir()


def _resume_or_plan(out: Path, inputs, tok, tokenizer, n_codebooks, shard_size, request) -> Plan:
    existing, recorded = load_plan_and_request(out)
    if existing is not None and is_relative(existing):
        return _resume_relative(out, existing, recorded, inputs, tok, tokenizer, n_codebooks, shard_size)
    if existing is None:
        _check_new_folder(out)  # again, under the lock
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
        save_plan(out, plan, request)
        return plan
    if recorded is not None:
        changes = request_changes(recorded, request)
        if changes and _failed_files_changed(out, existing, recorded, request):
            save_plan(out, existing, request)  # only inputs that failed changed: they are retried
            changes = []
        if changes:
            raise SlmtokError(
                f"{out} holds a run started with other settings ({'; '.join(changes)}): rerun the same "
                "command to resume it, or choose a new output folder"
            )
        return existing
    want = (tokenizer, tok.load_options, tok.card.hash, n_codebooks)
    have = (existing.tokenizer, existing.options, existing.card_hash, existing.n_codebooks)
    if want != have:
        raise SlmtokError(
            f"{out} holds a run of {existing.tokenizer}"
            + (f" with options {existing.options}" if existing.options else "")
            + (f", {existing.n_codebooks} codebooks" if existing.n_codebooks else "")
            + "; resume it with the same tokenizer and options, or choose a new output folder"
        )
    ids = sorted(item["id"] for item in request["items"])
    if ids != sorted(item.id for shard in existing.shards for item in shard):
        raise SlmtokError(f"{out} holds a run over other inputs; choose a new output folder")
    return existing


def _failed_files_changed(out: Path, plan: Plan, recorded: dict, request: dict) -> bool:
    """Whether the only change since the run started is the size of files whose inputs failed (a broken
    file replaced): those are encoded again, nothing encoded goes stale."""
    changed = resized(recorded, request)
    if not changed:
        return False
    failed = set()
    for i in range(len(plan.shards)):
        path = shard_path(out, i)
        if path.exists() and check_shard(path, plan.shards[i]) is None:
            failed |= {f["id"] for f in read_shard_header(path)["failures"]}
        else:  # not written yet: nothing of it was encoded
            failed |= {item.id for item in plan.shards[i]}
    return changed <= failed


def _resume_relative(out: Path, existing: Plan, recorded, inputs, tok, tokenizer, n_codebooks, shard_size):
    """Resume a run whose plan lists paths relative to where it was started (slmtok 0.x): from the
    working directory it records, else only from the one it was started in; its plan is then stored
    with absolute paths, so later restarts work from anywhere."""
    base = recorded_cwd(out)
    if base is None:
        here = describe_request(
            inputs,
            tokenizer=tokenizer,
            options=tok.load_options,
            card_hash=tok.card.hash,
            n_codebooks=n_codebooks,
            shard_size=shard_size,
            absolute=False,
        )
        missing = [
            i.path
            for s in existing.shards
            for i in s
            if not os.path.isabs(i.path) and not os.path.exists(i.path)
        ]
        if missing:
            raise SlmtokError(
                f"{out} was started by an older slmtok from another folder (its plan lists paths like "
                f"{missing[0]!r} relative to it): run the same command once from that folder"
            )
        if recorded is not None and (changes := request_changes(recorded, here)):
            raise SlmtokError(
                f"{out} holds a run started with other settings ({'; '.join(changes)}): rerun the same "
                "command to resume it, or choose a new output folder"
            )
        base = os.getcwd()
    plan = made_absolute(existing, base)
    request = describe_request(
        inputs,
        tokenizer=tokenizer,
        options=tok.load_options,
        card_hash=tok.card.hash,
        n_codebooks=n_codebooks,
        shard_size=shard_size,
    )
    planned = sorted((i.id, i.path, i.start, i.segment) for s in plan.shards for i in s)
    asked = sorted((r["id"], r["path"], r["start"], r["segment"]) for r in request["items"])
    if planned != asked:
        raise SlmtokError(
            f"{out} holds a run over other inputs: rerun the same command, or choose a new folder"
        )
    save_plan(out, plan, request)
    return _resume_or_plan(out, inputs, tok, tokenizer, n_codebooks, shard_size, request)


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
