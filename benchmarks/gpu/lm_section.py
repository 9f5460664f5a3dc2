"""P5: the LM trainer's throughput (tokens/s) and model FLOP utilisation of a ~100M-parameter model.

The training loop itself (``slmtok.lm.train`` through ``benchmarks/lm_train_throughput.py``: memory-mapped
shards, AdamW, clipping, bf16 autocast on CUDA, ``--compile``). MFU here is computed by this suite from
the measured tokens/s: FLOPs per token ``6 N + 12 L d S`` (PaLM, appendix B: forward + backward of the
``N`` parameters, plus attention over a context of ``S``), over the dense bf16 peak of ``PEAK_BF16``.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from common import Context, device_name, target

#: dense (no sparsity) bf16 tensor-core peak, FLOP/s, by device-name fragment
PEAK_BF16: dict[str, dict[str, Any]] = {
    "H200": {
        "flops": 989.4e12,
        "source": "same GH100 compute as H100 SXM (H200 differs in memory only): "
        "https://glennklockwood.com/garden/processors/h100",
    },
    "H100": {
        "flops": 989.4e12,
        "source": "NVIDIA H100 datasheet (H100 SXM: BF16 Tensor Core 1,979 TFLOPS *with sparsity*; dense is "
        "half), as reproduced at https://archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html; "
        "989.4 dense at https://glennklockwood.com/garden/processors/h100 (PCIe cards: lower, ~756)",
    },
}


def peak_for(name: str) -> dict[str, Any]:
    """The table row whose key is in ``name`` (``H100 PCIe`` would match H100 SXM: flagged in the note)."""
    for key, row in PEAK_BF16.items():
        if key in name:
            note = "PCIe card: its peak is lower than the SXM figure used" if "PCIe" in name else None
            return {"key": key, **row, "note": note}
    return {"key": None, "flops": None, "source": f"unknown: {name!r} is not in the peak table"}


def flops_per_token(parameters: int, n_layer: int, n_embd: int, context: int) -> float:
    """Training FLOPs per token: ``6 N + 12 L d S``."""
    return 6.0 * parameters + 12.0 * n_layer * n_embd * context


def p5_lm(ctx: Context) -> dict[str, Any]:
    from lm_train_throughput import run

    s = ctx.sizes
    args = argparse.Namespace(
        config=s.lm_config,
        block_size=s.lm_block,
        batch_size=s.lm_batch,
        steps=s.lm_steps,
        log_every=s.lm_log_every,
        threads=torch.get_num_threads(),
        device=ctx.device,
        compile=s.lm_compile,
    )
    report = run(args)
    rate = report["tokens_per_second"]
    per_token = flops_per_token(
        report["parameters"], report["n_layer"], report["n_embd"], report["block_size"]
    )
    peak = peak_for(device_name(ctx.device)) if ctx.on_gpu else {"flops": None, "source": "CPU: no peak"}
    mfu = per_token * rate / peak["flops"] if rate and peak["flops"] else None
    return {
        "device": ctx.device,
        "device_name": device_name(ctx.device),
        "trainer": report,
        "tokens_per_second": rate,
        "flops_per_token": per_token,
        "peak_bf16": peak,
        "mfu": mfu,
        "mfu_reported_by_trainer": report.get("mfu"),
        "target": target(
            ctx,
            "MFU >= 40 % (bf16) on a ~100M-parameter model",
            {
                "parameters_about_100M": (float(report["parameters"]), lambda v: 50e6 <= v <= 200e6),
                "bf16": (float(report["dtype"].startswith("bfloat16")), lambda v: v == 1.0),
                "mfu": (mfu, lambda v: v >= 0.40),
            },
        ),
    }
