"""Implementations of the ``slmtok`` commands (imported only once a command runs)."""

from __future__ import annotations

import json
import os
import sys
import time
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

import slmtok
from slmtok.audio import read_audio, write_audio
from slmtok.batching import pad_stack
from slmtok.cli.inputs import InputItem, collect
from slmtok.errors import OutputError, SlmtokError
from slmtok.tokenfile import SUFFIX, load_tokens, save_tokens
from slmtok.types import Tokens

AUDIO_OUTPUTS = (".wav", ".flac", ".ogg")


# ------------------------------------------------------------------------------------------ helpers
def _load_tokenizer(args: Namespace, name: str):
    options = dict(args.option)
    if getattr(args, "checkpoint", None):
        options["checkpoint"] = args.checkpoint
    return slmtok.load(name, device=args.device, **options)


def _progress(total: int, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_stderr_console(),
        transient=True,
        disable=total < 2 or not sys.stderr.isatty(),
    )


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _plan_outputs(
    items: list[InputItem], output: str, suffixes: tuple[str, ...], default_suffix: str
) -> list[Path]:
    """One output path per item. ``output`` is a file (single input with a matching suffix) or a folder,
    created if needed. Fails before any work if the folder cannot be written."""
    out = Path(output)
    if len(items) == 1 and out.suffix.lower() in suffixes:
        paths, folders = [out], {out.parent}
    else:
        if out.suffix.lower() in suffixes:
            raise SlmtokError(f"{len(items)} inputs need an output folder, not the file {out}")
        paths = [out / item.name.with_suffix(default_suffix) for item in items]
        folders = {p.parent for p in paths}
    for folder in sorted(folders):
        folder = folder if str(folder) else Path(".")
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"output folder {folder} is a file")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create output folder {folder}: {error.strerror}") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"output folder {folder} is not writable")
    return paths


def _check_readable(items: list[InputItem]) -> None:
    """Fail before any work if an input is not an audio file (reads headers only where possible)."""
    import soundfile as sf

    for item in items:
        try:
            sf.info(str(item.path))
        except Exception:  # noqa: BLE001 - not libsndfile's: let the full reader (FFmpeg) decide
            read_audio(item.path)


def _batches(items: list, size: int) -> Iterator[list]:
    if size < 1:
        raise SlmtokError(f"--batch-size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _encode_files(
    tok, items: list[InputItem], n_codebooks: int | None, batch_size: int
) -> Iterator[tuple[InputItem, Tokens]]:
    """Read and encode ``items`` in batches (grouped by sample rate and channels); yield one-item Tokens."""
    for batch in _batches(items, batch_size):
        loaded = [(item, *read_audio(item.path, start=item.start, duration=item.duration)) for item in batch]
        groups: dict[tuple[int, int], list] = {}
        for item, wav, rate in loaded:
            groups.setdefault((rate, wav.shape[0]), []).append((item, wav))
        done: dict[InputItem, Tokens] = {}
        for (rate, _), members in groups.items():
            wavs = [wav for _, wav in members]
            lengths = torch.tensor([w.shape[-1] for w in wavs])
            try:
                tokens = tok.encode(pad_stack(wavs), rate, n_codebooks=n_codebooks)
            except SlmtokError as error:
                if len(members) == 1:
                    raise type(error)(f"{members[0][0].label}: {error}") from None
                for item, wav in members:  # find which file is bad, and name it
                    try:
                        tok.encode(wav, rate, n_codebooks=n_codebooks)
                    except SlmtokError as inner:
                        raise type(inner)(f"{item.label}: {inner}") from None
                raise
            for i, (item, _) in enumerate(members):
                done[item] = tokens.select([i])
        for item in batch:
            yield item, done[item]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


