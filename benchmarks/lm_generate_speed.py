"""Generation speed of the speech LM with the key/value cache against without it, in one run.

    python benchmarks/lm_generate_speed.py [--config medium] [--steps 256] [--threads 2] [--device cpu]

A randomly initialised model (the speed does not depend on the weights) continues a BOS prompt by
``--steps`` LM steps with ``slmtok.lm.generation.continue_steps``, once with the cache (one new step
through the network per step) and once without (the whole context every step), sampling with the
same settings. Default layout: the delay pattern over 8 codebooks of 1024 codes (mel-rvq), so each
step is 8 tokens. Reports steps/s, tokens/s and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from slmtok.lm.generation import continue_steps
from slmtok.lm.model import ModelConfig, SpeechLM
from slmtok.lm.patterns import BOS, make_pattern


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pattern = make_pattern(args.pattern, (1024,) * args.codebooks)
    block = args.steps + 1
    config = ModelConfig.preset(args.config, block_size=block).with_vocab(pattern.stream_vocab_sizes)
    model = SpeechLM(config).to(args.device).eval()
    prefix = pattern.special_row(BOS)[None]
    continue_steps(model, pattern, prefix, 4)  # warm-up
    timings = {}
    for use_cache in (True, False):
        generator = torch.Generator().manual_seed(0)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        continue_steps(
            model, pattern, prefix, args.steps, top_k=250, generator=generator, use_cache=use_cache
        )
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        timings["cache" if use_cache else "no_cache"] = time.perf_counter() - start
    steps_per_second = {k: args.steps / v for k, v in timings.items()}
    return {
        "config": args.config,
        "parameters": model.num_parameters(),
        "pattern": args.pattern,
        "codebooks": args.codebooks,
        "streams": pattern.n_streams,
        "steps": args.steps,
        "device": torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"cpu ({platform.processor() or platform.machine()})",
        "torch_threads": args.threads,
        "load_average": os.getloadavg()[0],
        "steps_per_second_cache": steps_per_second["cache"],
        "steps_per_second_no_cache": steps_per_second["no_cache"],
        "tokens_per_second_cache": steps_per_second["cache"] * pattern.n_streams,
        "tokens_per_second_no_cache": steps_per_second["no_cache"] * pattern.n_streams,
        "cache_speedup": timings["no_cache"] / timings["cache"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="medium", help="model preset (default medium: ~10M parameters)")
    parser.add_argument("--pattern", default="delay", help="codebook pattern (default delay)")
    parser.add_argument("--codebooks", type=int, default=8, help="codebooks of 1024 codes (default 8)")
    parser.add_argument("--steps", type=int, default=256, help="LM steps to generate (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda (default cpu)")
    parser.add_argument("--out", type=Path, help="write the result as JSON into this folder")
    args = parser.parse_args()
    report = run(args)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"lm_generate_speed_{report['config']}_{args.device.split(':')[0]}.json").write_text(
            json.dumps(report, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
