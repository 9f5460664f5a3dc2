"""BPE over discrete units: fit, save, load, and map unit streams to BPE ids and back.

Each unit id ``u`` is written as one Unicode character ``chr(UNIT_BASE + u)`` (Supplementary Private Use
Area-A, U+F0000 on), so a Hugging Face ``tokenizers`` BPE model sees one symbol per unit. There is no
normaliser and no pre-tokenizer: an utterance is one "word", and the concatenation of its BPE pieces is
exactly its unit string, so ``decode_ids(encode_units(u)) == u`` for every stream. Every unit id is in
the initial alphabet, so no stream ever needs an unknown token.

A BPE folder holds ``bpe.json`` (the Hugging Face tokenizer JSON) and ``bpe_card.json`` (base tokenizer
name and card hash, codebook, dedup flag, vocabulary size, training-data fingerprint, slmtok version).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmtok.errors import SlmtokError

#: the character of unit 0; unit ``u`` is ``chr(UNIT_BASE + u)``
UNIT_BASE = 0xF0000
#: units that fit in Supplementary Private Use Area-A (U+F0000 to U+FFFFD)
MAX_UNITS = 0xFFFFD - UNIT_BASE + 1
MODEL_FILE = "bpe.json"
CARD_FILE = "bpe_card.json"
SCHEMA = "slmtok.bpe"
VERSION = 1
#: largest vocabulary a BPE folder may declare
MAX_VOCAB = 1 << 20


class BpeError(SlmtokError, ValueError):
    """A BPE folder that is missing, corrupt or made for another tokenizer; a bad fit request."""


def units_to_text(units: np.ndarray) -> str:
    """``[T]`` integer units -> a string of ``T`` characters (one per unit)."""
    units = np.asarray(units, dtype=np.int64)
    if units.size and (int(units.min()) < 0 or int(units.max()) >= MAX_UNITS):
        raise BpeError(f"units must lie in [0, {MAX_UNITS}), got {int(units.min())}..{int(units.max())}")
    return (units + UNIT_BASE).astype("<u4").tobytes().decode("utf-32-le")


def text_to_units(text: str) -> np.ndarray:
    """Inverse of ``units_to_text``: a unit string -> ``[T]`` int64 units."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64) - UNIT_BASE