# ------------------------------------------------------------------------------------------ commands
def run_list(args: Namespace) -> int:
    rows = []
    for name in slmtok.list_tokenizers(args.pattern):
        entry = slmtok.tokenizer_entry(name)
        try:
            card = slmtok.load(name).card.to_dict()
            rows.append({"name": name, "available": True, "origin": entry.origin, **card})
        except Exception as error:  # noqa: BLE001 - a tokenizer that cannot load is listed with the reason
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            rows.append(
                {
                    "name": name,
                    "available": False,
                    "origin": entry.origin,
                    "reason": reason,
                    "description": entry.description,
                }
            )
    if args.json:
        _print_json(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="slmtok tokenizers")
    # names are what users type: never cut them to fit a narrow terminal or a pipe (80 columns)
    table.add_column("name", no_wrap=True, min_width=max((len(r["name"]) for r in rows), default=4))
    for column in ("kind", "rate", "frames/s", "K x size", "kbps", "tokens/s", "description"):
        table.add_column(column)
    for r in rows:
        if not r["available"]:
            table.add_row(r["name"], "-", "-", "-", "-", "-", "-", f"unavailable: {r['reason']}")
            continue
        sizes = r["codebook_sizes"]
        shape = f"{len(sizes)} x {sizes[0]}" if len(set(sizes)) == 1 else " ".join(map(str, sizes))
        table.add_row(
            r["name"],
            r["kind"],
            f"{r['sample_rate']} Hz",
            f"{r['frame_rate']:g}",
            shape,
            f"{r['bitrate'] / 1000:.2f}",
            f"{r['tokens_per_second']:g}",
            r["description"],
        )
    Console().print(table)
    return 0


def run_info(args: Namespace) -> int:
    tok = _load_tokenizer(args, args.name)
    card = tok.card.to_dict()
    entry = slmtok.tokenizer_entry(args.name)
    card["origin"] = entry.origin
    card["load_options"] = tok.load_options
    if args.json:
        _print_json(card)
        return 0
    width = max(len(k) for k in card)
    for key, value in card.items():
        if key == "bitrate":
            value = f"{value:.1f} bits/s ({value / 1000:.2f} kbps)"
        print(f"{key:<{width}}  {value}")
    return 0


def run_encode(args: Namespace) -> int:
    items = collect(args.inputs)
    outputs = _plan_outputs(items, args.output, (SUFFIX,), SUFFIX)
    _check_readable(items)
    tok = _load_tokenizer(args, args.tokenizer)
    card = tok.card.to_dict()
    target = dict(zip(items, outputs, strict=True))
    summary, seconds, frames = [], 0.0, 0
    start = time.perf_counter()
    with _progress(len(items), "encode") as bar:
        task = bar.add_task("encode", total=len(items))
        for item, tokens in _encode_files(tok, items, args.n_codebooks, args.batch_size):
            save_tokens(target[item], tokens, card=card, sources=[item.label])
            duration = tokens.input.durations[0]
            seconds += duration
            frames += int(tokens.lengths[0])
            summary.append(
                {
                    "input": item.label,
                    "output": str(target[item]),
                    "duration": duration,
                    "frames": int(tokens.lengths[0]),
                    "codebooks": tokens.n_codebooks,
                }
            )
            bar.advance(task)
    elapsed = time.perf_counter() - start
    report = {
        "tokenizer": tok.card.name,
        "files": len(items),
        "audio_seconds": seconds,
        "frames": frames,
        "seconds": elapsed,
        "real_time_factor": elapsed / seconds if seconds else None,
        "items": summary,
    }
    if args.json:
        _print_json(report)
    else:
        print(
            f"encoded {len(items)} file(s), {seconds:.1f} s of audio, with {tok.card.name} "
            f"in {elapsed:.1f} s -> {outputs[0] if len(outputs) == 1 else Path(args.output)}"
        )
    return 0


def _collect_token_files(paths: list[str]) -> list[InputItem]:
    return collect(paths, extensions=(SUFFIX,))


