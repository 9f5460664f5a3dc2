"""Implementations of the ``slmtok`` commands (imported only once a command runs)."""

from __future__ import annotations

import json
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch

import slmtok
from slmtok.atomic import remove_orphans_of
from slmtok.audio import write_audio
from slmtok.encoding import batches, check_readable, encode_items
from slmtok.errors import OutputError, SlmtokError
from slmtok.inputs import InputItem, collect
from slmtok.outputs import check_writable, folder_outputs
from slmtok.tokenfile import SUFFIX, load_tokens, save_tokens
from slmtok.types import Tokens

AUDIO_OUTPUTS = (".wav", ".flac", ".ogg")
KNOWN_FILE_SUFFIXES = {
    *AUDIO_OUTPUTS,
    SUFFIX,
    ".mp3",
    ".opus",
    ".m4a",
    ".aac",
    ".g722",
    ".npy",
    ".pt",
    ".json",
}


# ------------------------------------------------------------------------------------------ helpers
def _load_tokenizer(args: Namespace, name: str):
    options = dict(args.option)
    if getattr(args, "checkpoint", None):
        options["checkpoint"] = args.checkpoint
    _check_options(name, options)
    return slmtok.load(name, device=_device(args.device), **options)


def _check_options(name: str, options: dict[str, Any]) -> None:
    """A misspelt ``-O`` key is a one-line error naming the options, not a TypeError traceback."""
    import inspect

    if "device" in options:
        raise SlmtokError("set the device with --device, not -O device=...")
    try:
        signature = inspect.signature(slmtok.tokenizer_entry(name).resolve())
    except (TypeError, ValueError):  # no signature to check against: let the factory decide
        return
    params = signature.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = [key for key in options if key not in params]
    if unknown:
        known = [
            k for k, p in params.items() if k not in ("device", "checkpoint") and p.kind is p.KEYWORD_ONLY
        ]
        raise SlmtokError(f"{name!r} has no option {unknown[0]!r}; its options: {', '.join(known) or 'none'}")


def _device(text: str) -> torch.device:
    """``--device`` as a torch device, refusing names torch does not know and absent CUDA devices."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise SlmtokError(f"unknown --device {text!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise SlmtokError(f"--device {text}: no CUDA device is available here; use --device cpu")
        if device.index is not None and device.index >= count:
            raise SlmtokError(
                f"--device {text}: only {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})"
            )
    return device


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
    where each item's output is its name with ``default_suffix`` appended (``utt.1`` -> ``utt.1.wav``).

    Checks the whole plan before any work (``slmtok.outputs``): outputs confined to the folder, no two
    items on one output, no output on an input, names the filesystem takes, folders that can be made.
    Folders are created only when the first file goes into them (``_ensure_folder``), so a failed
    command leaves nothing behind.
    """
    out = Path(output)
    if len(items) == 1 and out.suffix.lower() in suffixes:
        paths = [out]
    else:
        if out.suffix.lower() in suffixes:
            raise SlmtokError(f"{len(items)} inputs need an output folder, not the file {out}")
        if out.suffix.lower() in KNOWN_FILE_SUFFIXES and not out.is_dir():
            raise SlmtokError(
                f"cannot write {out.suffix} files: use {', '.join(suffixes)} (or name a folder)"
            )
        paths = folder_outputs(items, out, default_suffix)
    check_writable(items, paths)
    return paths


def _written(path: Path, error: OSError | UnicodeError) -> OutputError:
    """An ``OSError`` (full disk, file too large, name refused) while writing ``path`` as one line."""
    if isinstance(error, OutputError):  # from atomic_path, which may name only the folder
        return error if str(path) in str(error) else OutputError(f"cannot write {path} ({error})")
    if isinstance(error, UnicodeError):
        return OutputError(f"cannot write {path}: the name cannot be encoded for the filesystem")
    reason = (
        error.strerror
        if isinstance(error, OSError) and error.strerror
        else str(error) or type(error).__name__
    )
    return OutputError(f"cannot write {path}: {reason}")


