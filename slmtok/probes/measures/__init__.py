"""Token-level measures of speech-LM fitness (no LM needed): content (A), length (B), paralinguistics (C).

Pure functions over unit sequences (1-D integer arrays ``[T]``, one per item; codebook 0 of a
multi-codebook tokenizer) and their labels; each returns a JSON-ready dict. Results on slmtok's probe sets
are "synthetic" figures, not ZeroSpeech scores.

=========================  =======================================================================
``phone_unit_stats``       phone purity, cluster purity, PNMI (HuBERT paper, section IV-B)
``abx_error``              triphone ABX error within / across speakers (ZeroSpeech 2021 style, DTW)
``length_stats``           tokens/s raw, deduplicated and after BPE; unigram and bigram entropy rates
``speaker_id_accuracy``    out-of-fold speaker-ID accuracy of a logistic regression on unit histograms
``invariance``             unit edit distance after dedup between clean and augmented renderings
=========================  =======================================================================

Names are imported on first use, so importing this package loads neither numpy nor scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MeasureInputError": "_common",
    "phone_unit_stats": "content",
    "abx_error": "abx",
    "dtw_distances": "abx",
    "length_stats": "length",
    "speaker_id_accuracy": "speaker",
    "unit_features": "speaker",
    "invariance": "invariance",
    "invariance_stats": "invariance",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
