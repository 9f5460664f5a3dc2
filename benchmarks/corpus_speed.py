"""Corpus encoding throughput: ``encode-corpus`` (local engine) against a naive loop over files.

    python benchmarks/corpus_speed.py [--tokenizers mel-rvq mfcc-km] [--language en] [--threads 2]

Both sides encode the same files (the Asterisk prompts of one language, 16 kHz G.722) with the same
tokenizer in the same process, one after the other; the naive loop reads each file and calls
``Tokenizer.encode`` on it alone, as a home-made script would. Prints and writes audio seconds encoded
per second of wall time for each, and their ratio. Codes are checked identical for every file.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

import slmtok
from slmtok.corpora import asterisk_prompts
from slmtok.corpus import encode_corpus, iter_items
from slmtok.inputs import collect


def naive(tok, files: list[Path], folder: Path) -> tuple[float, dict[str, torch.Tensor]]:
    codes, seconds = {}, 0.0
    for path in files:
        try:
            wav, rate = slmtok.read_audio(path)
        except slmtok.AudioError:
            continue
        codes[path.relative_to(folder).with_suffix("").as_posix()] = tok.encode(wav, rate).codes
        seconds += wav.shape[-1] / rate
    return seconds, codes


def run(tokenizer: str, options: dict, files: list[Path], folder: Path, workers: int) -> dict:
    tok = slmtok.load(tokenizer, **options)
    start = time.perf_counter()
    seconds, reference = naive(tok, files, folder)
    naive_time = time.perf_counter() - start
    out = Path(tempfile.mkdtemp(prefix="corpus-bench-"))
    start = time.perf_counter()
    summary = encode_corpus([str(folder)], out / "run", tokenizer=tokenizer, options=options, workers=workers)
    engine_time = time.perf_counter() - start  # includes planning (reading every header) and the index
    same = all(torch.equal(tokens.codes, reference[row["id"]]) for row, tokens in iter_items(out / "run"))
    return {
        "tokenizer": tokenizer,
        "options": options,
        "files": len(reference),
        "audio_seconds": seconds,
        "naive_audio_seconds_per_second": seconds / naive_time,
        "engine_audio_seconds_per_second": summary["audio_seconds"] / engine_time,
        "ratio": (summary["audio_seconds"] / engine_time) / (seconds / naive_time),
        "identical_codes": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizers", nargs="+", default=["mel-rvq", "mfcc-km"])
    parser.add_argument("--language", default="en")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts = asterisk_prompts(args.language)
    folder = prompts[0].parent
    while not all(folder in f.parents for f in prompts):
        folder = folder.parent
    files = [item.path for item in collect([str(folder)])]  # every file encode-corpus will see
    rows = []
    for name in args.tokenizers:
        rows.append(run(name, {}, files, folder, args.workers))
        print(json.dumps(rows[-1]))
    result = {
        "benchmark": "corpus_speed",
        "corpus": f"asterisk {args.language} prompts ({folder})",
        "machine": {
            "platform": platform.platform(),
            "cpus": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "corpus_speed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
