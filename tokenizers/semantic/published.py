"""The published semantic bundles: which features, layer, k-means card and unit vocoder card each uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BundleSpec:
    """A published semantic tokenizer: feature extractor + layer + k-means (+ unit vocoder) cards."""

    name: str
    features: str  # FEATURES registry name
    layer: int
    k: int
    kmeans_card: str  # hub card with a "kmeans" file
    vocoder_card: str | None  # hub card of a unit HiFi-GAN (files "weights" + "config"), if one exists
    license: str
    source: str
    description: str


GSLM = "https://github.com/facebookresearch/fairseq/tree/main/examples/textless_nlp/gslm"
_NO_VOCODER = "no unit vocoder was published (GSLM used Tacotron 2 + WaveGlow)"

BUNDLES: dict[str, BundleSpec] = {
    spec.name: spec
    for spec in (
        BundleSpec("hubert-base-l6-km50", "hubert-base", 6, 50, "hubert-base-l6-km50", None, "MIT", GSLM,
                   f"HuBERT Base layer 6, 50 k-means units (GSLM); {_NO_VOCODER}"),
        BundleSpec("hubert-base-l6-km100", "hubert-base", 6, 100, "hubert-base-l6-km100",
                   "hifigan-unit-hubert-base-l6-km100-lj", "MIT", GSLM,
                   "HuBERT Base layer 6, 100 k-means units (GSLM), unit HiFi-GAN trained on LJSpeech"),
        BundleSpec("hubert-base-l6-km200", "hubert-base", 6, 200, "hubert-base-l6-km200", None, "MIT", GSLM,
                   f"HuBERT Base layer 6, 200 k-means units (GSLM); {_NO_VOCODER}"),
        BundleSpec("hubert-base-l9-km500", "hubert-base", 9, 500, "hubert-base-l9-km500",
                   "hifigan-unit-hubert-base-l9-km500-expresso", "MIT (units); vocoder: see its card",
                   "https://github.com/facebookresearch/fairseq/tree/main/examples/hubert",
                   "HuBERT Base layer 9, 500 k-means units, multi-speaker Expresso unit HiFi-GAN"),
        BundleSpec("mhubert-base-l11-km1000", "mhubert-base", 11, 1000, "mhubert-base-l11-km1000",
                   "hifigan-unit-mhubert-base-l11-km1000-lj", "MIT",
                   "https://github.com/facebookresearch/fairseq/blob/main/examples/speech_to_speech/docs/textless_s2st_real_data.md",
                   "mHuBERT Base layer 11, 1000 k-means units (textless S2ST), unit HiFi-GAN on LJSpeech"),
    )
}  # fmt: skip
