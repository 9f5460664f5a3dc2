"""``slmtok vocoder``: train a unit HiFi-GAN on the units of a semantic tokenizer, inspect a vocoder.

Only the standard library is imported at module level; training lives in ``slmtok.vocoders.training``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("vocoder", help="train or inspect unit vocoders (HiFi-GAN on semantic units)")
    sub = p.add_subparsers(dest="vocoder_command", metavar="ACTION")
    sub.required = True

    t = sub.add_parser(
        "train",
        help="train a unit HiFi-GAN on the units of a semantic tokenizer",
        description="Tokenize the corpus into frame-level units, then train a HiFi-GAN generator with "
        "multi-period and multi-scale discriminators (mel + feature-matching + adversarial losses). "
        "Checkpoints go to OUT/checkpoints (resumed automatically), samples of held-out files to "
        "OUT/samples, scalars to OUT/metrics.jsonl and OUT/tensorboard; the vocoder is registered with "
        "the tokenizer so that its decode uses it. On several GPUs (or CPU processes): "
        "torchrun --nproc-per-node N -m slmtok.cli.main vocoder train ... (--batch-size is the total "
        "over the processes).",
    )
    t.add_argument(
        "inputs", nargs="+", metavar="CORPUS", help="audio files, folders (recursive) or manifests"
    )
    t.add_argument("-t", "--tokenizer", required=True, help="semantic tokenizer name, or a bundle folder")
    t.add_argument("-o", "--output", required=True, help="folder for checkpoints, samples and the vocoder")
    t.add_argument("-O", "--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="tokenizer load option, e.g. -O checkpoint=hubert.pt (repeatable)")  # fmt: skip
    t.add_argument(
        "--size", default="small", choices=["tiny", "small", "base"], help="generator size (default small)"
    )
    t.add_argument("--steps", type=int, default=20000, help="training steps (default 20000)")
    t.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    t.add_argument("--batch-size", type=int, default=8,
                   help="segments per step, over all processes under torchrun (default 8)")  # fmt: skip
    t.add_argument(
        "--segment-seconds", type=float, default=0.56, help="training segment length (default 0.56)"
    )
    t.add_argument(
        "--disc-width", type=float, default=0.25, help="discriminator width (1.0 = published size)"
    )
    t.add_argument("--learning-rate", type=float, default=2e-4, help="AdamW learning rate (default 0.0002)")
    t.add_argument(
        "--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)"
    )
    t.add_argument(
        "--validate-every", type=int, default=1000, help="steps between validations (default 1000)"
    )
    t.add_argument(
        "--log-every-seconds",
        type=float,
        default=30.0,
        help="seconds between progress lines (default 30; 0 for none by time)",
    )
    t.add_argument(
        "--log-every", type=int, help="also a progress line every this many steps (default: by time only)"
    )
    t.add_argument("--validation-files", type=int, default=4, help="held-out files for validation samples")
    t.add_argument("--adversarial-start", type=int, default=0,
                   help="train with the mel loss alone for this many steps before the discriminators join")  # fmt: skip
    t.add_argument(
        "--no-duration-predictor", action="store_true", help="train without the duration predictor"
    )
    t.add_argument(
        "--device",
        help="cpu, cuda or cuda:N (default: cuda when there is a GPU, else cpu); under torchrun each "
        "process takes the GPU of its local rank",
    )
    t.add_argument("--precision", choices=["bf16", "fp32"],
                   help="bf16 autocasts the generator and discriminator forward passes (weights, STFT and "
                   "losses stay fp32); default bf16 on a GPU that has it, else fp32")  # fmt: skip
    t.add_argument(
        "--no-tensorboard", action="store_true", help="scalars to OUT/metrics.jsonl only, not OUT/tensorboard"
    )
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    t.add_argument("--seed", type=int, default=1234, help="seed of initialisation and batches (default 1234)")
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in OUT")
    t.add_argument(
        "--no-register", action="store_true", help="do not register the vocoder with the tokenizer"
    )
    t.add_argument("--json", action="store_true", help="print a JSON summary")
    t.set_defaults(run=run_train)

    i = sub.add_parser("info", help="show a unit vocoder (folder or g_XXXXXXXX file)")
    i.add_argument("path", help="a vocoder folder (config.json + g_XXXXXXXX) or a g_XXXXXXXX file")
    i.set_defaults(run=run_info)


def _say(line: str) -> None:
    print(f"slmtok vocoder: {line}", file=sys.stderr, flush=True)


def _tokenizer(args: argparse.Namespace):
    import slmtok
    from slmtok.errors import SlmtokError

    options = dict(args.option)
    if Path(args.tokenizer).is_dir():
        tok = slmtok.load("semantic-bundle", bundle=args.tokenizer, vocoder="none", **options)
    else:
        options.setdefault("vocoder", "none")
        tok = slmtok.load(args.tokenizer, **options)
    if not hasattr(tok, "frame_units"):
        raise SlmtokError(
            f"{args.tokenizer!r} is not a semantic tokenizer (k-means units); train on one of those"
        )
    return tok


def run_train(args: argparse.Namespace) -> int:
    import torch

    from slmtok.vocoders.training.distributed import setup

    if args.threads:
        torch.set_num_threads(args.threads)
    place = setup(args.device or "auto", args.precision)  # a missing GPU is one line, before any work
    try:
        return _train(args, place)
    finally:
        if place.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(args: argparse.Namespace, place) -> int:
    import shutil

    from slmtok.cli.main import plural
    from slmtok.errors import SlmtokError
    from slmtok.inputs import collect
    from slmtok.vocoders.training.data import UnitCorpus, build_corpus, corpus_key
    from slmtok.vocoders.training.distributed import barrier
    from slmtok.vocoders.training.trainer import TrainConfig, VocoderTrainer, vocoder_config

    say = _say if place.is_main else (lambda line: None)
    out = Path(args.output)
    if args.fresh and out.exists() and place.is_main:
        for name in ("checkpoints", "latest.json", "samples", "metrics.jsonl", "tensorboard"):
            target = out / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(args)
    files = collect(args.inputs)
    rate = tok.card.sample_rate
    hop = round(rate / tok.card.frame_rate)
    if abs(rate / hop - tok.card.frame_rate) > 1e-6:
        raise SlmtokError(f"{tok.card.name}: {tok.card.frame_rate} frames/s is not a whole hop at {rate} Hz")
    key = corpus_key(files, tok.card.hash)
    cache = out / "units.safetensors"
    corpus = UnitCorpus.load(cache, {"key": key}) if place.is_main else None
    if place.is_main and corpus is None:  # rank 0 tokenizes; the other processes read its cache
        say(f"tokenizing {len(files)} files with {tok.card.name} ({tok.card.frame_rate:g} units/s)")
        corpus = build_corpus(files, tok.frame_units, sample_rate=rate, hop=hop)
        corpus.save(cache, {"key": key, "tokenizer": tok.card.name})
    elif place.is_main:
        say(f"units of {len(corpus)} files from {cache}")
    barrier(place)
    if corpus is None:
        corpus = UnitCorpus.load(cache, {"key": key})
        if corpus is None:
            raise SlmtokError(f"rank {place.rank}: {cache} does not hold the corpus rank 0 tokenized")
    config = TrainConfig(
        size=args.size,
        disc_width=args.disc_width,
        segment_seconds=args.segment_seconds,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        steps=args.steps,
        max_minutes=args.max_minutes,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every,
        log_every=args.log_every,
        log_every_seconds=args.log_every_seconds or None,
        duration_predictor=not args.no_duration_predictor,
        adversarial_start=args.adversarial_start,
        seed=args.seed,
        tensorboard=not args.no_tensorboard,
    )
    model = vocoder_config(
        args.size, num_units=tok.card.codebook_sizes[0], hop=hop, sample_rate=rate,
        duration_predictor=config.duration_predictor,
    )  # fmt: skip
    n_val = min(args.validation_files, max(0, len(corpus) - 1))
    meta = {"tokenizer": tok.card.name, "tokenizer_hash": tok.card.hash, "kmeans_hash": tok.kmeans_hash}
    trainer = VocoderTrainer(
        out,
        corpus,
        config,
        model,
        validation=list(range(len(corpus) - n_val, len(corpus))),
        meta=meta,
        log=say,
        placement=place,
    )
    share = f", {place.world} processes, {plural(config.batch_size // place.world, 'segment')} each"
    say(f"training on {place.device} in {place.precision}" + (share if place.world > 1 else ""))
    if trainer.load_checkpoint():
        say(f"resumed from step {trainer.step}")
    summary = trainer.run()
    if not place.is_main:
        return 0
    if not args.no_register:
        attach_to_tokenizer(tok, out)
        say(f"registered {out} as the unit vocoder of {tok.card.name}")
    summary.update(output=str(out), tokenizer=tok.card.name)
    summary.update(device=str(place.device), precision=place.precision, processes=place.world)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        ended = (
            f"stopped after {summary['seconds'] / 60:.1f} min (time limit) at step {summary['step']}"
            if summary.get("stopped") == "time limit"
            else f"trained {plural(summary['step'], 'step')}"
        )
        print(f"{ended} -> {out} (validation mel L1 {summary['validation_mel_l1']:.4f})")
    return 0


def attach_to_tokenizer(tok, folder: Path) -> None:
    """Make ``folder`` the unit vocoder of ``tok``: in its bundle folder, or in the user registry."""
    from slmtok.tokenizers.semantic.bundle import read_bundle, write_bundle
    from slmtok.tokenizers.semantic.user_registry import register_vocoder

    if getattr(tok, "bundle_dir", None) is not None:
        data = read_bundle(tok.bundle_dir)
        data.pop("format", None)
        data.pop("version", None)
        data["vocoder"] = str(Path(folder).resolve())
        write_bundle(tok.bundle_dir, data)
    else:
        register_vocoder(
            tok.card.name, folder, kmeans_hash=tok.kmeans_hash, num_units=tok.card.codebook_sizes[0]
        )


def run_info(args: argparse.Namespace) -> int:
    from slmtok.vocoders.unit_hifigan import UnitHiFiGAN

    vocoder = UnitHiFiGAN.load(args.path)
    c = vocoder.config
    print(f"unit HiFi-GAN {vocoder.source}")
    print(
        f"units: {c.num_embeddings}, {vocoder.frame_rate:g} units/s, {c.sampling_rate} Hz, hop {c.code_hop_size}"
    )
    print(f"upsampling: {list(c.generator.upsample_rates)}, channels {c.generator.upsample_initial_channel}")
    print(
        f"duration predictor: {vocoder.has_duration_predictor}; speakers: {c.multispkr}; styles: {c.multistyle}"
    )
    print(f"parameters: {sum(p.numel() for p in vocoder.model.parameters()):,}")
    return 0
