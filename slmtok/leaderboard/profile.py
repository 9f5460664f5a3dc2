"""The factor profile of the SLM suite: one 0-1 score per factor (A content, B length, C
paralinguistics, LM fitness), 1 = best, so tokenizers can be drawn side by side.

Each score is a fixed, documented transform of measures the suite wrote (no score depends on the other
tokenizers in the table, so adding a row changes no other row):

- **A content** = mean of PNMI above its floor, ``(PNMI - floor) / (1 - floor)`` where the floor is the
  PNMI of the same units shuffled across frames (the plug-in estimate is biased upwards when a codebook
  is large for the frames counted: 1024 random codes score about 0.37 on five minutes), ``1 - 2 x ABX
  within`` and ``1 - 2 x ABX across`` (ABX error 0.5 is chance, so ``1 - 2e`` runs from 0 at chance to 1
  at no error), each clipped to [0, 1]; the raw PNMI when no floor was measured.
- **B length** = ``1 - log10(units/s / phones/s) / 3`` clipped to [0, 1]: 1 for as many units per second
  as the probe speech has phones (the text ceiling's length), 0 for 1000 times as many. Units/s are
  codebook 0's frames per second, the sequence length a delay-pattern LM steps through.
- **C paralinguistics** = mean of ``1 - (speaker-ID accuracy - chance) / (1 - chance)`` and
  ``1 - invariance distance``, each clipped to [0, 1]: 1 = the units tell nothing about the voice and do
  not change under noise, pitch, speed or another voice.
- **LM fitness** = mean over the pair sets (lexical, syntactic, acoustic) of ``2 x (accuracy - 0.5)``
  clipped to [0, 1]: 0 at chance, 1 when every pair is right.
"""

from __future__ import annotations

import math
from typing import Any

FACTORS = (
    ("score_content", "A content"),
    ("score_length", "B length"),
    ("score_paralinguistics", "C paralinguistics"),
    ("score_lm", "LM fitness"),
)
LENGTH_DECADES = 3.0  # B is 0 at 10**3 times the phone rate


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def _value(metrics: dict[str, Any], key: str) -> float | None:
    est = metrics.get(key)
    if not est or est.get("value") is None or not math.isfinite(float(est["value"])):
        return None
    return float(est["value"])


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def factor_scores(metrics: dict[str, Any], phone_rate: float | None) -> dict[str, float]:
    """``{score_content, score_length, score_paralinguistics, score_lm}`` (0-1, 1 best) from one
    tokenizer's suite metrics (``{key: {"value", ...}}``); a factor without its measures is left out.
    ``phone_rate``: phones per second of the probe speech (silence excluded)."""
    out: dict[str, float] = {}
    pnmi = _value(metrics, "pnmi")
    floor = _value(metrics, "pnmi_shuffled")
    if pnmi is not None and floor is not None and floor < 1:
        pnmi = (pnmi - floor) / (1 - floor)
    abx = [_value(metrics, k) for k in ("abx_within", "abx_across")]
    content = _mean(
        [None if pnmi is None else _clip(pnmi)] + [None if e is None else _clip(1 - 2 * e) for e in abx]
    )
    if content is not None:
        out["score_content"] = content
    rate = _value(metrics, "unit_rate")
    if rate is not None and rate > 0 and phone_rate:
        out["score_length"] = _clip(1 - math.log10(rate / phone_rate) / LENGTH_DECADES)
    accuracy = _value(metrics, "speaker_id_accuracy")
    chance = (metrics.get("speaker_id_accuracy") or {}).get("chance")
    speaker = None
    if accuracy is not None and chance is not None and chance < 1:
        speaker = _clip(1 - (accuracy - float(chance)) / (1 - float(chance)))
    invariance = _value(metrics, "invariance")
    para = _mean([speaker, None if invariance is None else _clip(1 - invariance)])
    if para is not None:
        out["score_paralinguistics"] = para
    pairs = [_value(metrics, k) for k in ("lexical_accuracy", "syntactic_accuracy", "acoustic_accuracy")]
    lm = _mean([None if a is None else _clip(2 * (a - 0.5)) for a in pairs])
    if lm is not None:
        out["score_lm"] = lm
    return out
