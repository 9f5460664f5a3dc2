"""``slmtok encode-corpus``: sharded, resumable encoding of whole corpora (local or Ray)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "encode-corpus",
        help="encode a whole corpus into sharded token files, resumable (local or Ray engine)",
        description="Encode every input into shards under OUT. Re-run the same command to resume a killed run.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio files, folders, .tsv/.jsonl manifests, Kaldi wav.scp, Lhotse cuts, datasets folders, .tar",
    )
    p.add_argument("-o", "--output", required=True, help="output folder (new, or a run to resume)")
    p.add_argument("-t", "--tokenizer", default="mel-rvq", help="tokenizer name (default mel-rvq)")
    p.add_argument(
        "-O", "--option", action="append", default=[], metavar="KEY=VALUE", help="tokenizer option"
    )
    p.add_argument("--checkpoint", help="local checkpoint in the upstream's own format (recorded by sha256)")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="on a restart, encode again every shard with failed inputs (default: only inputs that failed "
        "to read and are readable now)",
    )
    p.add_argument("-k", "--n-codebooks", type=int, help="codebooks to emit (default: the card's)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or ray")
    p.add_argument("--shard-size", type=int, default=256, help="inputs per shard (default 256)")
    p.add_argument(
        "--batch-seconds", type=float, default=120.0, help="padded audio seconds per batch (default 120)"
    )
    p.add_argument("--workers", type=int, default=2, help="audio reader threads (default 2)")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device for the local engine; any non-cpu value uses GPUs on Ray",
    )
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--actors", type=int, help="Ray tokenizer actors (default: one per GPU, else CPUs / 2)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import time

    from slmtok.cli.main import _option
    from slmtok.corpus import encode_corpus

    options = dict(_option(o) for o in args.option)
    if args.checkpoint:
        if "checkpoint" in options:
            from slmtok.errors import SlmtokError

            raise SlmtokError("give the checkpoint once: --checkpoint or -O checkpoint=..., not both")
        options["checkpoint"] = args.checkpoint
    state = {"start": time.perf_counter(), "done": 0, "seconds": 0.0}

    def progress(result, plan) -> None:
        state["done"] += 1
        state["seconds"] += result.audio_seconds
        elapsed = time.perf_counter() - state["start"]
        rate = state["seconds"] / elapsed if elapsed else 0.0
        left = len(plan.shards) - state["done"]
        eta = left * elapsed / state["done"] if state["done"] else 0.0
        if not args.json:
            print(
                f"shard {result.index + 1}/{len(plan.shards)}: {result.items} encoded, {result.failures} failed; "
                f"{state['seconds'] / 3600:.3f} h of audio at {rate:.1f} s/s, ETA {eta:.0f} s",
                flush=True,
            )

    summary = encode_corpus(
        args.inputs,
        args.output,
        tokenizer=args.tokenizer,
        options=options,
        engine=args.engine,
        n_codebooks=args.n_codebooks,
        shard_size=args.shard_size,
        batch_seconds=args.batch_seconds,
        workers=args.workers,
        device=args.device,
        ray_address=args.ray_address,
        actors=args.actors,
        progress=progress,
        warn=lambda message: print(f"slmtok: warning: {message}", file=sys.stderr, flush=True),
        retry_failed=args.retry_failed,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        speed = summary["audio_seconds_per_second"]
        print(
            f"{summary['encoded']}/{summary['inputs']} inputs encoded with {summary['tokenizer']} "
            f"({summary['audio_seconds'] / 3600:.3f} h of audio, {summary['failures']} failures, "
            f"{summary['shards']} shards); this run: {summary['audio_seconds_this_run']:.1f} s of audio"
            + (f" at {speed:.1f} s/s" if speed else "")
            + f" -> {args.output}"
        )
    return 0 if summary["failures"] == 0 else 3
