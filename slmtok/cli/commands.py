"""Implementations of the ``slmtok`` commands (imported only once a command runs)."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch

import slmtok
from slmtok.atomic import remove_orphans_of
from slmtok.audio import match_input, write_audio
from slmtok.cli.main import plural
from slmtok.encoding import batches, check_readable, encode_items
from slmtok.errors import OutputError, SlmtokError
from slmtok.inputs import NAME_EXTENSIONS, InputItem, collect, id_problem, strip_extension
from slmtok.outputs import check_writable, folder_outputs
from slmtok.tokenfile import SUFFIX, load_tokens, read_header, save_tokens
from slmtok.types import Audio, Tokens

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
    unknown = [key for key in options if key not in params and key != "bpe"]  # bpe: slmtok.load's own
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
                f"--device {text}: only {plural(count, 'CUDA device')} here (cuda:0 to cuda:{count - 1})"
            )
    return device


#: seconds between progress lines when stderr is not a terminal (logs, pipes, batch jobs)
PROGRESS_EVERY = 10.0


def _progress(total: int, label: str):
    """Progress of a command over ``total`` items, on stderr.

    On a terminal: a rich bar (item count, elapsed and remaining time), removed when done. Elsewhere
    (a log file, a pipe, a batch job): ``_LineProgress``, one plain line every ``PROGRESS_EVERY``
    seconds while the work runs, so a long run is never silent. ``total`` may be ``None`` (unknown).
    """
    if not sys.stderr.isatty():
        return _LineProgress(label, PROGRESS_EVERY)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_stderr_console(),
        transient=True,
    )


class _LineProgress:
    """The part of ``rich.progress.Progress`` the commands use (``add_task``, ``advance``, ``update``),
    reported as plain lines to stderr: ``slmtok decode: 3/10 done, 20 s elapsed`` every ``every``
    seconds from a daemon timer thread (a single long item is reported too), and a last line on exit if
    the run lasted that long. Nothing is printed for runs shorter than ``every``."""

    def __init__(self, label: str, every: float) -> None:
        self.label, self.every = label, every
        self.done, self.total = 0, None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self._printed = False

    def __enter__(self) -> _LineProgress:
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._tick, name=f"slmtok-{self.label}-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if error is None and self._printed:
            self._say("finished")

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        self.total = total
        return 0

    def advance(self, task: int, advance: float = 1) -> None:
        self.done += advance

    def update(
        self, task: int, *, completed: float | None = None, total: float | None = None, **_: Any
    ) -> None:
        if completed is not None:
            self.done = completed
        if total is not None:
            self.total = total

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self._say("running")

    def _say(self, state: str) -> None:
        if self.total is None:  # nothing counted (a single long job): only the time
            count = f"{self.done:g} done, " if self.done else ""
        else:
            count = f"{self.done:g}/{self.total:g} done, "
        elapsed = time.monotonic() - self._start
        print(
            f"slmtok {self.label}: {count}{elapsed:.0f} s elapsed ({state})",
            file=sys.stderr,
            flush=True,
        )
        self._printed = True


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
    from slmtok.cli.table import codebook_shape, markdown_table, rate_text, tokenizer_rows

    if getattr(args, "kind", "tokenizers") != "tokenizers":  # feature extractors or vocoders
        from slmtok.cli.hub_commands import run_component_list

        return run_component_list(args)
    rows = tokenizer_rows(args.pattern)
    if not rows:
        from slmtok.errors import RegistryError

        raise RegistryError(f"no tokenizer matches {args.pattern!r} (slmtok list shows them all)")
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
        if "kind" not in r:  # no card: it could not be loaded
            cells.append([r["name"], "no", "-", "-", "-", "-", "-", "-", f"unavailable: {r['reason']}"])
            continue
        here = "yes" if r["available"] else "download" if r.get("package_installed", True) else "no package"
        cells.append(
            [
                r["name"],
                here,
                r["kind"],
                rate_text(r),
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
    headers = ("name", "usable", "kind", "rate", "frames/s", "K x size", "kbps", "tokens/s")
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
            f"encoded {plural(len(items), 'file')}, {seconds:.1f} s of audio, with {tok.card.name} "
            f"in {elapsed:.1f} s -> {outputs[0] if len(outputs) == 1 else Path(args.output)}"
        )
    return 0


def _collect_token_files(paths: list[str]) -> list[InputItem]:
    return collect(paths, extensions=(SUFFIX,))


def _item_names(item: InputItem, sources: list[str] | None, count: int) -> list[Path]:
    """Output names (without suffix) for the ``count`` items of the token file ``item``.

    Each is the file name of the item's recorded source without its audio extension (a segment
    ``a.wav[0.5:1]`` gives ``a_0.5-1``, as ``slmtok.inputs`` names segments), in the token file's own
    folder. Where a source is missing, unsafe (control characters, ``..``, nothing left) or repeats
    (up to case), every item falls back to ``<file stem>.<index>``. ``folder_outputs`` confines and
    compares the result again.
    """
    fallback = [item.name.with_name(f"{item.name.name}.{i}") for i in range(count)]
    if not sources or len(sources) != count:
        return fallback
    names = []
    for source in sources:
        segment = re.fullmatch(r"(.*)\[([0-9.]+):([0-9.]*)\]", source, flags=re.DOTALL)
        base = segment.group(1) if segment else source
        leaf = re.split(r"[\\/]", base)[-1]
        stem = strip_extension(Path(leaf), NAME_EXTENSIONS).name if leaf not in ("", ".", "..") else ""
        if segment and stem:
            stem = f"{stem}_{segment.group(2)}-{segment.group(3) or 'end'}"
        if not stem or stem in (".", "..") or id_problem(stem):
            return fallback
        names.append(item.name.with_name(stem))
    if len({n.name.casefold() for n in names}) != count:
        return fallback
    return names


def _token_items(items: list[InputItem], max_seconds: float) -> list[tuple[InputItem, Tokens]]:
    """Every item of every token file as ``(item, tokens of that one item)``: a single-item file keeps
    its own name; a multi-item file (``save_tokens`` of a batch) gives one item per recorded source
    (``_item_names``)."""
    out = []
    for item in items:
        tokens = load_tokens(item.path, max_seconds=max_seconds)
        if tokens.batch_size == 1:
            out.append((item, tokens))
            continue
        names = _item_names(item, read_header(item.path).get("sources"), tokens.batch_size)
        for i, name in enumerate(names):
            part = InputItem(item.path, name, origin=f"{item.path}, item {i}")
            out.append((part, tokens.select([i])))
    return out


def _check_input_records(entries: list[tuple[InputItem, Tokens]], max_seconds: float) -> None:
    """For ``--match-input``: every item records its input, and that input is at most ``max_seconds``."""
    for item, tokens in entries:
        info = tokens.input
        if info is None:
            raise SlmtokError(
                f"{item.where}: the token file does not record its input audio; decode without --match-input"
            )
        seconds = info.lengths[0] / info.sample_rate
        if seconds > max_seconds:
            raise SlmtokError(
                f"{item.where}: the recorded input is {seconds:.4g} s, more than the limit of "
                f"{max_seconds:g} s (raise it with --max-seconds)"
            )


def _matched(audio: Audio, index: int, tokens: Tokens, match: bool) -> tuple[torch.Tensor, int]:
    """Item ``index`` of ``audio`` as ``[C, T]`` and its rate: as decoded, or in the format of the input
    ``tokens`` were encoded from (``match``: rate, channels and exact length, ``slmtok.audio.match_input``)."""
    one = Audio(audio.wav[index : index + 1], audio.lengths[index : index + 1], audio.sample_rate)
    if match:
        one = match_input(one, tokens.input)
    return one.item(0), one.sample_rate


def run_decode(args: Namespace) -> int:
    _check_batch_size(args.batch_size)
    files = _collect_token_files(args.inputs)
    max_seconds = args.max_seconds
    match = getattr(args, "match_input", False)
    entries = _token_items(files, max_seconds)
    out_path = Path(args.output)
    if len(entries) > 1 and len(files) == 1 and out_path.suffix.lower() in AUDIO_OUTPUTS:
        raise SlmtokError(
            f"{files[0].path} holds {len(entries)} items, one audio file each: name an output folder, "
            f"not the file {out_path}"
        )
    items = [item for item, _ in entries]
    outputs = _plan_outputs(items, args.output, AUDIO_OUTPUTS, ".wav")
    if match:
        _check_input_records(entries, max_seconds)
    loaded = [(item, out, tokens) for (item, tokens), out in zip(entries, outputs, strict=True)]
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
                for i, (item, out, tokens) in enumerate(members):
                    wav, rate = _matched(audio, i, tokens, match)
                    write_audio(_ensure_folder(out), wav, rate)
                    report.append(
                        {
                            "input": item.where,
                            "output": str(out),
                            "duration": wav.shape[-1] / rate,
                            "sample_rate": rate,
                            "channels": wav.shape[0],
                        }
                    )
                    bar.advance(task)
    elapsed = time.perf_counter() - start
    if args.json:
        _print_json({"files": len(files), "items": report, "seconds": elapsed})
    else:
        what = plural(len(files), "file") + (f", {len(items)} items," if len(items) != len(files) else "")
        print(
            f"decoded {what} in {elapsed:.1f} s -> {outputs[0] if len(outputs) == 1 else Path(args.output)}"
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
            wav, rate = _matched(audio, 0, tokens, getattr(args, "match_input", False))
            write_audio(_ensure_folder(target[item]), wav, rate)
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
            f"{tok.card.name}: {plural(len(items), 'file')}, {seconds:.2f} s of audio, {plural(k, 'codebook')}, "
            f"{bitrate / 1000:.2f} kbps, {report['tokens_per_second']:.0f} tokens/s; "
            f"encode RTF {report['encode_real_time_factor']:.3f}, decode RTF {report['decode_real_time_factor']:.3f}"
        )
    return 0
