"""P6: HuBERT Base/Large feature extraction speed in audio seconds per second (x real time).

Random weights written in the fairseq format (``slmtok.tokenizers.semantic.standins``; the cost is the
published architecture's). ``hubert_utterances`` real-speech utterances of 1-20 s, sorted by length and
run in padded batches of ``hubert_batch`` through ``HuBERTFeatures.extract`` at each layer.
"""

from __future__ import annotations

from typing import Any

import torch
from common import Context, device_name, target, timed, utterances


def one_variant(ctx: Context, variant: str, wavs: list[torch.Tensor]) -> dict[str, Any]:
    from slmtok.batching import pad_stack
    from slmtok.tokenizers.features.hubert import HuBERTFeatures
    from slmtok.tokenizers.semantic.standins import write_fairseq_hubert

    path = write_fairseq_hubert(ctx.work / f"{variant}.pt", variant=variant, style="plain")
    features = HuBERTFeatures(variant, checkpoint=path, device=ctx.device)
    seconds = sum(w.numel() for w in wavs) / 16000
    b = ctx.sizes.hubert_batch
    groups = [wavs[i : i + b] for i in range(0, len(wavs), b)]
    batches = [(pad_stack(g), torch.tensor([w.numel() for w in g])) for g in groups]
    features.extract(*batches[0], layer=max(ctx.sizes.hubert_layers))  # warm-up: every layer's kernels
    rows = {}
    for layer in ctx.sizes.hubert_layers:
        with timed(ctx.device) as t:
            for wav, lengths in batches:
                features.extract(wav, lengths, layer=layer)
        rows[f"layer_{layer}"] = {"seconds": t["s"], "x_real_time": seconds / t["s"]}
    return {"variant": variant, "audio_seconds": seconds, "batch": b, "layers": rows}


def p6_hubert(ctx: Context, over_budget) -> dict[str, Any]:
    s = ctx.sizes
    wavs = sorted(utterances(s.hubert_utterances, s.hubert_seconds, seed=1), key=len)
    rows, skipped = [], {}
    for variant in ("hubert-base", "hubert-large"):
        if variant not in s.hubert_variants:
            skipped[variant] = "not in this run's sizes (smoke: Base only)"
        elif over_budget():
            skipped[variant] = "skipped: over budget"
        else:
            rows.append(one_variant(ctx, variant, wavs))
            if ctx.on_gpu:
                torch.cuda.empty_cache()
    base6 = next((r["layers"].get("layer_6", {}).get("x_real_time") for r in rows
                  if r["variant"] == "hubert-base"), None)  # fmt: skip
    return {
        "device": ctx.device,
        "device_name": device_name(ctx.device),
        "precision": "float32 (HuBERTFeatures runs fp32)",
        "variants": rows,
        "not_measured": skipped,
        "target": target(
            ctx,
            ">= 2000x real time for HuBERT Base layer 6",
            {"base_layer6_x_real_time": (base6, lambda v: v >= 2000)},
        ),
    }
