"""A tiny probe folder written by hand (no espeak-ng), in the format of ``slmtok.probes.schema``.

Each "phone" is a steady harmonic tone with its own two formant-like partials, each "voice" scales the
pitch and the partials' balance, silence is faint noise; alignments are exact by construction. Used by
the suite and leaderboard tests to exercise the runner end to end in seconds; the measures' own
known-case tests live with the measures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from slmtok.probes.schema import ProbeItem, items_jsonl_bytes, make_header, write_index

RATE = 16000
PHONES = {
    "a": (700, 1200),
    "i": (300, 2300),
    "u": (350, 800),
    "s": (4500, 6000),
    "m": (250, 1000),
    "t": (3000, 4200),
}
WORDS = {"mat": "m a t", "sit": "s i t", "tam": "t a m", "muss": "m u s", "ism": "i s m", "tis": "t i s"}
VOICES = {"v0": (1.0, 0.6), "v1": (1.25, 0.3), "v2": (0.8, 0.9)}  # pitch factor, second-partial weight
PHONE_SECONDS, SIL_SECONDS = 0.09, 0.12


def _tone(phone: str, seconds: float, voice: str, pitch: float, rng: np.random.Generator) -> np.ndarray:
    """``seconds`` of one phone in one voice (``pitch`` scales every partial), or faint noise for SIL."""
    n = int(round(seconds * RATE))
    if phone == "SIL":
        return 0.003 * rng.standard_normal(n)
    t = np.arange(n) / RATE
    scale, weight = VOICES[voice]
    f1, f2 = PHONES[phone]
    x = np.sin(2 * np.pi * f1 * scale * pitch * t) + weight * np.sin(2 * np.pi * f2 * scale * pitch * t)
    return 0.25 * x


def _item(
    folder: Path,
    item_id: str,
    set_name: str,
    words: list[str],
    voice: str,
    seed: int,
    *,
    speed: float = 1.0,
    noise: float = 0.0,
    pitch: float = 1.0,
    **fields: str,
) -> ProbeItem:
    """Write one item's FLAC (``words`` spoken in ``voice``) and return its ``ProbeItem``."""
    rng = np.random.default_rng(seed)
    sequence = [("SIL", "")] + [(p, w) for w in words for p in WORDS[w].split()] + [("SIL", "")]
    pieces, phones, t = [], [], 0.0
    for phone, _ in sequence:
        seconds = (SIL_SECONDS if phone == "SIL" else PHONE_SECONDS) * speed
        pieces.append(_tone(phone, seconds, voice, pitch, rng))
        n = pieces[-1].size
        phones.append((phone, round(t, 6), round(t + n / RATE, 6)))
        t = phones[-1][2]
    spans, k = [], 1
    for w in words:
        n = len(WORDS[w].split())
        spans.append((w, phones[k][1], phones[k + n - 1][2]))
        k += n
    audio = np.concatenate(pieces)
    if noise:
        audio = audio + noise * rng.standard_normal(audio.size)
    (folder / "audio").mkdir(exist_ok=True)
    sf.write(folder / "audio" / f"{item_id}.flac", audio.astype(np.float32), RATE, subtype="PCM_16")
    return ProbeItem(
        id=item_id,
        set=set_name,
        audio=f"audio/{item_id}.flac",
        seconds=audio.size / RATE,
        voice=voice,
        speaker=voice,
        text=" ".join(words),
        phones=tuple(phones),
        words=tuple(spans),
        phone_string=" ".join(p for p, *_ in phones if p != "SIL"),
        pair=fields.get("pair"),
        member=fields.get("member"),
        group=fields.get("group"),
        variant=fields.get("variant"),
    )


def write_probe_folder(folder: Path, *, seed: int = 0, sentences: int = 4) -> Path:
    """Write the tiny probe folder (about 40 files, 1 minute of audio) into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = sorted(WORDS)
    items: list[ProbeItem] = []
    counter = 0

    def sentence() -> list[str]:
        return [names[i] for i in rng.integers(0, len(names), size=3)]

    for voice in ("v0", "v1"):
        for k in range(sentences * 2):
            counter += 1
            items.append(_item(folder, f"train-{voice}-{k:02d}", "train", sentence(), voice, counter))
        counter += 1
        items.append(_item(folder, f"valid-{voice}", "valid", sentence(), voice, counter))
    for voice in VOICES:
        for k in range(sentences):
            counter += 1
            items.append(_item(folder, f"content-{voice}-{k:02d}", "content", sentence(), voice, counter))
    for g in range(2):
        words = sentence()
        variants = {"clean": {}, "noise": {"noise": 0.05}, "pitch+2": {"pitch": 2 ** (2 / 12)},
                    "speed0.9": {"speed": 1 / 0.9}, "voice": {}}  # fmt: skip
        for variant, change in variants.items():
            counter += 1
            voice = "v2" if variant == "voice" else "v0"
            slug = variant.replace("+", "p").replace(".", "_")
            items.append(
                _item(folder, f"inv-{g}-{slug}", "invariance", words, voice, counter, group=f"g{g}",
                      variant=variant, **change)
            )  # fmt: skip
    for p in range(3):
        words = sentence()
        counter += 1
        items.append(
            _item(folder, f"lex-{p}-good", "lexical", words, "v0", counter, pair=f"lex-{p}", member="good")
        )
        bad = list(reversed(words))
        counter += 1
        items.append(
            _item(folder, f"lex-{p}-bad", "lexical", bad, "v0", counter, pair=f"lex-{p}", member="bad")
        )
    raw = items_jsonl_bytes(items)
    voices = [{"id": v, "engine": "test-tones", "voice": v, "split": "train"} for v in VOICES]
    write_index(folder, make_header(items, raw, seed=seed, voices=voices, phone_set="test"), raw)
    return folder
