"""Speech corpora that can be had on a machine without model hubs: the Asterisk voice prompts.

Debian's ``asterisk-core-sounds-{en,es,fr,it,ru}-g722`` packages hold studio recordings (16 kHz G.722,
CC-BY-SA-3.0): English by one female talker (Allison, 568 prompts, 25.5 min), and one talker per other
language. The ``-en`` text package has transcripts. Install with
``apt-get install asterisk-core-sounds-en-g722 asterisk-core-sounds-en``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from slmtok.errors import SlmtokError

SOUNDS = Path("/usr/share/asterisk/sounds")
#: language -> folder; es is the same talker as en (Allison), the others are three more talkers
TALKERS = {
    "en": "en_US_f_Allison",
    "es": "es_MX_f_Allison",
    "fr": "fr_CA_f_June",
    "it": "it_IT_m_Carlo",
    "ru": "ru_RU_f_IvrvoiceRU",
}


def asterisk_prompts(language: str = "en", *, extension: str = "g722") -> list[Path]:
    """Sorted prompt files of one language (``.g722`` at 16 kHz, or ``.wav`` at 8 kHz)."""
    root = _root(language)
    files = sorted(p for p in root.rglob(f"*.{extension}") if p.parent.name != "silence")
    if not files:
        raise SlmtokError(
            f"no .{extension} prompts under {root}: apt-get install asterisk-core-sounds-{language}-{extension}"
        )
    return files


def asterisk_transcripts() -> dict[str, str]:
    """English prompt name (path below the language folder, no extension) -> transcript."""
    path = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
    if not path.exists():
        raise SlmtokError(f"no transcripts at {path}: apt-get install asterisk-core-sounds-en")
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, sep, text = line.partition(":")
            if sep and text.strip() and not line.startswith(";"):
                out[name.strip()] = text.strip()
    return out


def _root(language: str) -> Path:
    if language not in TALKERS:
        raise SlmtokError(f"unknown Asterisk language {language!r}; one of {', '.join(TALKERS)}")
    candidates = [SOUNDS / TALKERS[language], SOUNDS / language]
    for c in candidates:
        if c.is_dir():
            return c
    found = sorted(p for p in SOUNDS.glob(f"{language}*") if p.is_dir()) if SOUNDS.is_dir() else []
    if found:
        return found[0]
    raise SlmtokError(f"no Asterisk {language} prompts: apt-get install asterisk-core-sounds-{language}-g722")