def _ensure_folder(path: Path) -> Path:
    """Create ``path``'s folder (and parents) if needed; return ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create output folder {path.parent}: {error.strerror}") from None
    return path


def _check_batch_size(size: int) -> None:
    if size < 1:
        raise SlmtokError(f"--batch-size must be at least 1, got {size}")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


# ------------------------------------------------------------------------------------------ commands
def run_list(args: Namespace) -> int:
    from slmtok.cli.table import codebook_shape, markdown_table, tokenizer_rows

    rows = tokenizer_rows(args.pattern)
    if args.markdown:
        print(markdown_table(rows), end="")
        return 0
    if args.json:
        _print_json(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    cells = []
    for r in rows:
        if not r["available"]:
            cells.append([r["name"], "-", "-", "-", "-", "-", "-", f"unavailable: {r['reason']}"])
            continue
        cells.append(
            [
                r["name"],
                r["kind"],
                f"{r['sample_rate']} Hz",
                f"{r['frame_rate']:g}",
                codebook_shape(r["codebook_sizes"]),
                f"{r['bitrate'] / 1000:.2f}",
                f"{r['tokens_per_second']:g}",
                r["description"],
            ]
        )
    # every column but the description keeps its full width, even in a pipe (80 columns)
    console = Console()
    if not console.is_terminal:  # a pipe or a file: no terminal to fit, print whole rows
        console = Console(width=200)
    table = Table(title="slmtok tokenizers")
    headers = ("name", "kind", "rate", "frames/s", "K x size", "kbps", "tokens/s")
    widths = [max([len(header), *(len(c[i]) for c in cells)]) for i, header in enumerate(headers)]
    for header, width in zip(headers, widths, strict=True):
        table.add_column(header, no_wrap=True, min_width=width)
    # the description gets what is left (rich would otherwise squeeze the other columns to nothing)
    room = max(12, console.width - sum(widths) - 3 * len(widths) - 4)
    table.add_column("description", no_wrap=True, max_width=room)
    for row in cells:
        text = row[-1] if len(row[-1]) <= room else row[-1][: room - 1] + "…"
        table.add_row(*row[:-1], text)
    console.print(table)
    return 0


def run_info(args: Namespace) -> int:
    from slmtok.hub.listing import card_row

    entry = slmtok.tokenizer_entry(args.name)
    row = card_row(args.name, entry.description) if entry.origin == "builtin" else None
    if row is not None and not row["weights_cached"] and not (args.checkpoint or args.option):
        # a codec whose weights are not downloaded: its hub card, without downloading anything
        card = {"name": args.name, **row, "origin": entry.origin}
        card["weights"] = f"not downloaded here (slmtok download {args.name})"
    else:
        tok = _load_tokenizer(args, args.name)
        card = tok.card.to_dict()
        card["origin"] = entry.origin
        card["load_options"] = tok.load_options
        if row is not None:
            card.update({k: v for k, v in row.items() if k.startswith("weights_")})
    if args.json:
        _print_json(card)
        return 0
    width = max(len(k) for k in card)
    for key, value in card.items():
        if key == "bitrate":
            value = f"{value:.1f} bits/s ({value / 1000:.2f} kbps)"
        elif key == "weights_sha256" and not value:
            value = "not published; recorded at first download (see weights_verification)"
        elif key == "hash" and not value:
            value = "computed from the weights once they are loaded"
        print(f"{key:<{width}}  {value}")
    return 0


def run_encode(args: Namespace) -> int:
    _check_batch_size(args.batch_size)
    items = collect(args.inputs)
    outputs = _plan_outputs(items, args.output, (SUFFIX,), SUFFIX)
    check_readable(items)
    remove_orphans_of(outputs)  # temporary files a killed run left beside these outputs
    tok = _load_tokenizer(args, args.tokenizer)
    card = tok.card.to_dict()
    target = dict(zip(items, outputs, strict=True))
    summary, seconds, frames = [], 0.0, 0
    start = time.perf_counter()
    with _progress(len(items), "encode") as bar:
        task = bar.add_task("encode", total=len(items))
        for item, tokens in encode_items(tok, items, args.n_codebooks, args.batch_size):
            try:
                save_tokens(_ensure_folder(target[item]), tokens, card=card, sources=[item.label])
            except (OSError, UnicodeError) as error:
                raise _written(target[item], error) from None
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
    _check_batch_size(args.batch_size)
    items = _collect_token_files(args.inputs)
    outputs = _plan_outputs(items, args.output, AUDIO_OUTPUTS, ".wav")
    max_seconds = args.max_seconds
    loaded = [
        (item, out, load_tokens(item.path, max_seconds=max_seconds))
        for item, out in zip(items, outputs, strict=True)
    ]
    for item, _, tokens in loaded:  # one audio file per token file: a batch file would be cut or mixed up
        if tokens.batch_size != 1:
            raise SlmtokError(
                f"{item.path} holds {tokens.batch_size} items; decode takes one item per token file "
                "(split it with slmtok.load_tokens(path).select([i]) and save_tokens)"
            )
    tokenizers: dict[tuple, Any] = {}
    report, start = [], time.perf_counter()
    with _progress(len(items), "decode") as bar:
        task = bar.add_task("decode", total=len(items))
        for batch in batches(loaded, args.batch_size):
            groups: dict[tuple, list] = {}
            for entry in batch:
                ref = entry[2].tokenizer
                key = (ref.name, ref.hash, json.dumps(ref.options, sort_keys=True), ref.weights)
                groups.setdefault((*key, entry[2].n_codebooks), []).append(entry)
            for key, members in groups.items():
                if key[:4] not in tokenizers:  # weights by sha256, trust only from --trust (slmtok.load_for)
                    tokenizers[key[:4]] = slmtok.load_for(
                        members[0][2],
                        device=_device(args.device),
                        trust=args.trust,
                        checkpoint=args.checkpoint,
                    )
                tok = tokenizers[key[:4]]
                audio = tok.decode(Tokens.cat([t for _, _, t in members]), max_seconds=max_seconds)
                for i, (item, out, _) in enumerate(members):
                    write_audio(_ensure_folder(out), audio.item(i), audio.sample_rate)
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
    _check_batch_size(args.batch_size)
    items = collect(args.inputs)
    outputs = _plan_outputs(items, args.output, AUDIO_OUTPUTS, ".wav")
    check_readable(items)
    tok = _load_tokenizer(args, args.tokenizer)
    target = dict(zip(items, outputs, strict=True))
    seconds = frames = 0.0
    encode_time = decode_time = 0.0
    k = None
    rows = []
    with _progress(len(items), "resynth") as bar:
        task = bar.add_task("resynth", total=len(items))
        iterator = encode_items(tok, items, args.n_codebooks, args.batch_size)
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
            write_audio(_ensure_folder(target[item]), audio.item(0), audio.sample_rate)
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
    sizes = tok.max_codebook_sizes[:k]
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
