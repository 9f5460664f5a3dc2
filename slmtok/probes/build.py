"""``build_probes``: make a probe folder (``slmtok probes build``) offline, from espeak-ng and cmudict.

Every utterance is spoken from cmudict pronunciations given to espeak-ng as phoneme input, so phones and
words are aligned exactly (espeak-ng's own events). Sets (see ``slmtok.probes.schema``):

- ``train`` / ``valid``: grammatical sentences of ``slmtok.probes.syntax`` in the train voices (valid:
  sentences not in train; neither holds a sentence of a syntactic pair).
- ``content``: the same sentences in every voice, train and held-out.
- ``lexical``: a content word of the vocabulary and a non-word (``slmtok.probes.lexicon``), same voice,
  same phone count as spoken (pairs whose espeak-ng phones differ in number are dropped).
- ``syntactic``: minimal pairs of five phenomena; ``variant`` names the phenomenon.
- ``acoustic``: two halves of a sentence joined, constant (``consistent``) vs the second half in another
  voice, at another pitch, at another speaking rate, or with noise starting there (``changed:<factor>``);
  both members within 5 % of each other's length.
- ``invariance``: one sentence clean, with white noise at 10 dB SNR, shifted by +-2 semitones, at 0.9 and
  1.1 speed, and in a held-out voice.

The same seed, sizes, voices and espeak-ng version give byte-identical ``items.jsonl`` and audio. The
folder is built beside the target and renamed into place when complete.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from slmtok.probes import acoustic, lexicon, syntax
from slmtok.probes.espeak import DEFAULT_RATE, Engine, Speech
from slmtok.probes.schema import (
    AUDIO_DIR,
    SAMPLE_RATE,
    SILENCE,
    ProbeError,
    ProbeItem,
    items_jsonl_bytes,
    make_header,
    write_index,
)

DEFAULT_TRAIN_VOICES = ("en-us", "en-us+f3", "en-us+m3", "en+f2", "en-gb-x-rp+m5", "en-029+f4")
DEFAULT_HELDOUT_VOICES = ("en-us-nyc+f5", "en-gb-scotland+m2")
INVARIANCE_SNR_DB = 10.0
ACOUSTIC_SNR_DB = 15.0
SEMITONES = 2.0
ACOUSTIC_FACTORS = ("speaker", "pitch", "rate", "background")
MAX_LENGTH_MISMATCH = 0.05


@dataclass(frozen=True)
class Size:
    """How much of each set to make: train minutes of audio, and item, pair or group counts."""

    train_minutes: float
    valid_fraction: float
    content_per_voice: int
    lexical: int
    syntactic: int
    acoustic: int
    invariance: int


SIZES = {
    "small": Size(
        train_minutes=0.5,
        valid_fraction=0.1,
        content_per_voice=2,
        lexical=6,
        syntactic=5,
        acoustic=4,
        invariance=2,
    ),
    "default": Size(
        train_minutes=25.0,
        valid_fraction=0.04,
        content_per_voice=24,
        lexical=300,
        syntactic=300,
        acoustic=160,
        invariance=40,
    ),
}


def _rng(seed: int, name: str) -> np.random.Generator:
    """An independent generator per set, so that resizing one set leaves the others unchanged."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def _phoneme_text(prons: Sequence[Sequence[str]]) -> str:
    return " ".join(f"[[{lexicon.to_espeak(p)}]]" for p in prons) + "."


