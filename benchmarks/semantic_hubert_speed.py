"""HuBERT-base feature extraction throughput: batched vs one file at a time (seconds of audio per second).

    python benchmarks/semantic_hubert_speed.py [--files 24] [--batch-size 8] [--layer 12] [--device cpu]

Weights: a random HuBERT-base written in the fairseq format (no pretrained weights can be downloaded
here; the architecture, and so the cost, is the published one). Audio: the first ``--files`` prompts of at
least 2 s of the fr/it/ru Asterisk talkers (16 kHz). Batches are formed from files sorted by length (as a
corpus pass would), padded, with per-item masks. Writes benchmarks/results/semantic_hubert_speed.json.
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
from slmtok.batching import pad_stack
from slmtok.corpora import asterisk_prompts
from slmtok.tokenizers.features.hubert import HuBERTFeatures
from slmtok.tokenizers.semantic.standins import write_fairseq_hubert


def speech(n_files: int) -> list[torch.Tensor]:
    out = []
    for lang in ("fr", "it", "ru"):
        for path in asterisk_prompts(lang):
            try:
                wav, rate = slmtok.read_audio(path)
            except slmtok.AudioError:
                continue
            if wav.shape[-1] >= 2 * rate and len(out) < n_files * (("fr", "it", "ru").index(lang) + 1) // 3:
                out.append(wav[0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_fairseq_hubert(Path(tmp) / "hubert_base_ls960.pt", style="plain")
        features = HuBERTFeatures("hubert-base", checkpoint=path, layer=args.layer, device=args.device)
        wavs = sorted(speech(args.files), key=len)
        seconds = sum(w.numel() for w in wavs) / 16000
        features(wavs[0][:16000])  # warm-up
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
        start = time.perf_counter()
        for w in wavs:
            features(w)
        sync()
        single = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(wavs), args.batch_size):
            group = wavs[i : i + args.batch_size]
            features.extract(pad_stack(group), torch.tensor([w.numel() for w in group]))
        sync()
        batched = time.perf_counter() - start
    result = {
        "model": "HuBERT-base architecture (random weights, fairseq format)",
        "layer": args.layer,
        "files": len(wavs),
        "audio_seconds": seconds,
        "one_at_a_time": {"seconds": single, "audio_seconds_per_second": seconds / single},
        f"batched_{args.batch_size}": {"seconds": batched, "audio_seconds_per_second": seconds / batched},
        "device": args.device,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared, busy), {args.threads} threads",
        "load_average": os.getloadavg(),
    }
    out = Path(__file__).resolve().parent / "results" / "semantic_hubert_speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
