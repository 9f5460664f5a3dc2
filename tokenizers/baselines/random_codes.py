"""``random-codes``: codes that carry no information about the audio, the sanity row of LM fitness.

Encode: an item of ``n`` samples (16 kHz mono, after the base class's resampling and down-mix) gets
``ceil(n / 320)`` frames (50 frames/s) whose codes are the first draws of ``numpy``'s PCG64 stream
seeded with a keyed BLAKE2b digest of its samples (float32 bytes). Identical audio gets identical codes
(the contract's determinism; batch ≡ single, since only the item's own samples are hashed), and any
other audio, one sample apart or a whole sentence, gets an unrelated stream: nothing in the codes says
which phones, words or speaker the audio holds, so no language model can tell a word from a non-word
through them (accuracy ~50 % on minimal pairs), and no code sequence of a training item recurs in
another item unless that item is the very same audio.

Why not a stream keyed by the length alone (content-free by construction): utterances of one length
would share one code sequence, and synthetic probe sets have many equal lengths (110 espeak-ng
training items of one probe build had 77 lengths, and 26 of its 60 syntactic items had a training
item's length), so the LM would memorise those sequences and prefer whichever pair member happens to
share a length with a training item -- a leak that has nothing to do with the content.

Decode: each code becomes a fixed, quiet (RMS 0.001) noise burst of one frame (320 samples) from a
table drawn once from ``(KEY, "decode")``: audio of the right length that says nothing either (not
digital silence, which the contract's decoders must not return).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from slmtok.errors import CodesError
from slmtok.tokenizer import Tokenizer, content_hash
from slmtok.types import PAD_CODE, TokenizerCard

NAME = "random-codes"
#: the key of every pseudo-random stream (changing it changes the card hash)
KEY = 0x5EED_C0DE
SAMPLE_RATE = 16000
HOP = 320  # samples per frame: 50 frames/s
VOCAB = 1024
DECODE_RMS = 1e-3


def random_codes(samples: np.ndarray, vocab: int = VOCAB, hop: int = HOP) -> np.ndarray:
    """Codes ``[ceil(len(samples) / hop)]`` (int64 in ``[0, vocab)``) of one item's float32 samples
    ``[n]``: a PCG64 stream seeded with the keyed BLAKE2b digest of their bytes."""
    data = np.ascontiguousarray(samples, dtype=np.float32)
    digest = hashlib.blake2b(data.tobytes(), digest_size=16, key=KEY.to_bytes(8, "little")).digest()
    seed = int.from_bytes(digest, "little")
    frames = math.ceil(len(data) / hop)
    return np.random.default_rng(seed).integers(0, vocab, size=frames, dtype=np.int64)


class RandomCodesTokenizer(Tokenizer):
    """One codebook of 1024 codes at 50 frames/s, a keyed hash stream of the samples (no content)."""

    def __init__(self, *, device: str | torch.device = "cpu", n_codebooks: int | None = None) -> None:
        super().__init__(device=device, load_options={})
        if n_codebooks not in (None, 1):
            raise CodesError(f"{NAME} has one codebook; n_codebooks={n_codebooks} is out of range")
        config = {"tokenizer": NAME, "key": KEY, "hop": HOP, "vocab": VOCAB, "decode_rms": DECODE_RMS,
                  "seed": "blake2b-16(float32 samples, key)"}  # fmt: skip
        self.card = TokenizerCard(
            name=NAME,
            kind="baseline",
            sample_rate=SAMPLE_RATE,
            channels=1,
            frame_rate=SAMPLE_RATE / HOP,
            codebook_sizes=(VOCAB,),
            max_codebooks=1,
            license="MIT (no weights)",
            source="slmtok sanity baseline: PCG64 codes seeded by a keyed BLAKE2b digest of the samples",
            description="content-free codes (1024 at 50 Hz): the chance row of LM-fitness probes",
            hash=content_hash(config),
        )
        table = np.random.default_rng([KEY, 1]).standard_normal((VOCAB, HOP)) * DECODE_RMS
        self._bursts = torch.from_numpy(table.astype(np.float32))  # [VOCAB, HOP]

    def _encode(self, wav, lengths, n_codebooks):
        mono = wav[:, 0].float().cpu().numpy()  # [B, T]
        items = [torch.from_numpy(random_codes(mono[i, :n])) for i, n in enumerate(lengths.tolist())]
        frame_lengths = torch.tensor([len(c) for c in items], dtype=torch.long)
        width = max((len(c) for c in items), default=0)
        codes = torch.full((wav.shape[0], 1, width), PAD_CODE, dtype=torch.long)
        for i, item in enumerate(items):
            codes[i, 0, : len(item)] = item
        return codes, frame_lengths, {}

    def _decode(self, codes, lengths, extras):
        b, _, t = codes.shape
        bursts = self._bursts.to(codes.device)[codes[:, 0].clamp_min(0)]  # [B, T', HOP]
        wav = bursts.reshape(b, 1, t * HOP)
        sample_lengths = lengths.long() * HOP
        mask = torch.arange(t * HOP, device=codes.device)[None, None] >= sample_lengths[:, None, None]
        return wav.masked_fill(mask, 0.0), sample_lengths