class _Builder:
    def __init__(self, folder: Path, engine: Engine, seed: int, progress: Callable[[str], None]) -> None:
        self.folder = folder
        self.engine = engine
        self.seed = seed
        self.progress = progress
        self.items: list[ProbeItem] = []
        self.dropped: dict[str, int] = {}

    # -------------------------------------------------------------------------------- speech + items

    def speak(self, words: Sequence[str], voice: str, *, rate: int = DEFAULT_RATE, pitch: int = 50) -> Speech:
        """Words (each in cmudict) spoken by espeak-ng from their cmudict pronunciations."""
        prons = [lexicon.pronounce(w) for w in words]
        return self.engine.synthesize(
            _phoneme_text(prons), voice, words=list(words), phonemes=True, rate=rate, pitch=pitch
        )

    def add(self, item_id: str, set_name: str, speech: Speech, voice: str, text: str, **fields) -> ProbeItem:
        """Write ``speech`` as ``audio/<id>.flac`` (16-bit FLAC) and record its item."""
        import soundfile as sf

        relative = f"{AUDIO_DIR}/{item_id}.flac"
        sf.write(str(self.folder / relative), speech.audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        phones = tuple((s, round(a, 6), round(b, 6)) for s, a, b in speech.phones)
        words = fields.pop("words", tuple((w, round(a, 6), round(b, 6)) for w, a, b in speech.words))
        item = ProbeItem(
            id=item_id,
            set=set_name,
            audio=relative,
            seconds=round(len(speech.audio) / SAMPLE_RATE, 6),
            voice=voice,
            speaker=voice,
            text=text,
            phones=phones,
            words=words,
            phone_string=" ".join(s for s, _, _ in phones if s != SILENCE),
            **fields,
        )
        item.validate(item_id)
        self.items.append(item)
        if len(self.items) % 250 == 0:
            self.progress(f"{len(self.items)} items")
        return item

    # -------------------------------------------------------------------------------------- sets

    def syntactic(self, n: int, voices: Sequence[str]) -> set[str]:
        rng = _rng(self.seed, "syntactic")
        grammar = syntax.Grammar(rng)
        seen: set[str] = set()
        made = 0
        attempts = 0
        while made < n and attempts < 50 * n:
            attempts += 1
            phenomenon = syntax.PHENOMENA[made % len(syntax.PHENOMENA)]
            pair = grammar.pair(phenomenon)
            if pair.good in seen:
                continue
            seen.update((pair.good, pair.bad))
            voice = voices[made % len(voices)]
            pair_id = f"syntactic-{made:05d}"
            for member, text in (("good", pair.good), ("bad", pair.bad)):
                speech = self.speak(text.split(), voice)
                self.add(
                    f"{pair_id}-{member}",
                    "syntactic",
                    speech,
                    voice,
                    text,
                    pair=pair_id,
                    member=member,
                    variant=phenomenon,
                )
            made += 1
        self.progress(f"syntactic: {made} pairs")
        return seen

    def lexical(self, n: int, voices: Sequence[str]) -> None:
        rng = _rng(self.seed, "lexical")
        words = syntax.content_words()
        avoid = {tuple(lexicon.base(p) for p in lexicon.pronounce(w)) for w in syntax.vocabulary()}
        combos = [(w, v) for v in voices for w in words]
        order = rng.permutation(len(combos))
        made = 0
        for index in order:
            if made >= n:
                break
            word, voice = combos[index]
            real = lexicon.pronounce(word)
            fake = lexicon.make_nonword(real, rng, avoid)
            if fake is None:
                self.dropped["lexical_no_nonword"] = self.dropped.get("lexical_no_nonword", 0) + 1
                continue
            spelled = f"[[{lexicon.to_espeak(fake)}]]"
            good = self.engine.synthesize(_phoneme_text([real]), voice, words=[word], phonemes=True)
            bad = self.engine.synthesize(_phoneme_text([fake]), voice, words=[spelled], phonemes=True)
            counts = {sum(1 for p in s.phones if p[0] != SILENCE) for s in (good, bad)}
            if counts != {len(real)}:  # espeak-ng read the phoneme string otherwise (e.g. t+S as tS)
                self.dropped["lexical_phone_count"] = self.dropped.get("lexical_phone_count", 0) + 1
                continue
            pair_id = f"lexical-{made:05d}"
            self.add(f"{pair_id}-good", "lexical", good, voice, word, pair=pair_id, member="good")
            self.add(f"{pair_id}-bad", "lexical", bad, voice, spelled, pair=pair_id, member="bad")
            made += 1
        self.progress(f"lexical: {made} pairs")

    def train_valid(
        self, minutes: float, valid_fraction: float, voices: Sequence[str], exclude: set[str]
    ) -> None:
        rng = _rng(self.seed, "train")
        grammar = syntax.Grammar(rng)
        used = set(exclude)

        def fresh() -> str:
            for _ in range(10_000):
                text = grammar.sentence()
                if text not in used:
                    used.add(text)
                    return text
            raise ProbeError("the grammar ran out of new sentences: ask for fewer --minutes")

        seconds = 0.0
        count = 0
        while seconds < minutes * 60:
            voice = voices[int(rng.integers(len(voices)))]
            text = fresh()
            speech = self.speak(text.split(), voice)
            self.add(f"train-{count:05d}", "train", speech, voice, text)
            seconds += speech.seconds
            count += 1
        n_valid = max(2, int(round(count * valid_fraction)))
        for k in range(n_valid):
            voice = voices[k % len(voices)]
            text = fresh()
            self.add(f"valid-{k:05d}", "valid", self.speak(text.split(), voice), voice, text)
        self.progress(f"train: {count} sentences, {seconds / 60:.1f} min; valid: {n_valid}")

    def content(self, per_voice: int, voices: Sequence[str]) -> None:
        grammar = syntax.Grammar(_rng(self.seed, "content"))
        texts: list[str] = []
        while len(texts) < per_voice:
            text = grammar.sentence()
            if text not in texts:
                texts.append(text)
        for v, voice in enumerate(voices):
            for k, text in enumerate(texts):
                self.add(f"content-{k:04d}-{v:02d}", "content", self.speak(text.split(), voice), voice, text)
        self.progress(f"content: {len(texts)} sentences x {len(voices)} voices")

    def invariance(self, n: int, voices: Sequence[str], others: Sequence[str]) -> None:
        rng = _rng(self.seed, "invariance")
        grammar = syntax.Grammar(rng)
        for g in range(n):
            voice, other = voices[g % len(voices)], others[g % len(others)]
            text = grammar.sentence()
            clean = self.speak(text.split(), voice)
            variants = {
                "clean": clean,
                "noise": replace(clean, audio=acoustic.add_noise(clean.audio, INVARIANCE_SNR_DB, rng)),
                "pitch+2": replace(clean, audio=acoustic.pitch_shift(clean.audio, SEMITONES)),
                "pitch-2": replace(clean, audio=acoustic.pitch_shift(clean.audio, -SEMITONES)),
                "speed0.9": acoustic.speed(clean, 0.9),
                "speed1.1": acoustic.speed(clean, 1.1),
                "voice": self.speak(text.split(), other),
            }
            group = f"invariance-{g:05d}"
            for variant, speech in variants.items():
                speaker = other if variant == "voice" else voice
                self.add(
                    f"{group}-{variant}", "invariance", speech, speaker, text, group=group, variant=variant
                )
        self.progress(f"invariance: {n} groups")

    def _matched(
        self, words: Sequence[str], voice: str, target: int, *, rate: int, pitch: int = 50
    ) -> Speech:
        """Speak ``words`` at about ``target`` samples: one correction of the rate (wpm) after a first try."""
        speech = self.speak(words, voice, rate=rate, pitch=pitch)
        ratio = len(speech.audio) / max(target, 1)
        if abs(ratio - 1) > 0.02:
            speech = self.speak(words, voice, rate=int(np.clip(round(rate * ratio), 80, 450)), pitch=pitch)
        return speech

    def acoustic_pairs(self, n: int, voices: Sequence[str], all_voices: Sequence[str]) -> None:
        rng = _rng(self.seed, "acoustic")
        grammar = syntax.Grammar(rng)
        made = attempts = 0
        while made < n and attempts < 20 * n + 20:
            attempts += 1
            factor = ACOUSTIC_FACTORS[made % len(ACOUSTIC_FACTORS)]
            words = grammar.sentence().split()
            if len(words) < 4:
                continue
            voice = voices[made % len(voices)]
            half = len(words) // 2
            first, second = self.speak(words[:half], voice), self.speak(words[half:], voice)
            consistent = acoustic.concat([first, second])
            if factor == "speaker":
                other = [v for v in all_voices if v != voice][int(rng.integers(len(all_voices) - 1))]
                changed = acoustic.concat(
                    [first, self._matched(words[half:], other, len(second.audio), rate=DEFAULT_RATE)]
                )
            elif factor == "pitch":
                pitch = 90 if rng.random() < 0.5 else 10
                changed = acoustic.concat(
                    [
                        first,
                        self._matched(words[half:], voice, len(second.audio), rate=DEFAULT_RATE, pitch=pitch),
                    ]
                )
            elif factor == "rate":
                fast = rng.random() < 0.5
                opening = self.speak(words[:half], voice, rate=round(DEFAULT_RATE * (1.4 if fast else 0.7)))
                rest = len(consistent.audio) - len(opening.audio)
                if rest <= SAMPLE_RATE // 10:
                    continue
                guess = int(np.clip(round(DEFAULT_RATE * len(second.audio) / rest), 80, 450))
                changed = acoustic.concat([opening, self._matched(words[half:], voice, rest, rate=guess)])
            else:  # background: noise from the join on, vs the same noise throughout
                noise_rng = np.random.default_rng([self.seed, zlib.crc32(b"acoustic-noise"), made])
                noise = acoustic.add_noise(consistent.audio, ACOUSTIC_SNR_DB, noise_rng)
                onset = consistent.audio.copy()
                start = len(first.audio)
                onset[start:] = noise[start:]
                changed = replace(consistent, audio=onset)
                consistent = replace(consistent, audio=noise)
            mismatch = abs(len(changed.audio) - len(consistent.audio)) / len(consistent.audio)
            if mismatch > MAX_LENGTH_MISMATCH:
                self.dropped["acoustic_length"] = self.dropped.get("acoustic_length", 0) + 1
                continue
            pair_id = f"acoustic-{made:05d}"
            text = " ".join(words)
            self.add(
                f"{pair_id}-good",
                "acoustic",
                consistent,
                voice,
                text,
                pair=pair_id,
                member="good",
                variant="consistent",
            )
            self.add(
                f"{pair_id}-bad",
                "acoustic",
                changed,
                voice,
                text,
                pair=pair_id,
                member="bad",
                variant=f"changed:{factor}",
            )
            made += 1
        self.progress(f"acoustic: {made} pairs")


def build_probes(
    out: str | Path,
    *,
    seed: int = 0,
    voices: Sequence[str] | None = None,
    heldout_voices: Sequence[str] | None = None,
    size: str | Size = "default",
    minutes: float | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Build a probe folder at ``out`` and return its path.

    ``voices`` are the espeak-ng voices of the LM training speech and the pairs (default
    ``DEFAULT_TRAIN_VOICES``), ``heldout_voices`` voices never in train (content, speaker change,
    invariance "voice"; default ``DEFAULT_HELDOUT_VOICES``). ``size`` is ``"small"`` (tests, seconds),
    ``"default"`` (about 25 minutes of training speech) or a ``Size``; ``minutes`` overrides the training
    minutes.
    An existing non-empty ``out`` is replaced only with ``force``. ``progress`` receives one line per set.
    """
    import slmtok

    out = Path(out)
    if isinstance(size, Size):
        sizes, size = size, "custom"
    elif size in SIZES:
        sizes = SIZES[size]
    else:
        raise ProbeError(f"unknown size {size!r} (expected one of {', '.join(SIZES)})")
    if minutes is not None:
        if not minutes > 0:
            raise ProbeError(f"--minutes must be positive, got {minutes}")
        sizes = replace(sizes, train_minutes=float(minutes))
    train_voices = list(DEFAULT_TRAIN_VOICES if voices is None else voices)
    heldout = list(DEFAULT_HELDOUT_VOICES if heldout_voices is None else heldout_voices)
    if not train_voices:
        raise ProbeError("at least one training voice is needed")
    all_voices = train_voices + [v for v in heldout if v not in train_voices]
    if len(all_voices) < 2:
        raise ProbeError("at least two voices in all are needed (speaker change, another voice)")
    if len(set(train_voices)) != len(train_voices) or len(set(heldout)) != len(heldout):
        raise ProbeError("a voice is listed twice")
    if out.exists() and not out.is_dir():
        raise ProbeError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ProbeError(f"{out} exists and is not empty: use --force to replace it")
    if not out.parent.is_dir():
        raise ProbeError(f"output folder does not exist: {out.parent}")
    say = progress or (lambda message: None)
    others = [v for v in heldout if v not in train_voices] or train_voices[1:] or all_voices[1:]

    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".slmtok-tmp", dir=out.parent))
    try:
        (staging / AUDIO_DIR).mkdir()
        with Engine() as engine:
            builder = _Builder(staging, engine, seed, say)
            for voice in all_voices:  # one line for a misspelt voice, before any work
                engine.raw("a", voice)
            excluded = builder.syntactic(sizes.syntactic, train_voices)
            builder.lexical(sizes.lexical, train_voices)
            builder.train_valid(sizes.train_minutes, sizes.valid_fraction, train_voices, excluded)
            builder.content(sizes.content_per_voice, all_voices)
            builder.invariance(sizes.invariance, train_voices, others)
            builder.acoustic_pairs(sizes.acoustic, train_voices, all_voices)
            espeak_version = engine.version
        items = sorted(builder.items, key=lambda item: item.id)
        data = items_jsonl_bytes(items)
        header = make_header(
            items,
            data,
            seed=seed,
            voices=[
                {
                    "id": v,
                    "engine": "espeak-ng",
                    "voice": v,
                    "split": "train" if v in train_voices else "heldout",
                }
                for v in all_voices
            ],
            extra={
                "espeak_ng": espeak_version,
                "size": size,
                "sizes": asdict(sizes),
                "lexicon": "cmudict (ARPAbet, first pronunciation) spoken as espeak-ng phoneme input",
                "syntactic_phenomena": list(syntax.PHENOMENA),
                "acoustic_factors": list(ACOUSTIC_FACTORS),
                "invariance_noise_snr_db": INVARIANCE_SNR_DB,
                "acoustic_noise_snr_db": ACOUSTIC_SNR_DB,
                "pitch_semitones": SEMITONES,
                "dropped": dict(sorted(builder.dropped.items())),
                "seconds": {
                    name: round(sum(i.seconds for i in items if i.set == name), 3)
                    for name in _present_sets(items)
                },
            },
        )
        header["slmtok"] = slmtok.__version__
        write_index(staging, header, data)
        _install(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"wrote {len(items)} items to {out} in {time.monotonic() - started:.0f} s")
    return out


def _present_sets(items: Sequence[ProbeItem]) -> list[str]:
    """The set names present in ``items``, in schema order."""
    from slmtok.probes.schema import SETS

    present = {item.set for item in items}
    return [name for name in SETS if name in present]


def _install(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder to ``out``, replacing what is there (already allowed)."""
    import os

    from slmtok.atomic import fsync_folder

    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=".slmtok-tmp", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(staging, out)
    except OSError as error:
        if old is not None:
            os.replace(old / out.name, out)
        raise ProbeError(f"cannot write {out}: {error.strerror}") from None
    fsync_folder(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
