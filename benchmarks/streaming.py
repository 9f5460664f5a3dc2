"""Streaming speed: per-chunk encode + decode latency and real-time factor of ``tok.streaming()``.

Mimi at its full published size (transformers' default ``MimiConfig``) with random weights
(``slmtok.codecs.standins``: the architecture is the real one, so the speed is; the audio is not
meaningful), on 1 and 2 CPU threads, pushing a ``--seconds`` speech-like probe in ``--chunk-ms`` chunks,
each chunk's codes decoded at once (encode + decode latency per chunk).

- ``carried`` (the default engine for Mimi): the whole stream is run. Reported: latency median / p95 /
  last, wall-clock real-time factor (sum of latencies / audio seconds), CPU real-time factor (process
  CPU seconds / audio seconds: on a machine shared with other jobs, the share of a core this process
  got does not inflate it), the median latency of the first and second half (constant cost), the
  carried state's size at each third of the stream (bounded), and exactness on the full-size model:
  frames whose codes differ from ``tok.encode`` of the whole input, and the largest difference between
  the streamed audio and ``tok.decode`` of the whole codes (relative to the peak).
- ``recompute``: streaming ``S`` seconds costs O(S^2), so the whole stream is not run (30 s in 80 ms
  chunks would put about 3 hours of audio through the model). The latency of one chunk is measured at
  ``--recompute-at`` positions (after pushing the prefix untimed), and the stream's real-time factor is
  estimated by interpolating those latencies linearly over every chunk (``estimated``: true).

Results: ``benchmarks/results/streaming.json`` (written atomically after every row), with the command,
the machine and its load average; each row also records its own command and stream length, and
``--merge`` keeps the earlier rows a run does not redo (e.g. re-measuring only Mimi's carried engine).

    python benchmarks/streaming.py [--seconds 30] [--chunk-ms 80] [--threads 1 2] [--merge]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import slmtok
from slmtok.atomic import atomic_path
from slmtok.codecs import standins

RESULTS = Path(__file__).parent / "results" / "streaming.json"


def chunk_starts(n: int, step: int) -> range:
    return range(0, n, step)


def run_carried(tok, x: torch.Tensor, chunk_ms: float) -> dict:
    """The whole stream through the carried engine; latencies in ms."""
    rate, seconds = tok.card.sample_rate, x.numel() / tok.card.sample_rate
    step = int(round(chunk_ms * rate / 1000))
    stream = tok.streaming(engine="carried")
    latencies, outputs, audio, state = [], [], [], {}
    starts = chunk_starts(x.numel(), step)
    marks = {starts[len(starts) * k // 3 - 1]: f"{k}/3" for k in (1, 2, 3)}
    cpu0 = time.process_time()
    for start in starts:
        t0 = time.perf_counter()
        tokens = stream.encoder.push(x[start : start + step])
        audio.append(stream.decoder.push(tokens).wav)
        latencies.append(time.perf_counter() - t0)
        outputs.append(tokens)
        if start in marks:
            state[marks[start]] = [stream.encoder.state_bytes(), stream.decoder.state_bytes()]
    t0 = time.perf_counter()
    outputs.append(stream.encoder.flush())
    audio.append(stream.decoder.push(outputs[-1]).wav)
    flush_ms = (time.perf_counter() - t0) * 1000
    cpu = time.process_time() - cpu0

    whole = tok.encode(x, rate)
    codes = torch.cat([o.codes for o in outputs], dim=-1)
    reference = tok.decode(whole).wav
    streamed = torch.cat(audio, dim=-1)
    lat = torch.tensor(latencies, dtype=torch.float64)
    half = len(latencies) // 2
    return {
        "engine": "carried",
        "chunks": len(latencies),
        "latency_median_ms": float(lat.median()) * 1000,
        "latency_p95_ms": float(torch.quantile(lat, 0.95)) * 1000,
        "latency_last_ms": latencies[-1] * 1000,
        "latency_median_first_half_ms": float(lat[:half].median()) * 1000,
        "latency_median_second_half_ms": float(lat[half:].median()) * 1000,
        "flush_ms": flush_ms,
        "real_time_factor": float(lat.sum()) / seconds,
        "cpu_real_time_factor": cpu / seconds,
        "keeps_up": float(torch.quantile(lat, 0.95)) <= chunk_ms / 1000,
        "state_bytes_encoder_decoder_at": state,
        "frames": int(codes.shape[-1]),
        "frames_differing_from_whole_encode": int((codes != whole.codes).any(1).sum())
        if codes.shape == whole.codes.shape
        else -1,
        "audio_max_abs_difference_from_whole_decode": float((streamed - reference).abs().max())
        if streamed.shape == reference.shape
        else None,
        "audio_peak": float(reference.abs().max()),
    }


def run_recompute(tok, x: torch.Tensor, chunk_ms: float, positions: list[float]) -> dict:
    """One timed chunk of the recompute engine at each position (s), the prefix pushed untimed; the
    stream's real-time factor estimated by linear interpolation over every chunk."""
    rate, seconds = tok.card.sample_rate, x.numel() / tok.card.sample_rate
    step = int(round(chunk_ms * rate / 1000))
    sampled = []
    for position in positions:
        start = min(max(0, int(round(position * rate)) - step), x.numel() - step)
        start -= start % step
        stream = tok.streaming(engine="recompute", max_seconds=seconds + 1)
        if start:
            stream.decoder.push(stream.encoder.push(x[:start]))
        t0 = time.perf_counter()
        stream.decoder.push(stream.encoder.push(x[start : start + step]))
        sampled.append(((start + step) / rate, time.perf_counter() - t0))
    at, lat = np.array([s[0] for s in sampled]), np.array([s[1] for s in sampled])
    ends = np.array([min(x.numel(), s + step) / rate for s in chunk_starts(x.numel(), step)])
    per_chunk = np.interp(ends, at, lat)
    return {
        "engine": "recompute",
        "chunks": len(ends),
        "estimated": True,
        "sampled_latency_ms": {f"{t:.2f}": ms * 1000 for t, ms in sampled},
        "latency_last_ms": float(lat[-1]) * 1000,
        "real_time_factor": float(per_chunk.sum()) / seconds,
        "keeps_up": bool(np.quantile(per_chunk, 0.95) <= chunk_ms / 1000),
    }


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--chunk-ms", type=float, default=80.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--engines", nargs="+", default=["carried", "recompute"], choices=["carried", "recompute"]
    )
    parser.add_argument(
        "--tokenizers", nargs="+", default=["mimi", "encodec-24khz"], choices=["mimi", "encodec-24khz"]
    )
    parser.add_argument(
        "--recompute-at", type=float, nargs="+", default=[0.08, 5, 10, 15, 20, 25, 30], help="positions (s)"
    )
    parser.add_argument(
        "--note", default="", help="free text stored in the results (e.g. the machine's load)"
    )
    parser.add_argument("-o", "--output", default=str(RESULTS))
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the output's rows that this run does not redo (other tokenizer, threads or engine)",
    )
    args = parser.parse_args()
    report = {
        "command": "python benchmarks/streaming.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "note": args.note,
        "models": "mimi: transformers' default MimiConfig (the published kyutai/mimi size); encodec-24khz: "
        "the encodec package's 24 kHz model; random weights",
        "seconds": args.seconds,
        "chunk_ms": args.chunk_ms,
        "load_average_at_start": os.getloadavg(),
        "rows": [],
    }
    if args.merge and Path(args.output).exists():
        report["rows"] = kept_rows(json.loads(Path(args.output).read_text()), args)
    with tempfile.TemporaryDirectory() as tmp:
        toks = {}
        if "mimi" in args.tokenizers:
            toks["mimi"] = slmtok.load(
                "mimi", checkpoint=str(standins.write_mimi(Path(tmp) / "mimi", tiny=False))
            )
        if "encodec-24khz" in args.tokenizers:
            path = standins.write_encodec(Path(tmp) / "encodec_24khz-00000000.th", tiny=False)
            toks["encodec-24khz"] = slmtok.load("encodec-24khz", checkpoint=str(path))
        before = torch.get_num_threads()
        try:
            for threads, (name, tok), engine in itertools.product(args.threads, toks.items(), args.engines):
                if engine == "carried" and name != "mimi":
                    continue
                torch.set_num_threads(threads)
                x = standins.probe_signal(tok.card.sample_rate, args.seconds, 1, 0).flatten()
                row = {"tokenizer": name, "threads": threads, "chunk_ms": args.chunk_ms}
                tok.decode(tok.encode(x[: tok.card.sample_rate], tok.card.sample_rate))  # warm-up, untimed
                if engine == "carried":
                    row.update(run_carried(tok, x, args.chunk_ms))
                else:
                    positions = [p for p in args.recompute_at if p <= args.seconds]
                    row.update(run_recompute(tok, x, args.chunk_ms, positions))
                row["load_average"] = os.getloadavg()
                row.update(command=report["command"], seconds=args.seconds)
                report["rows"].append(row)
                print(json.dumps(row))
                write(Path(args.output), report)  # after every row: a cut-short run keeps its rows
        finally:
            torch.set_num_threads(before)
    print(f"wrote {args.output}")


def kept_rows(previous: dict, args) -> list[dict]:
    """Rows of an earlier results file that this run does not redo, each labelled with the command and
    stream length that produced it."""
    redo = set(itertools.product(args.tokenizers, args.threads, args.engines))
    return [
        {
            **row,
            "command": row.get("command", previous["command"]),
            "seconds": row.get("seconds", previous["seconds"]),
        }
        for row in previous["rows"]
        if (row["tokenizer"], row["threads"], row["engine"]) not in redo
    ]


def write(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
