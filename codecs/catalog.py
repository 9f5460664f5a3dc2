"""Built-in acoustic codecs of ``slmtok.codecs``, and the hybrid SpeechTokenizer (names -> lazy import paths).

Each name has a model card of the same name in ``slmtok.hub`` (weights URL, sha256, rates).
"""

from __future__ import annotations


def register_builtins() -> None:
    from slmtok.registry import TOKENIZERS

    c = "slmtok.codecs"
    codecs = {
        "encodec-24khz": (
            f"{c}.encodec:EncodecTokenizer",
            {"variant": "24khz"},
            "EnCodec 24 kHz, causal mono RVQ codec (1.5-24 kbps)",
        ),
        "encodec-48khz": (
            f"{c}.encodec:EncodecTokenizer",
            {"variant": "48khz"},
            "EnCodec 48 kHz, stereo RVQ codec on 1 s segments (3-24 kbps)",
        ),
        "dac-16khz": (
            f"{c}.dac:DACTokenizer",
            {"rate": "16khz"},
            "Descript Audio Codec 16 kHz, convolutional RVQ codec",
        ),
        "dac-24khz": (
            f"{c}.dac:DACTokenizer",
            {"rate": "24khz"},
            "Descript Audio Codec 24 kHz, convolutional RVQ codec",
        ),
        "dac-44khz": (
            f"{c}.dac:DACTokenizer",
            {"rate": "44khz"},
            "Descript Audio Codec 44.1 kHz, convolutional RVQ codec",
        ),
        "snac-24khz": (
            f"{c}.snac:SNACTokenizer",
            {"rate": "24khz"},
            "SNAC 24 kHz, multi-scale RVQ speech codec (3 levels, 7 codes per 11.7 Hz frame)",
        ),
        "mimi": (
            f"{c}.mimi:MimiTokenizer",
            {},
            "Mimi (Kyutai, Moshi's codec) 24 kHz, causal split-RVQ: 8 of 32 codebooks at 12.5 Hz, codebook 0 semantic",
        ),
        "wavtokenizer-40hz": (
            f"{c}.wavtokenizer:WavTokenizerTokenizer",
            {"variant": "40hz"},
            "WavTokenizer 24 kHz, one codebook of 4096 at 40 Hz (transformers)",
        ),
        "wavtokenizer-75hz": (
            f"{c}.wavtokenizer:WavTokenizerTokenizer",
            {"variant": "75hz"},
            "WavTokenizer 24 kHz, one codebook of 4096 at 75 Hz (transformers; checkpoint= only)",
        ),
        "xcodec": (
            f"{c}.xcodec:XcodecTokenizer",
            {},
            "X-Codec 16 kHz: one RVQ (8 x 1024 at 50 Hz) over fused DAC acoustic + WavLM semantic features",
        ),
        "xcodec2": (
            f"{c}.xcodec2:Xcodec2Tokenizer",
            {},
            "X-Codec2 (Llasa) 16 kHz, one FSQ codebook of 65536 at 50 Hz (transformers); non-commercial (CC-BY-NC-4.0)",
        ),
        "neucodec": (
            f"{c}.neucodec:NeuCodecTokenizer",
            {},
            "NeuCodec (Neuphonic) 16 kHz in, 24 kHz out, one FSQ codebook of 65536 at 50 Hz (transformers)",
        ),
        "speechtokenizer": (
            "slmtok.tokenizers.hybrid.speechtokenizer:SpeechTokenizerTokenizer",
            {},
            "SpeechTokenizer: RVQ codec, codebook 0 distilled from HuBERT (content), 1-7 acoustic",
        ),
    }
    for name, (target, defaults, description) in codecs.items():
        TOKENIZERS.register(name, target, defaults=defaults, description=description, origin="builtin")
