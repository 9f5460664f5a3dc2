"""P3: slmtok batched encoding vs the upstream package called once per file, same weights, same audio.

Weights: random stand-ins at the published architecture's size (``slmtok.codecs.standins``, written in
the upstream's own format; speed does not depend on the values). Audio: ``codec_utterances`` real-speech
utterances of 1-20 s (``common.utterances``). Upstream: the package's own API on one file at a time on
the device (EnCodec ``encode`` at the bandwidth slmtok uses, DAC ``preprocess`` + ``encode``,
SpeechTokenizer ``encode``, SNAC ``encode``). slmtok: one ``tok.encode`` call on the padded batch.
Codes of every item are compared with upstream's: frames whose codes differ are counted (on CUDA slmtok
stacks pieces by default, equal to single items only up to rounding; see ``slmtok.codecs.base``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from common import Context, device_name, target, timed, utterances

NOT_WRAPPED = {"mimi": "not wrapped by slmtok yet: nothing to measure"}


def _upstream(name: str, checkpoint: Any, k: int, device: str):
    """A function ``[1, C, T]`` audio at the model's rate -> codes ``[K, T']``, through upstream's API."""
    if name.startswith("encodec-"):
        from codecs_speed import CODEC_KBPS

        from slmtok.codecs.encodec import build_model, infer_architecture
        from slmtok.hub.safe_load import load_torch_checkpoint

        state = load_torch_checkpoint(checkpoint)
        model = build_model(name.split("-")[1], infer_architecture(state))  # EnCodec's own classes
        model.load_state_dict(state)
        model.set_target_bandwidth(CODEC_KBPS[name])
        model = model.to(device).eval()
        return lambda x: torch.cat([codes for codes, _ in model.encode(x.to(device))], dim=-1)[0]
    if name.startswith("dac-"):
        import dac

        model = dac.DAC.load(checkpoint).to(device).eval()
        return lambda x: model.encode(model.preprocess(x.to(device), model.sample_rate), n_quantizers=k)[1][0]
    if name == "speechtokenizer":
        from speechtokenizer import SpeechTokenizer

        model = SpeechTokenizer.load_from_checkpoint(*checkpoint).to(device).eval()
        return lambda x: model.encode(x.to(device), n_q=k)[:, 0]
    if name.startswith("snac-"):
        import json

        from snac import SNAC

        config, weights = checkpoint
        model = SNAC(**json.loads(Path(config).read_text()))
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model = model.to(device).eval()
        return lambda x: _snac_rows(model.encode(x.to(device)))
    raise ValueError(f"no upstream reference for {name}")


def _snac_rows(levels: list[torch.Tensor]) -> torch.Tensor:
    """SNAC's codes per level ``[1, T_l]`` -> rows ``[sum r_l, T_0]``: level ``l`` gives ``r_l = T_l / T_0``
    rows, its codes inside each coarse step in time order (the layout in ``slmtok.codecs.snac``)."""
    t0 = levels[0].shape[-1]
    return torch.cat([lv[0].reshape(t0, -1).T for lv in levels])


def _standin(name: str, folder: Path, tiny: bool):
    from codecs_speed import write_standin

    if name.startswith("snac-"):
        from slmtok.codecs import standins

        return tuple(str(p) for p in standins.write_snac(folder / name, tiny))
    return write_standin(name, folder, tiny)