def deduplicate_units(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[T]`` units -> (``[R]`` units with repeats collapsed, ``[R]`` run lengths in frames)."""
    units = np.asarray(units, dtype=np.int64)
    if units.size == 0:
        return units, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    return units[starts], np.diff(np.r_[starts, units.size])


@dataclass(frozen=True)
class BpeModel:
    """A loaded BPE folder.

    Attributes:
        tokenizer: the Hugging Face ``tokenizers.Tokenizer``.
        card: the parsed ``bpe_card.json``.
        pieces: per BPE id, the units it stands for (``[n_i]`` int64).
        path: the folder it was read from (``None`` for a model not yet saved).
        sha256: sha256 of ``bpe.json``'s bytes.
    """

    tokenizer: Any
    card: dict[str, Any]
    pieces: tuple[np.ndarray, ...]
    path: Path | None
    sha256: str

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    @property
    def n_units(self) -> int:
        """Units of the base codebook (``K``)."""
        return int(self.card["n_units"])

    @property
    def dedup(self) -> bool:
        return bool(self.card["dedup"])

    @property
    def max_piece_units(self) -> int:
        """The most units one BPE id stands for."""
        return max(p.size for p in self.pieces)

    def encode_units(self, units: np.ndarray) -> np.ndarray:
        """``[T]`` units (already deduplicated when the model was fit so) -> ``[T_bpe]`` int64 BPE ids."""
        return self.encode_batch([units])[0]

    def encode_batch(self, streams: list[np.ndarray]) -> list[np.ndarray]:
        """Several ``[T_i]`` unit streams -> their ``[T_bpe_i]`` BPE ids (each as if alone)."""
        texts = [units_to_text(s) for s in streams]
        for s in streams:
            if s.size and int(np.max(s)) >= self.n_units:
                raise BpeError(f"unit {int(np.max(s))} is out of range for a BPE over {self.n_units} units")
        encoded = self.tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
        return [np.asarray(e.ids, dtype=np.int64) for e in encoded]

    def decode_ids(self, ids: np.ndarray) -> np.ndarray:
        """``[T_bpe]`` BPE ids -> ``[T]`` units (exact inverse of ``encode_units``)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise BpeError(f"BPE ids must lie in [0, {self.vocab_size})")
        if ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([self.pieces[i] for i in ids.tolist()])

    def piece_lengths(self) -> np.ndarray:
        """``[V]`` units per BPE id."""
        return np.array([p.size for p in self.pieces], dtype=np.int64)


def bpe_encode_units(model: BpeModel, units: np.ndarray) -> np.ndarray:
    """Frame-level ``[T]`` units -> ``[T_bpe]`` BPE ids, deduplicated first when ``model`` was fit on
    deduplicated units (so ``T_bpe / seconds`` is "tokens/s after BPE" for either kind of model)."""
    units = np.asarray(units, dtype=np.int64)
    if model.dedup:
        units = deduplicate_units(units)[0]
    return model.encode_units(units)


def stream_fingerprint(streams: Iterable[np.ndarray]) -> str:
    """sha256 of unit streams in order (each as its length, then its units as little-endian int32)."""
    digest = hashlib.sha256()
    for s in streams:
        s = np.asarray(s, dtype="<i4")
        digest.update(np.int64(s.size).tobytes())
        digest.update(s.tobytes())
    return digest.hexdigest()


def fit_bpe(streams: list[np.ndarray], n_units: int, vocab_size: int, *, min_frequency: int = 2) -> Any:
    """Fit a Hugging Face BPE model over unit streams.

    Args:
        streams: ``[T_i]`` int unit streams (deduplicated already if that is wanted).
        n_units: size ``K`` of the unit vocabulary; every unit id in ``[0, K)`` is in the base alphabet.
        vocab_size: target vocabulary (base units + merges); the result may be smaller when the data
            hold fewer pairs seen ``min_frequency`` times.

    Returns:
        a ``tokenizers.Tokenizer`` (no normaliser, no pre-tokenizer, no special tokens).
    """
    from tokenizers import Tokenizer, models, trainers

    if not 2 <= n_units <= MAX_UNITS:
        raise BpeError(f"BPE over units needs 2 to {MAX_UNITS} units, got {n_units}")
    if not n_units <= vocab_size <= MAX_VOCAB:
        raise BpeError(f"--vocab must lie in [{n_units}, {MAX_VOCAB}] (the {n_units} units + merges)")
    if not any(s.size for s in streams):
        raise BpeError("no units to fit a BPE on")
    alphabet = [chr(UNIT_BASE + u) for u in range(n_units)]
    tokenizer = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=alphabet,
        limit_alphabet=n_units,
    )
    texts = [units_to_text(s) for s in streams if s.size]
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def _pieces(tokenizer: Any, n_units: int) -> tuple[np.ndarray, ...]:
    vocab = tokenizer.get_vocab()
    size = len(vocab)
    if sorted(vocab.values()) != list(range(size)):
        raise BpeError("BPE vocabulary ids are not 0..V-1")
    pieces: list[np.ndarray | None] = [None] * size
    for text, index in vocab.items():
        units = text_to_units(text)
        if units.size == 0 or int(units.min()) < 0 or int(units.max()) >= n_units:
            raise BpeError(f"BPE token {index} is not a string of units in [0, {n_units})")
        pieces[index] = units
    singles = {int(p[0]) for p in pieces if p is not None and p.size == 1}
    if len(singles) != n_units:
        raise BpeError(f"BPE vocabulary lacks {n_units - len(singles)} of the {n_units} single units")
    return tuple(pieces)  # type: ignore[arg-type]


def make_model(tokenizer: Any, card: dict[str, Any], path: Path | None = None) -> BpeModel:
    """A ``BpeModel`` from a Hugging Face tokenizer and its card (checks every piece)."""
    text = tokenizer.to_str()
    sha = hashlib.sha256(text.encode()).hexdigest()
    return BpeModel(tokenizer, card, _pieces(tokenizer, int(card["n_units"])), path, sha)


