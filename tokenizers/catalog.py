"""Built-in tokenizers and feature extractors of ``slmtok.tokenizers`` (names -> lazy import paths)."""

from __future__ import annotations


def register_builtins() -> None:
    from slmtok.registry import FEATURES, TOKENIZERS

    b = "slmtok.tokenizers.baselines"
    TOKENIZERS.register(
        "mel-rvq",
        f"{b}.mel_rvq:MelRVQTokenizer",
        description="log-mel frames, residual VQ (8 x 1024 at 100 Hz), Griffin-Lim decoder; embedded default",
        origin="builtin",
    )
    TOKENIZERS.register(
        "mfcc-km",
        f"{b}.mfcc_km:MFCCKMeansTokenizer",
        description="k-means units (100) over MFCC+delta+delta-delta, HuBERT's first-iteration targets",
        origin="builtin",
    )
    TOKENIZERS.register(
        "mulaw-8bit",
        f"{b}.mulaw:MuLawTokenizer",
        description="WaveNet mu-law sample tokens (256 codes per sample at 16 kHz)",
        origin="builtin",
    )

    f = "slmtok.tokenizers.features"
    FEATURES.register("log-mel", f"{f}.mel:LogMel", description="log-mel filterbank", origin="builtin")
    FEATURES.register(
        "mfcc", f"{f}.mfcc:MFCC", description="Kaldi MFCC + deltas (39-d, 100 Hz)", origin="builtin"
    )
