"""Speed and quality of the embedded tokenizers on held-out real speech.

    python benchmarks/embedded_baselines.py [--files-per-talker 20] [--out benchmarks/results]

Speech: the Asterisk prompts of three talkers the codebooks never heard (fr June, it Carlo, ru
IvrvoiceRU; 16 kHz G.722), the first prompts of at least 2 s of each (shorter ones are single words,
beeps and tones, on which STOI is not defined). For each tokenizer: STOI of the resynthesis against the input, encode and
decode real-time factors (seconds of compute per second of audio, one file at a time, torch on the
threads given), tokens/s and bitrate. The oracle row decodes the unquantized log-mel with the same
Griffin-Lim, the ceiling of every mel-based baseline here.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from pystoi import stoi

import slmtok
from slmtok.corpora import asterisk_prompts
from slmtok.tokenizers.features.mel import LogMel
from slmtok.vocoders.griffin_lim import GriffinLimVocoder

MIN_SECONDS = 2.0
CONFIGS = [
    ("mel-rvq", {"n_codebooks": 4}),
    ("mel-rvq", {}),
    ("mfcc-km", {}),
    ("mfcc-km", {"dedup": True}),
    ("mulaw-8bit", {}),
]


def _stoi(reference: torch.Tensor, estimate: torch.Tensor, rate: int) -> float:
    n = min(reference.numel(), estimate.numel())
    return float(stoi(reference[:n].numpy(), estimate[:n].numpy(), rate, extended=False))


def run(files_per_talker: int) -> dict:
    files, audio = [], []
    for lang in ("fr", "it", "ru"):
        kept = 0
        for path in asterisk_prompts(lang):
            try:
                wav, rate = slmtok.read_audio(path)
            except slmtok.AudioError:  # the ru package has a few empty files
                continue
            if wav.shape[-1] >= MIN_SECONDS * rate and kept < files_per_talker:  # STOI needs a few seconds
                files.append(path)
                audio.append((wav, rate))
                kept += 1
    seconds = sum(w.shape[-1] / r for w, r in audio)
    rows = []
    for name, options in CONFIGS:
        tok = slmtok.load(name, **options)
        encode_time = decode_time = 0.0
        scores, frames = [], 0
        for wav, rate in audio:
            t0 = time.perf_counter()
            tokens = tok.encode(wav, rate)
            t1 = time.perf_counter()
            out = tok.decode(tokens)
            t2 = time.perf_counter()
            encode_time += t1 - t0
            decode_time += t2 - t1
            frames += int(tokens.lengths[0]) * tokens.n_codebooks
            scores.append(_stoi(wav[0], out.item(0)[0], rate))
        label = name + "".join(f" {k}={v}" for k, v in options.items())
        rows.append(
            {
                "tokenizer": label,
                "kind": tok.card.kind,
                "bitrate": tok.card.bitrate,
                "tokens_per_second": frames / seconds,
                "stoi": sum(scores) / len(scores),
                "encode_rtf": encode_time / seconds,
                "decode_rtf": decode_time / seconds,
                "hash": tok.card.hash[:12],
            }
        )
        print(json.dumps(rows[-1]))
    mel, vocoder = LogMel(), GriffinLimVocoder()
    oracle = [_stoi(w[0], vocoder(mel(w[0]), w.shape[-1]), r) for w, r in audio]
    rows.append(
        {"tokenizer": "oracle log-mel + Griffin-Lim", "kind": "reference", "stoi": sum(oracle) / len(oracle)}
    )
    print(json.dumps(rows[-1]))
    return {
        "benchmark": "embedded_baselines",
        "files": len(files),
        "audio_seconds": seconds,
        "talkers": ["fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU"],
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "rows": rows,
    }


def to_markdown(result: dict) -> str:
    lines = [
        f"Held-out real speech: {result['files']} Asterisk prompts of 2 s or more, {result['audio_seconds'] / 60:.1f} min, 3 talkers; "
        f"torch threads: {result['machine']['torch_threads']}.",
        "",
        "| tokenizer | kind | kbps | tokens/s | STOI | encode RTF | decode RTF |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "bitrate" in r:
            lines.append(
                f"| {r['tokenizer']} | {r['kind']} | {r['bitrate'] / 1000:.2f} | {r['tokens_per_second']:.0f} | "
                f"{r['stoi']:.3f} | {r['encode_rtf']:.4f} | {r['decode_rtf']:.4f} |"
            )
        else:
            lines.append(f"| {r['tokenizer']} | {r['kind']} | - | - | {r['stoi']:.3f} | - | - |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files-per-talker", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = run(args.files_per_talker)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embedded_baselines.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "embedded_baselines.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
