"""``slmtok bpe fit``: BPE over a tokenizer's units (shorter sequences for a speech LM).

Only the standard library is imported at module level; the work is done in ``slmtok.bpe``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``bpe`` and its ``fit`` sub-command to the ``slmtok`` parser."""
    from slmtok.cli.main import tokenizer_args

    p = subparsers.add_parser("bpe", help="BPE over a tokenizer's units: fit a model, use it with -O bpe=DIR")
    sub = p.add_subparsers(dest="bpe_command", metavar="ACTION")
    sub.required = True
    f = sub.add_parser(
        "fit",
        help="token files, a corpus run or audio -> a BPE folder (bpe.json + bpe_card.json)",
        description="Fit a Hugging Face BPE over the codebook-0 units of a tokenizer (one Unicode character "
        "per unit, no pre-tokenizer). Load it with slmtok.load(NAME, bpe=OUT) or -O bpe=OUT: codes become "
        "BPE ids that decode exactly to the tokenizer's own audio.",
    )
    f.add_argument(
        "inputs",
        nargs="+",
        metavar="TOKENS_OR_CORPUS",
        help=".slmtok files or folders, a corpus run folder (index.jsonl), or audio files/folders/manifests",
    )
    f.add_argument("-o", "--output", required=True, help="BPE folder to write")
    tokenizer_args(f)
    f.add_argument(
        "--vocab", type=int, default=4096, help="BPE vocabulary: the K units + merges (default 4096)"
    )
    f.add_argument("--dedup", action="store_true", help="collapse repeated units before BPE (semantic units)")
    f.add_argument(
        "--codebook",
        type=int,
        choices=(0,),
        help="0: allow codebook 0 of a multi-codebook acoustic tokenizer (refused otherwise)",
    )
    f.add_argument("--min-frequency", type=int, default=2, help="merge pairs seen at least this often")
    f.add_argument("-b", "--batch-size", type=int, default=8, help="files per encode batch (default 8)")
    f.add_argument("--force", action="store_true", help="replace a BPE model already in the folder")
    f.add_argument("--json", action="store_true", help="print the BPE card as JSON")
    f.set_defaults(run=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    from slmtok.bpe.fit import fit
    from slmtok.cli.commands import _check_options

    options = dict(args.option)
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    if "bpe" in options:
        from slmtok.errors import SlmtokError

        raise SlmtokError("bpe fit wraps a plain tokenizer: drop -O bpe=...")
    _check_options(args.tokenizer, options)
    result = fit(
        args.inputs,
        args.tokenizer,
        args.output,
        vocab_size=args.vocab,
        dedup=args.dedup,
        codebook=args.codebook,
        min_frequency=args.min_frequency,
        options=options,
        device=args.device,
        batch_size=args.batch_size,
        force=args.force,
    )
    if args.json:
        print(json.dumps({"name": result.name, "folder": str(result.folder), **result.card}, indent=2))
        return 0
    t = result.card["training"]
    rate = f", {t['bpe_tokens_per_second']:.1f} BPE tokens/s" if t.get("bpe_tokens_per_second") else ""
    print(
        f"{result.name}: {result.card['vocab_size']} ids over {result.card['n_units']} units"
        f"{' (deduplicated)' if result.card['dedup'] else ''}; {t['utterances']} utterances, "
        f"{t['frames']} frames -> {t['bpe_tokens']} BPE tokens ({t['frames_per_bpe_token']:.2f} frames/token"
        f"{rate}) -> {result.folder}; use -t {result.card['base']['name']} -O bpe={result.folder}"
    )
    return 0