def one_codec(ctx: Context, name: str, speech: list[torch.Tensor]) -> dict[str, Any]:
    import slmtok
    from slmtok.audio import prepare
    from slmtok.batching import pad_stack

    checkpoint = _standin(name, ctx.work / "codecs", ctx.sizes.codec_tiny)
    tok = slmtok.load(name, checkpoint=list(checkpoint) if isinstance(checkpoint, tuple) else checkpoint,
                      device=ctx.device)  # fmt: skip
    k = tok.card.n_codebooks
    encode_upstream = _upstream(name, checkpoint, k, ctx.device)
    rate, channels = tok.card.sample_rate, tok.card.channels
    inputs = [prepare(x, 16000, target_rate=rate, target_channels=channels).wav for x in speech]  # [1, C, T]
    seconds = sum(x.shape[-1] for x in inputs) / rate
    warm = inputs[0][..., :rate]  # [1, C, T]
    with torch.inference_mode():
        encode_upstream(warm)
        tok.encode(warm[0], rate)
        with timed(ctx.device) as t_up:
            upstream = [encode_upstream(x).cpu() for x in inputs]
        batch = pad_stack([x[0] for x in inputs])  # [B, C, T]
        with timed(ctx.device) as t_ours:
            tokens = tok.encode(batch, rate, lengths=[x.shape[-1] for x in inputs])
    frames = differing = shape_mismatch = 0
    for i, codes in enumerate(upstream):
        ours = tokens.item(i).cpu()
        if ours.shape != codes.shape:
            shape_mismatch += 1
            continue
        frames += codes.shape[-1]
        differing += int((ours != codes).any(dim=0).sum())
    speedup = t_up["s"] / t_ours["s"]
    return {
        "tokenizer": name,
        "weights": "random stand-in, " + ("narrow test size" if ctx.sizes.codec_tiny else "published size"),
        "parameters": sum(p.numel() for p in tok.model.parameters()),
        "n_codebooks": k,
        "slmtok_stack_batches": _stacks(tok, ctx),
        "items": len(inputs),
        "audio_seconds": round(seconds, 2),
        "upstream_per_file_s": t_up["s"],
        "slmtok_batched_s": t_ours["s"],
        "speedup": speedup,
        "frames": frames,
        "frames_with_different_codes": differing,
        "items_with_other_shape": shape_mismatch,
    }


def p3_codecs(ctx: Context, over_budget) -> dict[str, Any]:
    """Every codec of ``ctx.sizes.codecs`` in turn; stops starting codecs once ``over_budget()``."""
    s = ctx.sizes
    speech = utterances(s.codec_utterances, s.codec_seconds, seed=0)
    rows, skipped, errors = [], [], {}
    threads = torch.get_num_threads()
    if ctx.smoke and not ctx.on_gpu:  # README's exact condition: upstream on one thread gives slmtok's codes
        torch.set_num_threads(1)
    try:
        for name in s.codecs:
            if over_budget():
                skipped.append(name)
                continue
            try:
                rows.append(one_codec(ctx, name, speech))
            except Exception as exc:  # noqa: BLE001 - one codec's failure is recorded, the others still run
                errors[name] = f"{type(exc).__name__}: {exc}"
                print(f"P3 {name}: {errors[name]}", file=sys.stderr)
            if ctx.on_gpu:
                torch.cuda.empty_cache()
    finally:
        torch.set_num_threads(threads)
    worst = min((r["speedup"] for r in rows), default=None)
    differing = sum(r["frames_with_different_codes"] + r["items_with_other_shape"] for r in rows)
    return {
        "device": ctx.device,
        "device_name": device_name(ctx.device),
        "sizes": {"utterances": s.codec_utterances, "seconds": list(s.codec_seconds)},
        "torch_threads": 1 if ctx.smoke and not ctx.on_gpu else threads,
        "codecs": rows,
        "not_measured": {**NOT_WRAPPED, **{n: "skipped: over budget" for n in skipped}, **errors},
        "target": target(
            ctx,
            ">= 5x the upstream package called per file, same codes (every codec)",
            {
                "all_codecs_ran": (float(len(rows) == len(s.codecs)), lambda v: v == 1.0),
                "worst_speedup": (worst, lambda v: v >= 5),
                "frames_with_different_codes": (float(differing), lambda v: v == 0),
            },
        ),
    }


def _stacks(tok: Any, ctx: Context) -> bool:
    """Whether slmtok stacked pieces (equal to single items up to rounding) or ran them one by one."""
    stack = getattr(tok, "stack_batches", None)
    return ctx.on_gpu if stack is None else bool(stack)
