"""How the conformance suite builds each registered tokenizer.

Every registered tokenizer must appear here (``test_every_tokenizer_is_covered``). Tokenizers whose
published weights cannot be downloaded in CI register a factory that writes a stand-in checkpoint in
the upstream's own format and returns the load options pointing at it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _codec_standin(write: str, filename: str, *args: Any) -> Callable[[Path], dict[str, Any]]:
    """A factory writing ``slmtok.codecs.standins.<write>(tmp / filename, *args)`` (a small random-weight
    checkpoint in the upstream's format) and pointing ``checkpoint=`` at it."""

    def factory(tmp: Path) -> dict[str, Any]:
        from slmtok.codecs import standins

        written = getattr(standins, write)(tmp / filename, *args)
        return {"checkpoint": [str(p) for p in written] if isinstance(written, tuple) else str(written)}

    return factory


def _semantic_standin(name: str, **extra: Any) -> Callable[[Path], dict[str, Any]]:
    """A factory writing stand-ins for a semantic bundle (random fairseq HuBERT, scikit-learn k-means
    pickle, small unit HiFi-GAN; or an MFCC bundle folder): ``slmtok.tokenizers.semantic.standins``."""

    def factory(tmp: Path) -> dict[str, Any]:
        from slmtok.tokenizers.semantic.standins import standin_options

        return {**standin_options(name, tmp), **extra}

    return factory


#: name -> function(tmp_dir) -> options for ``slmtok.load``
LOAD_OPTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "mel-rvq": lambda tmp: {},
    "mfcc-km": lambda tmp: {},
    "mulaw-8bit": lambda tmp: {},
    "random-codes": lambda tmp: {},
    "encodec-24khz": _codec_standin("write_encodec", "encodec_24khz.th", "24khz"),
    "encodec-48khz": _codec_standin("write_encodec", "encodec_48khz.th", "48khz"),
    "dac-16khz": _codec_standin("write_dac", "weights_16khz.pth", "16khz"),
    "dac-24khz": _codec_standin("write_dac", "weights_24khz.pth", "24khz"),
    "dac-44khz": _codec_standin("write_dac", "weights_44khz.pth", "44khz"),
    "speechtokenizer": _codec_standin("write_speechtokenizer", "speechtokenizer"),
    "snac-24khz": _codec_standin("write_snac", "snac", True),
    "mimi": _codec_standin("write_mimi", "mimi", True),
    "xcodec2": _codec_standin("write_xcodec2", "xcodec2", True),
    "neucodec": _codec_standin("write_neucodec", "neucodec", True),
    "wavtokenizer-40hz": _codec_standin("write_wavtokenizer", "wavtokenizer-40hz", "40hz"),
    "wavtokenizer-75hz": _codec_standin("write_wavtokenizer", "wavtokenizer-75hz", "75hz"),
    "xcodec": _codec_standin("write_xcodec", "xcodec", True),
    **{
        name: _semantic_standin(name)
        for name in (
            "hubert-base-l6-km50",
            "hubert-base-l6-km100",
            "hubert-base-l6-km200",
            "hubert-base-l9-km500",
            "mhubert-base-l11-km1000",
            "semantic-bundle",
        )
    },
    "mhubert-147": lambda tmp: __import__(
        "slmtok.tokenizers.semantic.faiss_index", fromlist=["standin_options"]
    ).standin_options(tmp),
}

#: extra variants worth running the whole suite on
VARIANTS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "mfcc-km[dedup]": lambda tmp: {"dedup": True},
    "mel-rvq[k=3]": lambda tmp: {"n_codebooks": 3},
    "semantic-bundle[dedup]": _semantic_standin("semantic-bundle", dedup=True),
}

#: input lengths (samples at the tokenizer's own rate) every tokenizer must encode and decode
SHORT_LENGTHS = (1, 160, 400, 800)


def check_decodes_short_input(tok: Any, signal: Any, n_samples: int) -> None:
    """Encode the first ``n_samples`` of ``signal`` (mono, at ``tok.card.sample_rate``) and decode them.

    The reference is the input itself: the audio must come back as one finite, non-empty item of the
    card's output rate and channels, no longer than the input plus 0.1 s (a frame, a window and the
    padding a codec rounds up to), with zeros past its length.
    """
    import torch

    x = signal[..., :n_samples]
    assert x.shape[-1] == n_samples
    rate, out_rate = tok.card.sample_rate, tok.card.output_sample_rate
    tokens = tok.encode(x, rate)
    assert tokens.batch_size == 1 and int(tokens.lengths[0]) >= 1, f"{n_samples} samples gave no frames"
    audio = tok.decode(tokens)
    length = int(audio.lengths[0])
    assert audio.sample_rate == out_rate and audio.wav.shape[:2] == (1, tok.card.channels)
    longest = (n_samples / rate + 0.1) * out_rate
    assert 1 <= length <= longest, f"{n_samples} samples decoded to {length}"
    assert audio.wav.shape[-1] == length and bool(torch.isfinite(audio.wav).all())
