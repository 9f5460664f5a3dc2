"""``slmtok stream-resynth``: encode and decode a file chunk by chunk through ``tok.streaming()``.

Reports each chunk's encode + decode latency (median, p95) and whether the stream keeps up with real
time (p95 latency below the chunk's duration), with the engine that ran (``--engine``: Mimi's carried
state by default, else recompute; see ``slmtok.codecs.streaming``). Only the standard library is imported at module level
(``slmtok --help`` imports every command module).
"""

from __future__ import annotations

import argparse
import json

from slmtok.cli.main import tokenizer_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stream-resynth",
        help="resynthesise a file chunk by chunk with a causal tokenizer; report per-chunk latency",
    )
    p.add_argument("input", metavar="IN", help="an audio file")
    p.add_argument("-o", "--output", required=True, help="audio file to write (.wav, .flac or .ogg)")
    p.add_argument("-t", "--tokenizer", default="mimi", help="a causal tokenizer (default mimi)")
    p.add_argument("--chunk-ms", type=float, default=80.0, help="chunk duration in milliseconds (default 80)")
    p.add_argument("-k", "--n-codebooks", type=int, help="codebooks per frame (default: the card's)")
    p.add_argument(
        "--engine",
        choices=("auto", "carried", "recompute"),
        default="auto",
        help="carried: the model's carried state, constant cost per chunk (mimi); recompute: re-encode "
        "from the start, O(n^2); auto (default): carried where the tokenizer has it",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="refuse longer input (default: no bound for the carried engine, 60 for recompute)",
    )
    tokenizer_args(p, with_name=False)  # --device, -O KEY=VALUE, --checkpoint
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_stream_resynth)


def run_stream_resynth(args: argparse.Namespace) -> int:
    import time

    import torch

    from slmtok.audio import prepare, read_audio, write_audio
    from slmtok.cli.commands import _load_tokenizer
    from slmtok.errors import SlmtokError
    from slmtok.inputs import collect
    from slmtok.outputs import check_writable

    if not (args.chunk_ms > 0 and args.chunk_ms == args.chunk_ms):
        raise SlmtokError(f"--chunk-ms must be a positive number of milliseconds, got {args.chunk_ms:g}")
    items = collect([args.input])
    if len(items) != 1:
        raise SlmtokError(f"stream-resynth takes one audio file; {args.input} holds {len(items)}")
    from pathlib import Path

    output = Path(args.output)
    check_writable(items, [output])
    wav, rate = read_audio(items[0].path)
    tok = _load_tokenizer(args, args.tokenizer)
    stream = tok.streaming(1, n_codebooks=args.n_codebooks, max_seconds=args.max_seconds, engine=args.engine)
    engine = stream.encoder.engine
    limit = args.max_seconds if args.max_seconds is not None else (None if engine == "carried" else 60.0)
    card = tok.card
    seconds = wav.shape[-1] / rate
    if limit is not None and seconds > limit:
        raise SlmtokError(
            f"{args.input} holds {seconds:.4g} s, more than --max-seconds {limit:g}"
            + ("" if engine == "carried" else " (the recompute engine re-encodes from the start)")
        )
    x = prepare(wav, rate, None, target_rate=card.sample_rate, target_channels=card.channels).wav[0]  # [C, T]
    step = max(1, int(round(args.chunk_ms * card.sample_rate / 1000)))
    pieces, latencies = [], []
    for start in range(0, x.shape[-1], step):
        t0 = time.perf_counter()
        pieces.append(stream.decoder.push(stream.encoder.push(x[:, start : start + step])).wav[0])
        latencies.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    pieces.append(stream.decoder.push(stream.encoder.flush()).wav[0])
    pieces.append(stream.decoder.flush().wav[0])
    flush_latency = time.perf_counter() - t0
    out = torch.cat(pieces, dim=-1)
    write_audio(output, out.clamp(-1, 1), card.sample_rate)
    lat = torch.tensor(latencies or [0.0], dtype=torch.float64)
    chunk_s = step / card.sample_rate
    median, p95 = float(lat.median()), float(torch.quantile(lat, 0.95))
    report = {
        "tokenizer": card.name,
        "engine": engine,
        "input": str(items[0].path),
        "output": str(output),
        "audio_seconds": x.shape[-1] / card.sample_rate,
        "chunk_ms": chunk_s * 1000,
        "chunks": len(latencies),
        "latency_median_ms": median * 1000,
        "latency_p95_ms": p95 * 1000,
        "flush_ms": flush_latency * 1000,
        "real_time_factor": float(lat.sum()) / max(x.shape[-1] / card.sample_rate, 1e-9),
        "keeps_up": p95 <= chunk_s,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        verdict = "keeps up with real time" if report["keeps_up"] else "does NOT keep up with real time"
        print(
            f"{card.name} ({engine}): {report['audio_seconds']:.2f} s in {len(latencies)} chunks of {chunk_s * 1000:g} ms; "
            f"latency median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms; {verdict} -> {output}"
        )
    return 0
