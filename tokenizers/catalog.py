"""Built-in tokenizers and feature extractors of ``slmtok.tokenizers`` (names -> lazy import paths),
the scikit-learn k-means backend of the semantic tokenizers, and the semantic bundles a user registered
under ``$SLMTOK_HOME/tokenizers`` (found by listing that folder; nothing is read until one is loaded)."""

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
    TOKENIZERS.register(
        "random-codes",
        f"{b}.random_codes:RandomCodesTokenizer",
        description="content-free codes (1024 at 50 Hz, a keyed hash stream of the samples): LM-fitness chance row",
        origin="builtin",
    )

    f = "slmtok.tokenizers.features"
    FEATURES.register("log-mel", f"{f}.mel:LogMel", description="log-mel filterbank", origin="builtin")
    FEATURES.register(
        "mfcc", f"{f}.mfcc:MFCC", description="Kaldi MFCC + deltas (39-d, 100 Hz)", origin="builtin"
    )
    for name, what in (
        ("hubert-base", "HuBERT Base (LibriSpeech 960 h), any layer, 768-d, 50 Hz"),
        ("hubert-large", "HuBERT Large (Libri-Light 60k h), any layer, 1024-d, 50 Hz"),
        ("mhubert-base", "multilingual HuBERT Base (VoxPopuli en/es/fr), any layer, 768-d, 50 Hz"),
    ):
        FEATURES.register(name, f"{f}.hubert:{name.replace('-', '_')}", description=what, origin="builtin")
    for name, what in (
        ("wavlm-base-plus", "WavLM Base+ (transformers WavLMModel), hidden_states[L], 768-d, 50 Hz"),
        ("wavlm-large", "WavLM Large (transformers WavLMModel), hidden_states[L], 1024-d, 50 Hz"),
        ("wav2vec2-base", "wav2vec 2.0 Base (transformers Wav2Vec2Model), hidden_states[L], 768-d, 50 Hz"),
        ("xlsr-300m", "XLS-R 300M, 128 languages (transformers Wav2Vec2Model), hidden_states[L], 1024-d"),
        ("mhubert-147", "mHuBERT-147, 147 languages (transformers HubertModel), hidden_states[L], 768-d"),
        ("mhubert-147-iter2", "mHuBERT-147 2nd iteration (its FAISS units' features), hidden_states[L]"),
    ):
        target = f"{f}.transformers_features:{name.replace('-', '_')}"
        FEATURES.register(name, target, description=what, origin="builtin")

    from slmtok.registry import KMEANS_BACKENDS

    KMEANS_BACKENDS.register(
        "sklearn",
        "slmtok.kmeans.sklearn_backend:fit_sklearn",
        description="scikit-learn MiniBatchKMeans, fairseq HuBERT recipe settings (CPU, the reference)",
        origin="builtin",
    )

    s = "slmtok.tokenizers.semantic"
    from slmtok.tokenizers.semantic.published import BUNDLES  # the cards: toml only, no torch

    faiss_bundles = {"mhubert-147"}  # units from a published FAISS index (read with faiss itself)
    for name, spec in BUNDLES.items():
        TOKENIZERS.register(
            name,
            f"{s}.faiss_index:FaissSemanticTokenizer"
            if name in faiss_bundles
            else f"{s}.bundle:SemanticTokenizer",
            description=spec.description,
            defaults={"spec": name},
            origin="builtin",
        )
    TOKENIZERS.register(
        "semantic-bundle",
        f"{s}.bundle:SemanticTokenizer",
        description="a semantic bundle folder written by `slmtok kmeans fit` (option bundle=DIR)",
        origin="builtin",
    )
    from slmtok.tokenizers.semantic.user_registry import registered_bundles

    for name in registered_bundles():
        if name not in TOKENIZERS:
            TOKENIZERS.register(
                name,
                f"{s}.bundle:SemanticTokenizer",
                description="semantic bundle registered by `slmtok kmeans fit --name`",
                defaults={"name": name},
                origin="user",
            )
