"""Training throughput of the speech LM: tokens/s through the real training loop, and MFU on a GPU.

    python benchmarks/lm_train_throughput.py [--config medium] [--steps 12] [--threads 2] [--device cpu]
    python benchmarks/lm_train_throughput.py --config base --block-size 1024 --batch-size 16 --device cuda

A synthetic data folder (one stream of 1024 codes, like one RVQ codebook; the content does not change
the speed) is written to a temporary folder and ``slmtok.lm.train`` (the training loop) runs on it: batches from the
memory-mapped shards, AdamW, clipping, bf16 autocast on CUDA. Throughput is read from the metrics
file (the first logging window, which holds start-up, is left out). On CUDA the metrics also carry
the model FLOP utilisation against the GPU's dense bf16 peak (``slmtok.lm.training.PEAK_BF16``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from slmtok.lm.data import Utterance, write_dataset
from slmtok.lm.model import ModelConfig, SpeechLM
from slmtok.lm.training import train


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        g = torch.Generator().manual_seed(0)
        frames = max(4 * args.block_size, 2000)
        utterances = [
            Utterance(f"u{i}", torch.randint(0, 1024, (1, frames), generator=g), frames / 50)
            for i in range(40)
        ]
        write_dataset(
            Path(tmp) / "data",
            [u.name for u in utterances],
            utterances,
            tokenizer={"name": "synthetic", "hash": "", "options": {}},
            codebook_sizes=(1024,),
            frame_rate=50.0,
            pattern="flatten",
            valid_fraction=0.05,
        )
        overrides = {"block_size": args.block_size} if args.block_size else {}
        config = ModelConfig.preset(args.config, **overrides).with_vocab((1027,))
        model = SpeechLM(config)
        result = train(
            Path(tmp) / "data",
            Path(tmp) / "run",
            model=args.config,
            block_size=config.block_size,
            batch_size=args.batch_size,
            max_steps=args.steps,
            warmup_steps=1,
            log_interval=args.log_every,
            eval_interval=10**9,
            eval_steps=config.block_size,
            save_interval=10**9,
            device=args.device,
            compile=args.compile,
            log=lambda line: None,
        )
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in rows if "tokens_per_second" in r][1:]  # the first window holds start-up
    rates = [r["tokens_per_second"] for r in windows]
    mfus = [r["mfu"] for r in windows if r.get("mfu") is not None]
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    return {
        "config": args.config,
        "parameters": model.num_parameters(),
        "parameters_without_embeddings": model.num_parameters(embeddings=False),
        "n_layer": config.n_layer,
        "n_embd": config.n_embd,
        "block_size": config.block_size,
        "batch_size": args.batch_size,
        "steps": result.step,
        "device": torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else f"cpu ({platform.processor() or platform.machine()})",
        "torch_threads": args.threads,
        "load_average": os.getloadavg()[0],
        "dtype": "bfloat16 autocast" if device.startswith("cuda") else "float32",
        "compile": args.compile,
        "tokens_per_second": statistics.median(rates) if rates else None,
        "mfu": statistics.median(mfus) if mfus else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="medium", help="model preset (default medium: ~10M parameters)")
    parser.add_argument("--block-size", type=int, default=256, help="context in tokens (default 256)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per step (default 8)")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps (default 12)")
    parser.add_argument("--log-every", type=int, default=3, help="steps per throughput window (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda (default cpu)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--out", type=Path, help="write the result as JSON into this folder")
    args = parser.parse_args()
    report = run(args)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"lm_train_throughput_{report['config']}_{args.device.split(':')[0]}.json").write_text(
            json.dumps(report, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