def run_decode(args: Namespace) -> int:
    items = _collect_token_files(args.inputs)
    outputs = _plan_outputs(items, args.output, AUDIO_OUTPUTS, ".wav")
    loaded = [(item, out, load_tokens(item.path)) for item, out in zip(items, outputs, strict=True)]
    tokenizers: dict[tuple, Any] = {}
    report, start = [], time.perf_counter()
    with _progress(len(items), "decode") as bar:
        task = bar.add_task("decode", total=len(items))
        for batch in _batches(loaded, args.batch_size):
            groups: dict[tuple, list] = {}
            for entry in batch:
                ref = entry[2].tokenizer
                key = (ref.name, ref.hash, json.dumps(ref.options, sort_keys=True), entry[2].n_codebooks)
                groups.setdefault(key, []).append(entry)
            for key, members in groups.items():
                if key[:3] not in tokenizers:
                    ref = members[0][2].tokenizer
                    tokenizers[key[:3]] = slmtok.load(ref.name, device=args.device, **ref.options)
                tok = tokenizers[key[:3]]
                audio = tok.decode(Tokens.cat([t for _, _, t in members]))
                for i, (item, out, _) in enumerate(members):
                    write_audio(out, audio.item(i), audio.sample_rate)
                    report.append(
                        {"input": str(item.path), "output": str(out), "duration": audio.durations[i]}
                    )
                    bar.advance(task)
    elapsed = time.perf_counter() - start
    if args.json:
        _print_json({"files": len(items), "seconds": elapsed, "items": report})
    else:
        print(
            f"decoded {len(items)} file(s) in {elapsed:.1f} s -> {outputs[0] if len(outputs) == 1 else Path(args.output)}"
        )
    return 0


def run_resynth(args: Namespace) -> int:
    items = collect(args.inputs)
    outputs = _plan_outputs(items, args.output, AUDIO_OUTPUTS, ".wav")
    _check_readable(items)
    tok = _load_tokenizer(args, args.tokenizer)
    target = dict(zip(items, outputs, strict=True))
    seconds = frames = 0.0
    encode_time = decode_time = 0.0
    k = None
    rows = []
    with _progress(len(items), "resynth") as bar:
        task = bar.add_task("resynth", total=len(items))
        iterator = _encode_files(tok, items, args.n_codebooks, args.batch_size)
        while True:
            t0 = time.perf_counter()
            try:
                item, tokens = next(iterator)
            except StopIteration:
                break
            t1 = time.perf_counter()
            audio = tok.decode(tokens)
            t2 = time.perf_counter()
            encode_time += t1 - t0
            decode_time += t2 - t1
            write_audio(target[item], audio.item(0), audio.sample_rate)
            duration = tokens.input.durations[0]
            seconds += duration
            frames += int(tokens.lengths[0])
            k = tokens.n_codebooks
            rows.append(
                {
                    "input": item.label,
                    "output": str(target[item]),
                    "duration": duration,
                    "frames": int(tokens.lengths[0]),
                }
            )
            bar.advance(task)
    sizes = tok.max_codebook_sizes
    import math

    bitrate = sum(tok.card.frame_rate * math.log2(s) for s in sizes)
    report = {
        "tokenizer": tok.card.name,
        "kind": tok.card.kind,
        "files": len(items),
        "audio_seconds": seconds,
        "n_codebooks": k,
        "bitrate": bitrate,
        "tokens_per_second": frames * k / seconds if seconds else None,
        "encode_real_time_factor": encode_time / seconds if seconds else None,
        "decode_real_time_factor": decode_time / seconds if seconds else None,
        "items": rows,
    }
    if args.json:
        _print_json(report)
    else:
        print(
            f"{tok.card.name}: {len(items)} file(s), {seconds:.2f} s of audio, {k} codebook(s), "
            f"{bitrate / 1000:.2f} kbps, {report['tokens_per_second']:.0f} tokens/s; "
            f"encode RTF {report['encode_real_time_factor']:.3f}, decode RTF {report['decode_real_time_factor']:.3f}"
        )
    return 0
