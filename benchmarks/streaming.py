"""Streaming speed: per-chunk encode + decode latency and real-time factor of ``tok.streaming()``.

Mimi and EnCodec 24 kHz at their full published sizes with random weights (``slmtok.codecs.standins``:
the architectures are the real ones, so the speed is; the audio is not meaningful), on 1 and 2 CPU
threads, pushing a speech-like probe in chunks of ``--chunk-ms``. slmtok streams by recomputing from
the start (exact, O(n^2), see ``slmtok.codecs.streaming``), so a chunk's latency grows with the time
already streamed: the report gives the median, p95 and last chunk's latency for a ``--seconds`` stream,
and ``keeps_up`` (p95 <= chunk duration). Results: ``benchmarks/results/streaming.json``.

    python benchmarks/streaming.py [--seconds 4] [--chunk-ms 80] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import slmtok
from slmtok.codecs import standins

RESULTS = Path(__file__).parent / "results" / "streaming.json"


def measure(tok, seconds: float, chunk_ms: float) -> dict:
    """Stream ``seconds`` of probe audio through ``tok`` in ``chunk_ms`` chunks; latencies in ms."""
    rate = tok.card.sample_rate
    x = standins.probe_signal(rate, seconds, 1, 0).flatten()
    step = int(round(chunk_ms * rate / 1000))
    stream = tok.streaming(max_seconds=seconds + 1)
    latencies = []
    for start in range(0, x.numel(), step):
        t0 = time.perf_counter()
        stream.decoder.push(stream.encoder.push(x[start : start + step]))
        latencies.append(time.perf_counter() - t0)
    stream.decoder.push(stream.encoder.flush())
    lat = torch.tensor(latencies, dtype=torch.float64)
    return {
        "chunks": len(latencies),
        "latency_median_ms": float(lat.median()) * 1000,
        "latency_p95_ms": float(torch.quantile(lat, 0.95)) * 1000,
        "latency_last_ms": latencies[-1] * 1000,
        "real_time_factor": float(lat.sum()) / seconds,
        "keeps_up": float(torch.quantile(lat, 0.95)) <= chunk_ms / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--chunk-ms", type=float, default=80.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("-o", "--output", default=str(RESULTS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = standins.write_mimi(Path(tmp) / "mimi", tiny=False)
        encodec = standins.write_encodec(Path(tmp) / "encodec_24khz-00000000.th", tiny=False)
        toks = {
            "mimi": slmtok.load("mimi", checkpoint=str(folder)),
            "encodec-24khz": slmtok.load("encodec-24khz", checkpoint=str(encodec)),
        }
        before = torch.get_num_threads()
        try:
            for threads in args.threads:
                torch.set_num_threads(threads)
                for name, tok in toks.items():
                    row = {"tokenizer": name, "threads": threads, "chunk_ms": args.chunk_ms}
                    row.update(measure(tok, args.seconds, args.chunk_ms))
                    rows.append(row)
                    print(json.dumps(row))
                    write(Path(args.output), args, rows)  # after every row: a cut-short run keeps its rows
        finally:
            torch.set_num_threads(before)
    print(f"wrote {args.output}")


def write(out: Path, args: argparse.Namespace, rows: list[dict]) -> None:
    """The report so far: machine, settings and one row per (tokenizer, threads)."""
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
        },
        "note": "random-weight full-size models; slmtok streams by recomputing from the start (O(n^2))",
        "seconds": args.seconds,
        "chunk_ms": args.chunk_ms,
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