def save_bpe(folder: str | os.PathLike, model: BpeModel, *, force: bool = False) -> Path:
    """Write ``bpe.json`` and ``bpe_card.json`` into ``folder`` (created), each atomically; refuses a
    folder that already holds a BPE model unless ``force``."""
    from slmtok.atomic import atomic_path

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BpeError(f"{folder} exists and is not a folder")
    if not force and ((folder / MODEL_FILE).exists() or (folder / CARD_FILE).exists()):
        raise BpeError(f"{folder} already holds a BPE model; pass --force (force=True) to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    text = model.tokenizer.to_str(pretty=True)
    card = {**model.card, "model_sha256": hashlib.sha256(text.encode()).hexdigest()}
    with atomic_path(folder / MODEL_FILE) as tmp:
        tmp.write_text(text, encoding="utf-8")
    with atomic_path(folder / CARD_FILE) as tmp:
        tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


CARD_FIELDS = {
    "schema": str,
    "version": int,
    "base": dict,
    "codebook": int,
    "dedup": bool,
    "n_units": int,
    "vocab_size": int,
    "training": dict,
    "model_sha256": str,
}


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    """The checked ``bpe_card.json`` of a BPE folder (``BpeError`` in one line otherwise)."""
    folder = Path(folder)
    path = folder / CARD_FILE
    if not folder.is_dir():
        raise BpeError(f"no BPE folder at {folder} (make one with slmtok bpe fit)")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BpeError(f"{folder} holds no {CARD_FILE} (make one with slmtok bpe fit)") from None
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise BpeError(f"unreadable {path}: {str(error).splitlines()[0][:200]}") from None
    if not isinstance(card, dict) or card.get("schema") != SCHEMA:
        raise BpeError(f"{path} is not a slmtok BPE card")
    if card.get("version") != VERSION:
        raise BpeError(f"{path} has version {card.get('version')!r}; this slmtok reads version {VERSION}")
    for key, kind in CARD_FIELDS.items():
        value = card.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BpeError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
    base = card["base"]
    if not isinstance(base.get("name"), str) or not isinstance(base.get("hash"), str):
        raise BpeError(f"{path}: base needs a name and a hash")
    if not 2 <= card["n_units"] <= MAX_UNITS or not card["n_units"] <= card["vocab_size"] <= MAX_VOCAB:
        raise BpeError(f"{path}: n_units / vocab_size out of range")
    return card


def load_bpe(folder: str | os.PathLike) -> BpeModel:
    """Read a BPE folder written by ``save_bpe`` / ``slmtok bpe fit``, checking that ``bpe.json`` is the
    model the card describes (sha256) and that its vocabulary is pieces of the card's units."""
    from tokenizers import Tokenizer

    folder = Path(folder)
    card = read_card(folder)
    path = folder / MODEL_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BpeError(f"unreadable {path}: {getattr(error, 'strerror', None) or error}") from None
    if hashlib.sha256(text.encode()).hexdigest() != card["model_sha256"]:
        raise BpeError(f"{path} is not the model {CARD_FILE} describes (sha256 differs)")
    try:
        tokenizer = Tokenizer.from_str(text)
    except Exception as error:  # noqa: BLE001 - the Rust side raises its own exception type
        raise BpeError(
            f"{path} is not a Hugging Face tokenizer: {str(error).splitlines()[0][:200]}"
        ) from None
    if (
        tokenizer.normalizer is not None
        or tokenizer.pre_tokenizer is not None
        or type(tokenizer.model).__name__ != "BPE"
    ):
        raise BpeError(f"{path} is not a plain BPE over units (normaliser or pre-tokenizer set)")
    model = make_model(tokenizer, card, folder.resolve())
    if model.vocab_size != card["vocab_size"]:
        raise BpeError(f"{path} has {model.vocab_size} tokens; the card says {card['vocab_size']}")
    return model
