"""``slmtok lm prepare | train | generate``: a speech LM on the tokens of any tokenizer.

Only the standard library is imported here; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

PATTERN_CHOICES = ("delay", "flatten", "parallel")
MODEL_CHOICES = ("tiny", "small", "medium", "base", "large")


def register(subparsers: Any) -> None:
    """Add the ``lm`` command and its sub-commands to the ``slmtok`` parser."""
    from slmtok.cli.main import DEFAULT_TOKENIZER, _option

    lm = subparsers.add_parser(
        "lm", help="speech language model on any tokenizer's tokens: prepare, train, generate"
    )
    sub = lm.add_subparsers(dest="lm_command", metavar="LM_COMMAND")
    sub.required = True

    p = sub.add_parser("prepare", help="tokenize a corpus (or read .slmtok files) into LM token shards")
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="CORPUS",
        help="what encode takes: audio files, folders, .tsv/.jsonl manifests, wav.scp, Lhotse cuts, "
        "datasets folders, .tar shards",
    )
    p.add_argument("--tokens", nargs="+", metavar="TOKENS", help=".slmtok files or folders instead of audio")
    p.add_argument("-o", "--output", required=True, help="data folder to write")
    p.add_argument(
        "-t", "--tokenizer", default=DEFAULT_TOKENIZER, help=f"tokenizer (default {DEFAULT_TOKENIZER})"
    )
    p.add_argument("-O", "--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="tokenizer load option, e.g. -O dedup=true (repeatable)")  # fmt: skip
    p.add_argument("--checkpoint", help="tokenizer checkpoint in the upstream's own format")
    p.add_argument("-k", "--n-codebooks", type=int, help="codebooks to use (default: the card's)")
    p.add_argument(
        "--pattern", choices=PATTERN_CHOICES, default="delay", help="codebook pattern (default delay)"
    )
    p.add_argument("--valid-fraction", type=float, default=0.05, help="utterances held out (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    p.add_argument("-b", "--batch-size", type=int, default=8, help="files per encode batch (default 8)")
    p.add_argument("--device", default="cpu", help="torch device for the tokenizer (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace a data set already in the folder")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(run=run_prepare)

    p = sub.add_parser("train", help="train (or resume) a decoder-only LM on a prepared data folder")
    p.add_argument("data", help="data folder made by slmtok lm prepare")
    p.add_argument("-o", "--output", required=True, help="run folder (resumed if it holds a checkpoint)")
    p.add_argument("--config", dest="model", choices=MODEL_CHOICES, help="model size preset (default tiny)")
    p.add_argument("-C", "--model-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="model config field, e.g. -C n_layer=4 -C dropout=0.1 (repeatable)")  # fmt: skip
    for flag, kind, text in (
        ("--steps", int, "optimizer steps in all (default 1000)"),
        ("--batch-size", int, "windows per micro-batch and process (default 16)"),
        ("--block-size", int, "context in LM steps (default: the preset's)"),
        ("--grad-accum", int, "micro-batches per step (default 1)"),
        ("--lr", float, "peak learning rate (default 1e-3)"),
        ("--warmup", int, "warmup steps (default 100)"),
        ("--weight-decay", float, "AdamW weight decay (default 0.1)"),
        ("--grad-clip", float, "gradient norm clip, 0 for none (default 1.0)"),
        ("--eval-every", int, "steps between validations (default 250)"),
        ("--eval-steps", int, "validation targets per evaluation (default: the whole split)"),
        ("--save-every", int, "steps between checkpoints (default 250)"),
        ("--log-every", int, "steps between progress lines (default 10)"),
        ("--seed", int, "seed of initialisation and batches (default 0)"),
        ("--max-minutes", float, "stop with a checkpoint after this long (resume later)"),
    ):
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="refuse to continue a run")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(run=run_train)

    p = sub.add_parser("generate", help="continue a prompt with a trained LM and decode it to audio")
    p.add_argument("run_folder", metavar="RUN", help="run folder made by slmtok lm train")
    p.add_argument("--prompt", required=True, help="prompt audio file")
    p.add_argument("-o", "--output", required=True, help="audio file to write (.wav/.flac/.ogg)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds to add (default 5)")
    p.add_argument("--prompt-seconds", type=float, help="use only the prompt's first seconds")
    p.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature, 0 = greedy (default 1)"
    )
    p.add_argument("--top-k", type=int, default=250, help="sample among the k likeliest codes (default 250)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--checkpoint",
        action="append",
        help="the tokenizer's weights, if they moved since lm prepare (found by sha256; repeatable)",
    )
    p.add_argument(
        "--no-cache", dest="use_cache", action="store_false", help="recompute the context every step"
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(run=run_generate)


def run_prepare(args: argparse.Namespace) -> int:
    from slmtok.cli.commands import _check_options, _device, _progress
    from slmtok.lm.data import prepare

    options = dict(args.option)
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    if args.inputs:
        _check_options(args.tokenizer, options)
    _device(args.device)
    with _progress(2, "prepare") as bar:
        task = bar.add_task("prepare", total=None)
        manifest = prepare(
            args.inputs or None,
            args.output,
            tokenizer=args.tokenizer,
            options=options,
            tokens=args.tokens,
            pattern=args.pattern,
            n_codebooks=args.n_codebooks,
            valid_fraction=args.valid_fraction,
            seed=args.seed,
            batch_size=args.batch_size,
            device=args.device,
            overwrite=args.overwrite,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    train, valid = manifest["splits"]["train"], manifest["splits"]["valid"]
    unigram = manifest["unigram"]["valid_bits_per_second"]
    from slmtok.cli.main import plural

    print(
        f"{manifest['tokenizer']['name']} ({plural(manifest['n_codebooks'], 'codebook')}, "
        f"{manifest['pattern']['name']} pattern): "
        f"train {plural(train['utterances'], 'utterance')}, {train['audio_seconds']:.1f} s, "
        f"{plural(train['code_tokens'], 'token')}; "
        f"valid {plural(valid['utterances'], 'utterance')}, {valid['audio_seconds']:.1f} s"
        + (f"; unigram baseline {unigram:,.0f} bits/s" if unigram else "")
        + f" -> {args.output}"
    )
    return 0


def run_train(args: argparse.Namespace) -> int:
    from slmtok.cli.commands import _device
    from slmtok.lm.training import train

    names = {
        "model": "model",
        "steps": "max_steps",
        "batch_size": "batch_size",
        "block_size": "block_size",
        "grad_accum": "grad_accum",
        "lr": "learning_rate",
        "warmup": "warmup_steps",
        "weight_decay": "weight_decay",
        "grad_clip": "grad_clip",
        "eval_every": "eval_interval",
        "eval_steps": "eval_steps",
        "save_every": "save_interval",
        "log_every": "log_interval",
        "seed": "seed",
        "max_minutes": "max_minutes",
        "device": "device",
        "compile": "compile",
    }
    overrides = {field: getattr(args, key) for key, field in names.items() if getattr(args, key) is not None}
    if args.model_option:
        overrides["model_overrides"] = dict(args.model_option)
    if "device" in overrides:
        _device(overrides["device"])
    from pathlib import Path

    from slmtok.lm import checkpoint

    if args.resume and (Path(args.output) / checkpoint.CHECKPOINT).exists():
        saved = checkpoint.read_run_config(args.output)["train"]  # omitted options keep the run's values
        overrides = {**saved, **overrides}
    result = train(args.data, args.output, resume=args.resume, **overrides)
    summary = {
        "run": str(result.run),
        "step": result.step,
        "last_loss": result.losses[-1] if result.losses else None,
        "positions_per_second": result.positions_per_second,
        **(result.evaluation or {}),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        bits = summary.get("val_bits_per_second")
        print(
            f"trained to step {result.step} -> {result.run}"
            + (f"; validation {bits:,.0f} bits/s" if bits is not None else "")
            + (
                f" (unigram {summary['unigram_bits_per_second']:,.0f} bits/s)"
                if summary.get("unigram_bits_per_second")
                else ""
            )
        )
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from slmtok.audio import write_audio
    from slmtok.cli.commands import AUDIO_OUTPUTS, _device, _ensure_folder
    from slmtok.errors import SlmtokError
    from slmtok.lm.generation import generate

    out = Path(args.output)
    if out.suffix.lower() not in AUDIO_OUTPUTS:
        raise SlmtokError(f"output must be a {'/'.join(AUDIO_OUTPUTS)} file, got {out}")
    device = _device(args.device)
    result = generate(
        args.run_folder,
        args.prompt,
        seconds=args.seconds,
        temperature=args.temperature,
        top_k=args.top_k if args.top_k and args.top_k > 0 else None,
        seed=args.seed,
        device=str(device),
        use_cache=args.use_cache,
        prompt_seconds=args.prompt_seconds,
        checkpoint=args.checkpoint,
    )
    write_audio(_ensure_folder(out), result.audio.item(0), result.audio.sample_rate)
    summary = {
        "output": str(out),
        "prompt_frames": result.prompt_frames,
        "new_frames": result.new_frames,
        "audio_seconds": result.audio.durations[0],
        "steps_per_second": result.steps_per_second,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{result.prompt_frames} prompt + {result.new_frames} generated frames, "
            f"{summary['audio_seconds']:.2f} s of audio ({result.steps_per_second:,.0f} LM steps/s) -> {out}",
            file=sys.stdout,
        )
    return 0
