"""``slmtok`` command line: list, info, encode, decode, resynth.

Only the standard library is imported at start-up; each command imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_TOKENIZER = "mel-rvq"

#: Modules that add sub-commands: each defines ``register(subparsers)``, which adds its parsers with
#: ``set_defaults(run=callable)``; the callable takes the parsed ``Namespace`` and returns an exit code.
#: They must import only the standard library at module level (``slmtok --help`` imports them all).
COMMAND_MODULES = (
    "slmtok.cli.hub_commands",
    "slmtok.cli.kmeans_commands",
    "slmtok.cli.vocoder_commands",
    "slmtok.cli.lm_commands",
    "slmtok.cli.bench_commands",
    "slmtok.cli.corpus_commands",
    "slmtok.cli.text_commands",
    "slmtok.cli.stream_commands",
    "slmtok.cli.bpe_commands",
    "slmtok.cli.probe_commands",
)


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 file``, ``2 files`` (``words`` for an irregular plural)."""
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help when the help does not say its default already (and the
    option takes a value whose default is not ``None``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        takes_value = action.nargs != 0 and (action.option_strings or action.nargs in ("?", "*"))
        if (
            takes_value
            and default not in (None, argparse.SUPPRESS, [], "")
            and "default" not in text.lower()
            and "%(default)" not in text
        ):
            shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
            text += f" (default: {shown})"
        return text


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose help shows defaults; sub-command parsers are made of it too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def tokenizer_args(p: argparse.ArgumentParser, with_name: bool = True) -> None:
    """The options every command that loads a tokenizer takes: ``-t`` (unless ``with_name`` is false),
    ``--device``, ``-O KEY=VALUE`` and ``--checkpoint``."""
    if with_name:
        p.add_argument(
            "-t",
            "--tokenizer",
            default=DEFAULT_TOKENIZER,
            help=f"tokenizer name (default {DEFAULT_TOKENIZER})",
        )
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    p.add_argument(
        "-O",
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tokenizer load option, e.g. -O dedup=true (repeatable)",
    )
    p.add_argument("--checkpoint", help="local checkpoint in the upstream's own format")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="slmtok",
        description="Speech tokenizers and codecs behind one interface: encode audio to tokens and back.",
    )
    from slmtok import __version__

    parser.add_argument("--version", action="version", version=f"slmtok {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "list", help="list registered tokenizers (or feature extractors, vocoders) with their cards"
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern (default *)")
    p.add_argument(
        "--kind",
        choices=("tokenizers", "features", "vocoders"),
        default="tokenizers",
        help="what to list (default tokenizers)",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--markdown", action="store_true", help="print a Markdown table (as in the README)")

    p = sub.add_parser("info", help="show one tokenizer's card")
    p.add_argument("name", help="tokenizer name (slmtok list shows them)")
    tokenizer_args(p, with_name=False)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("encode", help="audio files, folders or manifests -> .slmtok token files")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio files, folders (recursive), .tsv/.jsonl manifests, Kaldi wav.scp, Lhotse cuts, "
        "datasets folders, .parquet, WebDataset .tar",
    )
    p.add_argument("-o", "--output", required=True, help="a .slmtok file (one input) or a folder")
    tokenizer_args(p)
    p.add_argument("-k", "--n-codebooks", type=int, help="codebooks to emit (default: the card's)")
    p.add_argument("-b", "--batch-size", type=int, default=8, help="files per batch (default 8)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")

    p = sub.add_parser("decode", help=".slmtok token files (or folders of them) -> audio")
    p.add_argument("inputs", nargs="+", metavar="TOKENS", help=".slmtok files or folders")
    p.add_argument(
        "-o", "--output", required=True, help="an audio file (.wav/.flac/.ogg, one input) or a folder"
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("-b", "--batch-size", type=int, default=8, help="files per batch (default 8)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="PATH",
        help="weights file or folder that made the tokens, found by sha256 (repeatable)",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="admit numpy values in unverified checkpoints (never from the file)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=4 * 3600.0,
        help="refuse items that would decode to more audio than this, in seconds (default 14400 = 4 h)",
    )
    p.add_argument(
        "--match-input",
        action="store_true",
        help="write each item at its input's sample rate, channel count and exact length, as the token "
        "file records them (default: the tokenizer's rate and channels)",
    )

    p = sub.add_parser("resynth", help="encode and decode audio; print bitrate, tokens/s and speed")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders or manifests")
    p.add_argument("-o", "--output", required=True, help="an audio file (one input) or a folder")
    tokenizer_args(p)
    p.add_argument("-k", "--n-codebooks", type=int, help="codebooks to emit (default: the card's)")
    p.add_argument("-b", "--batch-size", type=int, default=8, help="files per batch (default 8)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument(
        "--match-input",
        action="store_true",
        help="write each output at its input's sample rate, channel count and exact length "
        "(default: the tokenizer's rate and channels)",
    )

    import importlib.util

    for module in COMMAND_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(sub)
    return parser


def check_device(device: str) -> None:
    """Refuse, in one line, a torch device this machine does not have (``cuda`` without a GPU, ``cuda:3``
    with two, a misspelt name). ``cpu`` is accepted without importing torch."""
    if device == "cpu":
        return
    import torch

    from slmtok.errors import SlmtokError

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise SlmtokError(f"--device {device}: not a torch device (cpu, cuda, cuda:1, mps)") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SlmtokError(f"--device {device}: no CUDA GPU is usable here; use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            gpus = "1 GPU" if count == 1 else f"{count} GPUs"
            raise SlmtokError(f"--device {device}: this machine has {gpus} (cuda:0 to cuda:{count - 1})")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise SlmtokError(f"--device {device}: Apple MPS is not available here; use --device cpu")


def _quiet_stdout() -> None:
    """After a broken pipe (``slmtok list | head -1``): point stdout at /dev/null, so that the interpreter's
    last flush at exit does not fail again and print a traceback."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (a test's capture): nothing to silence
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # (not for corpus runs: on Ray the device is the workers', on other machines)
        if isinstance(getattr(args, "device", None), str) and not hasattr(args, "ray_address"):
            check_device(args.device)
        if hasattr(args, "run"):
            code = args.run(args) or 0
        else:
            from slmtok.cli import commands

            code = getattr(commands, f"run_{args.command}")(args) or 0
        sys.stdout.flush()  # a broken pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:  # the reader left (| head): stop quietly, as a program killed by SIGPIPE
        _quiet_stdout()
        return 141
    except KeyboardInterrupt:
        print("slmtok: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one line for every expected failure, traceback otherwise
        from slmtok.errors import SlmtokError

        if isinstance(error, (SlmtokError, OSError)):
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            print(f"slmtok: error: {message}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
