"""Steps/s of ``slmtok vocoder train``'s trainer on a GPU: fp32 vs bf16, one GPU, and torchrun on all GPUs.

    python benchmarks/gpu/vocoder_train_gpu.py --device cuda --json vocoder_gpu.json    # ~3 min on an H200
    python benchmarks/gpu/vocoder_train_gpu.py --device cpu --smoke                     # CPU, tiny, < 2 min

Every run trains the unit HiFi-GAN of ``slmtok.vocoders.training`` (the loop ``slmtok vocoder train`` runs:
generator + MPD + MSD, mel + feature-matching + adversarial losses, checkpoints) on a synthetic corpus
(harmonic tones whose pitch follows random unit runs: the speed of a step does not depend on what the
audio says). A run is one child process (``python -m torch.distributed.run`` for several processes);
steps/s comes from the trainer's own ``metrics.jsonl`` rows, the first ``--warmup`` steps left out. Runs:

- ``small-fp32`` / ``small-bf16``: the CLI defaults (size small, discriminators at width 0.25, 8 segments
  of 0.56 s), one device;
- ``base-bf16``: the published unit HiFi-GAN (size base, full-width discriminators, 16 segments), one GPU;
- ``base-bf16-ddp``: the same with 16 segments per GPU on every GPU (torchrun; skipped with one GPU).

On the CPU (``--smoke``) the sizes are tiny and the DDP run uses 2 gloo processes: it checks the script,
not a speed. Output: one JSON object (environment, and per run steps/s, segments/s, seconds of audio
trained per second, peak GPU memory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RATE, HOP, UNITS = 16000, 160, 100


def runs(device: str, smoke: bool, gpus: int) -> list[dict[str, Any]]:
    """The runs to time: name, trainer settings, process count."""
    if smoke:
        tiny = {"size": "tiny", "disc_width": 0.0625, "segment_seconds": 0.06, "batch_size": 2}
        return [
            {"name": "tiny-fp32", "processes": 1, "precision": "fp32", **tiny},
            {"name": "tiny-fp32-ddp", "processes": 2, "precision": "fp32", **tiny},
        ]
    small = {"size": "small", "disc_width": 0.25, "segment_seconds": 0.56, "batch_size": 8}
    base = {"size": "base", "disc_width": 1.0, "segment_seconds": 0.56, "batch_size": 16}
    out = [
        {"name": "small-fp32", "processes": 1, "precision": "fp32", **small},
        {"name": "small-bf16", "processes": 1, "precision": "bf16", **small},
        {"name": "base-bf16", "processes": 1, "precision": "bf16", **base},
    ]
    if device == "cpu":
        return [r for r in out if r["precision"] == "fp32"]
    if gpus > 1:
        out.append({"name": "base-bf16-ddp", "processes": gpus, "precision": "bf16", **base,
                    "batch_size": 16 * gpus})  # fmt: skip
    return out


def make_corpus(path: Path, items: int, seconds: float) -> None:
    """``items`` tones of ``seconds``: units in runs of 2-12 frames, pitch 100-300 Hz by unit."""
    import torch

    from slmtok.vocoders.training.data import UnitCorpus

    gen = torch.Generator().manual_seed(0)
    frames = int(seconds * RATE / HOP)
    units, audio = [], []
    for _ in range(items):
        runs_ = torch.randint(2, 13, (frames,), generator=gen)
        values = torch.randint(0, UNITS, (frames,), generator=gen)
        u = values.repeat_interleave(runs_)[:frames]
        f0 = (100 + 2 * u.float()).repeat_interleave(HOP)
        phase = torch.cumsum(2 * torch.pi * f0 / RATE, 0)
        wav = sum(torch.sin(k * phase) / k for k in range(1, 6)) * 0.2
        units.append(u)
        audio.append(wav.float())
    UnitCorpus([f"tone{i}" for i in range(items)], units, audio, HOP, RATE).save(path, {})


def worker(args: argparse.Namespace) -> int:
    """One process of a run (under torchrun or alone): train, then rank 0 writes ``result.json``."""
    import torch

    from slmtok.vocoders.training.data import UnitCorpus
    from slmtok.vocoders.training.distributed import setup
    from slmtok.vocoders.training.trainer import TrainConfig, VocoderTrainer, vocoder_config

    spec = json.loads(args.spec)
    place = setup(args.device, spec["precision"])
    out = Path(args.worker)
    corpus = UnitCorpus.load(Path(args.corpus), {})
    config = TrainConfig(
        size=spec["size"], disc_width=spec["disc_width"], segment_seconds=spec["segment_seconds"],
        batch_size=spec["batch_size"], steps=args.warmup + args.steps, checkpoint_every=10**9,
        validate_every=10**9, log_every=math.gcd(args.warmup, args.steps), log_every_seconds=None,
        tensorboard=False,
    )  # fmt: skip
    model = vocoder_config(config.size, num_units=UNITS, hop=HOP, sample_rate=RATE, duration_predictor=True)
    trainer = VocoderTrainer(out, corpus, config, model, validation=[0], placement=place)
    if place.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(place.device)
    summary = trainer.run()
    if place.is_main:
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        timed = {r["step"]: r["seconds"] for r in rows if "seconds" in r}
        first, last = args.warmup, args.warmup + args.steps
        rate = (last - first) / (timed[last] - timed[first])
        segment = config.segment_seconds
        result = {
            "steps_per_second": rate,
            "segments_per_second": rate * config.batch_size,
            "audio_seconds_per_second": rate * config.batch_size * segment,
            "device": str(place.device),
            "device_name": torch.cuda.get_device_name(place.device) if place.device.type == "cuda" else "cpu",
            "precision": place.precision,
            "processes": place.world,
            "final_mel_l1": summary.get("mel"),
            "peak_gpu_memory_gib": (
                torch.cuda.max_memory_allocated(place.device) / 2**30 if place.device.type == "cuda" else None
            ),
        }
        (out / "result.json").write_text(json.dumps(result), encoding="utf-8")
    if place.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default cuda)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps (checks the script)")
    parser.add_argument("--steps", type=int, help="timed steps per run (default 40; smoke 2)")
    parser.add_argument("--warmup", type=int, help="untimed first steps (default 5; smoke 1)")
    parser.add_argument("--only", nargs="+", help="run names to run (default: all)")
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--timeout", type=float, default=240, help="seconds per run (default 240)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.smoke else 40)
    args.warmup = args.warmup or (1 if args.smoke else 5)
    if args.worker:
        return worker(args)

    import torch

    gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    if args.device.startswith("cuda") and gpus == 0:
        print("vocoder_train_gpu: no CUDA GPU here; use --device cpu", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "benchmark": "vocoder_train_gpu",
        "torch": torch.__version__,
        "device": args.device,
        "gpus": gpus,
        "gpu_name": torch.cuda.get_device_name(0) if gpus else None,
        "cpu_count": os.cpu_count(),
        "smoke": args.smoke,
        "steps": args.steps,
        "warmup": args.warmup,
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="vocoder-gpu-") as tmp:
        corpus = Path(tmp) / "corpus.safetensors"
        make_corpus(corpus, items=4 if args.smoke else 64, seconds=1.0 if args.smoke else 4.0)
        for spec in runs(args.device, args.smoke, gpus):
            if args.only and spec["name"] not in args.only:
                continue
            folder = Path(tmp) / spec["name"]
            n = spec["processes"]
            launch = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                str(n),
            ]
            command = [*(launch if n > 1 else [sys.executable]), str(Path(__file__).resolve()),
                       "--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--worker", str(folder), "--spec", json.dumps(spec), "--corpus", str(corpus)]  # fmt: skip
            began = time.perf_counter()
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                report["runs"][spec["name"]] = {**spec, "error": f"timed out after {args.timeout:g} s"}
                continue
            record: dict[str, Any] = {**spec, "wall_seconds": round(time.perf_counter() - began, 1)}
            if done.returncode == 0 and (folder / "result.json").is_file():
                record.update(json.loads((folder / "result.json").read_text()))
            else:
                record["error"] = (done.stderr or done.stdout)[-1500:]
            report["runs"][spec["name"]] = record
            print(f"{spec['name']}: {record.get('steps_per_second', record.get('error'))}", file=sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0 if all("error" not in r for r in report["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
