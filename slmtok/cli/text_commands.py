"""``slmtok export-vocab`` and ``slmtok tokens-to-text``: speech units as text for LLM vocabularies.

The unit layout (``<|s_12|>``, ``<|c1_7|>``) is documented in ``slmtok.text_units``. Only the standard
library is imported at module level (``slmtok --help`` imports every command module).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slmtok.cli.main import tokenizer_args

LAYOUT_HELP = (
    "unit layout: auto (<|s_N|> for one codebook, else <|cK_N|> interleaved frame by frame), "
    "single or codebooks (default auto)"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-vocab",
        help="list a tokenizer's unit strings (<|s_N|> / <|cK_N|>) to add to a text LLM's vocabulary",
    )
    p.add_argument("name", metavar="NAME", help="tokenizer name")
    p.add_argument("-k", "--n-codebooks", type=int, help="codebooks the units cover (default: the card's)")
    p.add_argument("--layout", default="auto", choices=("auto", "single", "codebooks"), help=LAYOUT_HELP)
    p.add_argument(
        "-o",
        "--output",
        help="write to a .txt (one unit a line) or .json (a list) file (default: print one unit a line)",
    )
    tokenizer_args(p, with_name=False)  # --device, -O KEY=VALUE, --checkpoint
    p.set_defaults(run=run_export_vocab)

    p = sub.add_parser(
        "tokens-to-text", help=".slmtok token files -> unit strings, one JSON line per item (JSONL)"
    )
    p.add_argument("inputs", nargs="+", metavar="TOKENS", help=".slmtok files or folders")
    p.add_argument("--layout", default="auto", choices=("auto", "single", "codebooks"), help=LAYOUT_HELP)
    p.add_argument("-o", "--output", help="a .jsonl file to write (default: print to stdout)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=4 * 3600.0,
        help="refuse token files whose items would decode to more audio than this (default 14400 = 4 h)",
    )
    p.set_defaults(run=run_tokens_to_text)


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; one-line ``OutputError`` if the system refuses."""
    from slmtok.atomic import atomic_path
    from slmtok.cli.commands import _ensure_folder, _written

    try:
        with atomic_path(_ensure_folder(path)) as tmp, open(tmp, "w", encoding="utf-8") as file:
            file.write(text)
    except (OSError, UnicodeError) as error:
        raise _written(path, error) from None


def run_export_vocab(args: argparse.Namespace) -> int:
    from slmtok.cli.commands import _load_tokenizer
    from slmtok.errors import OutputError
    from slmtok.text_units import export_vocab

    out = Path(args.output) if args.output else None
    if out is not None:
        if out.suffix.lower() not in (".txt", ".json"):
            raise OutputError(f"cannot write {out}: name a .txt or .json file")
        if out.is_dir():
            raise OutputError(f"output {out} is a folder, not a file")
    tok = _load_tokenizer(args, args.name)
    vocab = export_vocab(tok, n_codebooks=args.n_codebooks, layout=args.layout)
    text = (
        json.dumps(vocab) + "\n"
        if out is not None and out.suffix.lower() == ".json"
        else "\n".join(vocab) + "\n"
    )
    if out is None:
        print(text, end="")
    else:
        _write_text(out, text)
    return 0


def run_tokens_to_text(args: argparse.Namespace) -> int:
    from slmtok.cli.commands import _collect_token_files
    from slmtok.errors import OutputError
    from slmtok.text_units import to_text
    from slmtok.tokenfile import load_tokens, read_header

    out = Path(args.output) if args.output else None
    if out is not None and out.suffix.lower() != ".jsonl":
        raise OutputError(f"cannot write {out}: name a .jsonl file")
    if out is not None and out.is_dir():
        raise OutputError(f"output {out} is a folder, not a file")
    items = _collect_token_files(args.inputs)
    if out is not None and any(out.exists() and item.path.samefile(out) for item in items):
        raise OutputError(f"output {out} is an input: writing it would destroy the input")
    lines = []
    for item in items:
        tokens = load_tokens(item.path, max_seconds=args.max_seconds)
        sources = read_header(item.path).get("sources") or [None] * tokens.batch_size
        for index, (source, text) in enumerate(
            zip(sources, to_text(tokens, layout=args.layout), strict=True)
        ):
            record = {
                "file": str(item.path),
                "item": index,
                "source": source,
                "tokenizer": tokens.tokenizer.name,
                "n_codebooks": tokens.n_codebooks,
                "frames": int(tokens.lengths[index]),
                "text": text,
            }
            lines.append(json.dumps(record, ensure_ascii=False))
    text = "\n".join(lines) + "\n"
    if out is None:
        print(text, end="")
    else:
        _write_text(out, text)
    return 0
