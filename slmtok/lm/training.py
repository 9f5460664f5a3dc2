"""The training loop: AdamW, warmup + cosine decay, gradient accumulation and clipping, bf16 autocast on
GPU, optional ``torch.compile``, DDP under torchrun, exact resume, and bits per second of audio.

Exact resume: batches are drawn from ``np.random.default_rng((seed, step, micro-batch))`` alone (no
sampler state), the learning rate is a function of the step, and checkpoints hold the weights, AdamW's
moments and the RNG states; a resumed run computes the same losses as one that never stopped.

Bits per second of audio = validation nats per code token x code tokens per second of audio / ln 2;
only code tokens are scored (not BOS/EOS/EMPTY), so LMs on different tokenizers and patterns compare.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from slmtok.atomic import atomic_path, remove_orphans
from slmtok.errors import OutputError, SlmtokError
from slmtok.lm import checkpoint as ckpt
from slmtok.lm.data import SplitStream, TokenData
from slmtok.lm.model import ModelConfig, SpeechLM, flops_per_step, sequence_loss, sequence_nats
from slmtok.runlock import RunLock

#: fields that may differ when a run is resumed (they do not change what is computed)
RESUMABLE = {
    "max_minutes",
    "log_interval",
    "eval_interval",
    "save_interval",
    "device",
    "compile",
    "eval_steps",
}
#: dense bf16 peak FLOP/s by device-name fragment, for model FLOP utilisation
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


@dataclass
class TrainConfig:
    """How to train; saved in the run's ``config.json`` and checked when a run is resumed."""

    model: str = "tiny"  # a ModelConfig preset
    model_overrides: dict[str, Any] = field(default_factory=dict)
    block_size: int | None = None  # context in steps (default: the preset's)
    batch_size: int = 16  # windows per micro-batch (per process)
    grad_accum: int = 1
    max_steps: int = 1000
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_steps: int | None = None  # validation targets per evaluation (None: the whole split)
    save_interval: int = 250
    log_interval: int = 10
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    max_minutes: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SlmtokError(f"unknown training option {unknown[0]!r}")
        return cls(**data)

    def model_config(self, stream_vocab_sizes: tuple[int, ...]) -> ModelConfig:
        extra = {"block_size": self.block_size} if self.block_size else {}
        return ModelConfig.preset(self.model, **self.model_overrides, **extra).with_vocab(stream_vocab_sizes)


@dataclass
class TrainResult:
    """What a call to ``train`` did: the run folder, the step reached, this call's training losses (one
    per optimizer step), the last evaluation, and the mean throughput in LM positions (steps of ``H``
    tokens) per second, evaluations and checkpoints included."""

    run: Path
    step: int
    losses: list[float]
    evaluation: dict[str, Any] | None
    positions_per_second: float


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio * learning_rate``."""
    peak = config.learning_rate
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    low = peak * config.min_lr_ratio
    return low + 0.5 * (1 + math.cos(math.pi * progress)) * (peak - low)


@torch.no_grad()
def evaluate(
    model: SpeechLM, split: SplitStream, block_size: int, batch_size: int, max_steps: int | None = None
) -> dict[str, Any]:
    """Validation loss over consecutive windows: nats per code token, and bits per second of audio."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    nats, count = 0.0, 0
    with _autocast(device):
        for x, y in split.windows(block_size, batch_size, max_steps):
            total, n = sequence_loss(model, model(x.to(device)), y.to(device))
            nats, count = nats + float(total), count + n
    model.train(was_training)
    per_token = nats / count if count else None  # no validation split
    rate = split.info.get("tokens_per_second")
    bits = per_token * rate / math.log(2) if rate and per_token is not None else None
    return {"val_nats_per_token": per_token, "val_bits_per_second": bits, "val_tokens": count}


def _autocast(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _distributed(requested: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun (``WORLD_SIZE`` > 1) joins the process group: NCCL on
    GPUs (one per local rank), gloo on CPU."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), world, device
    return 0, 1, device


def _optimizer(model: SpeechLM, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    keep = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        groups, lr=config.learning_rate, betas=(config.beta1, config.beta2), fused=device.type == "cuda"
    )


def _precision(device: torch.device) -> str:
    """The arithmetic a device trains in here: bf16 autocast on GPUs that have it, else fp32."""
    return "bf16-autocast" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def _check_environment(info: dict[str, Any], world: int, device: torch.device) -> None:
    """Refuse to resume a checkpoint under another world size, device type or precision (the batches,
    the RNG streams and the arithmetic would not be those of the run that wrote it)."""
    saved_world = int(info.get("world_size", 1))
    if saved_world != world:
        raise SlmtokError(
            f"the checkpoint was written by {saved_world} process(es), this run has {world}; resume it with "
            f"torchrun --nproc-per-node {saved_world} (or 1 process), or train into a new folder"
        )
    saved = (info.get("device_type"), info.get("precision"))
    here = (device.type, _precision(device))
    if saved[0] is not None and saved != here:
        raise SlmtokError(
            f"the checkpoint was trained on {saved[0]} in {saved[1]}, this run is on {here[0]} in {here[1]}; "
            f"resume it with --device {saved[0]}, or train into a new folder"
        )


def _check_resume(saved: dict[str, Any], config: TrainConfig, fingerprint: dict[str, Any]) -> None:
    old = saved["train"]
    for key, value in asdict(config).items():
        if key not in RESUMABLE and old.get(key) != value:
            raise SlmtokError(
                f"the run was trained with {key}={old.get(key)!r}, not {value!r}; resume it with the same "
                "settings or train into a new folder"
            )
    if saved["data"]["fingerprint"] != fingerprint:
        raise SlmtokError("the run was trained on another data set; train into a new folder")


def train(
    data: str | os.PathLike,
    run: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    resume: bool = True,
    stop_after: int | None = None,
    log: Callable[[str], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train (or resume) an LM on an LM data folder; write checkpoints and metrics into ``run``.

    Args:
        config: training settings (default ``TrainConfig()``); keyword ``overrides`` replace fields.
        resume: continue the checkpoint in ``run`` if there is one (refused if settings differ).
        stop_after: stop (with a checkpoint) after this many optimizer steps in this call.
        log: where progress lines go (default: standard error, rank 0 only).

    One process trains into a run folder at a time (rank 0 holds its lock). A resume is refused under
    another world size, device type or precision; a model file left stale by a kill is rewritten from
    the checkpoint; metric rows past the checkpoint and a torn last row are dropped.
    """
    config = TrainConfig.from_dict({**asdict(config or TrainConfig()), **overrides})
    rank, world, device = _distributed(config.device)
    log = (
        (log or (lambda line: print(line, file=sys.stderr, flush=True))) if rank == 0 else (lambda line: None)
    )
    dataset = TokenData(data)
    manifest = dataset.manifest
    fingerprint = {
        "tokenizer": manifest["tokenizer"],
        "pattern": manifest["pattern"],
        "splits": manifest["splits"],
    }
    model_config = config.model_config(dataset.pattern.stream_vocab_sizes)
    run = Path(run)
    has_checkpoint = (run / ckpt.CHECKPOINT).exists()
    if has_checkpoint and not resume:
        raise SlmtokError(f"{run} already holds a run; resume it or train into a new folder")
    if has_checkpoint:
        _check_resume(ckpt.read_run_config(run), config, fingerprint)
        _check_environment(ckpt.checkpoint_info(run)[1], world, device)
    metrics_path = run / ckpt.METRICS
    if rank == 0 and metrics_path.is_symlink():
        raise OutputError(f"refusing to write through a symlink: {metrics_path}")
    with RunLock(_made(run), "lm train") if rank == 0 else nullcontext():
        return _train(data, run, config, rank, world, device, log, dataset, fingerprint, model_config,
                      has_checkpoint, stop_after)  # fmt: skip


def _made(run: Path) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    return run


def _train(data, run, config, rank, world, device, log, dataset, fingerprint, model_config, has_checkpoint,
           stop_after) -> TrainResult:  # fmt: skip
    """The body of ``train``, run while rank 0 holds the run folder's lock."""
    import torch.distributed as dist

    manifest = dataset.manifest
    start = 0
    if rank == 0:
        remove_orphans(run)
    torch.manual_seed(config.seed)
    model = SpeechLM(model_config).to(device)
    optimizer = _optimizer(model, config, device)
    if has_checkpoint:
        start, _ = ckpt.load_checkpoint(run, model, optimizer, rank=rank)
        log(f"resumed {run} at step {start}")
        if rank == 0 and ckpt.restore_model(run, model, start):
            log(
                f"rewrote {run / ckpt.MODEL} from the checkpoint of step {start} (a killed run left it stale)"
            )
    elif rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        ckpt.write_run_config(
            run,
            {
                "model": model_config.to_dict(),
                "train": asdict(config),
                "data": {"path": str(Path(data).resolve()), "fingerprint": fingerprint},
                "manifest": manifest,
            },
        )
    if rank == 0:
        _trim_metrics(run / ckpt.METRICS, start)
    net: torch.nn.Module = torch.compile(model) if config.compile else model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device] if device.type == "cuda" else None
        )
    train_split, valid_split = dataset.split("train"), dataset.split("valid")
    block = model_config.block_size
    positions_per_step = config.batch_size * block * config.grad_accum * world
    n_params = model.num_parameters()
    log(
        f"{n_params / 1e6:.2f}M parameters ({model.num_parameters(embeddings=False) / 1e6:.2f}M without embeddings), "
        f"{model_config.n_streams} stream(s), {manifest['pattern']['name']} pattern on {manifest['tokenizer']['name']}, "
        f"{positions_per_step} positions/update, device {device}, world {world}"
    )
    losses: list[float] = []
    evaluation = None
    began = window_start = time.perf_counter()
    window_steps = 0
    step = start
    metrics = ckpt.open_metrics(run) if rank == 0 else None
    pending: list[torch.Tensor] = []  # this window's losses, on the device: read back at log steps only
    try:
        while step < config.max_steps:
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            total = torch.zeros((), device=device)
            for micro in range(config.grad_accum):
                x, y = train_split.sample(config.batch_size, block, (config.seed, step, micro * world + rank))
                count = max(int((y.numpy() != -100).sum()), 1)  # counted on the host: no device sync
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                sync = world == 1 or micro == config.grad_accum - 1
                with nullcontext() if sync else net.no_sync(), _autocast(device):
                    loss = sequence_nats(model, net(x), y) / count / config.grad_accum
                loss.backward()
                total += loss.detach()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if world > 1:  # gloo has no AVG
                dist.all_reduce(total, op=dist.ReduceOp.SUM)
                total = total / world
            pending.append(total)
            step += 1
            window_steps += 1
            done = step >= config.max_steps or (stop_after is not None and step - start >= stop_after)
            if config.max_minutes is not None and (world == 1 or step % config.log_interval == 0):
                over = time.perf_counter() - began > 60 * config.max_minutes
                if world > 1:  # every rank must stop at the same step: checked at log steps only
                    flag = torch.tensor(float(over), device=device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    over = bool(flag)
                done = done or over
            if step % config.log_interval == 0 or done:
                losses += torch.stack(pending).tolist()  # the one host sync of a log window
                pending = []
                now = time.perf_counter()
                rate = window_steps * positions_per_step / (now - window_start)
                row = {
                    "step": step,
                    "loss": losses[-1],
                    "lr": lr,
                    "positions_per_second": rate,
                    "tokens_per_second": rate * model_config.n_streams,
                    "elapsed": now - began,
                }
                if device.type == "cuda":
                    row["mfu"] = _mfu(model_config, n_params, rate, device)
                _write(metrics, row)
                log(
                    f"step {step}/{config.max_steps}  loss {losses[-1]:.4f}  lr {lr:.2e}  "
                    f"{rate * model_config.n_streams:,.0f} tokens/s"
                )
                window_start, window_steps = now, 0
            if step % config.eval_interval == 0 or done:
                if rank == 0:
                    evaluation = evaluate(model, valid_split, block, config.batch_size, config.eval_steps)
                    evaluation["unigram_bits_per_second"] = manifest["unigram"]["valid_bits_per_second"]
                    _write(metrics, {"step": step, **evaluation})
                    log(_describe(evaluation))
                if world > 1:
                    dist.barrier()
            if step % config.save_interval == 0 or done:
                states = _gather(ckpt.rng_state(device), rank, world)
                if rank == 0:
                    info = {"world_size": world, "device_type": device.type, "precision": _precision(device)}
                    # checkpoint first, then model: a kill in between leaves the model one save behind,
                    # and the next run rewrites it from the checkpoint (``restore_model``)
                    ckpt.save_checkpoint(run, model, optimizer, step, info, states)
                    ckpt.save_model(run, model, step)
                if world > 1:
                    dist.barrier()
            if done:
                break
            window_start = window_start if window_steps else time.perf_counter()
    finally:
        if metrics is not None:
            metrics.close()
    losses += torch.stack(pending).tolist() if pending else []
    elapsed = time.perf_counter() - began
    rate = (step - start) * positions_per_step / elapsed if elapsed else 0.0
    return TrainResult(run, step, losses, evaluation, rate)


def _gather(state: dict[str, torch.Tensor], rank: int, world: int) -> list[dict[str, torch.Tensor]] | None:
    """Every rank's RNG ``state`` on rank 0 (in rank order); ``None`` on the other ranks."""
    if world == 1:
        return [state]
    import torch.distributed as dist

    states: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(state, states, dst=0)
    return states


def _describe(evaluation: dict[str, Any]) -> str:
    bits, unigram = evaluation["val_bits_per_second"], evaluation.get("unigram_bits_per_second")
    if evaluation["val_nats_per_token"] is None:
        return "validation: no validation tokens"
    text = f"validation: {evaluation['val_nats_per_token']:.4f} nats/token"
    if bits is not None:
        text += f", {bits:,.0f} bits/s of audio"
    if unigram:
        text += f" (unigram baseline {unigram:,.0f} bits/s)"
    return text


def _mfu(
    config: ModelConfig, n_params: int, positions_per_second: float, device: torch.device
) -> float | None:
    """Model FLOP utilisation against the GPU's dense bf16 peak (None for an unknown GPU)."""
    name = torch.cuda.get_device_name(device)
    peak = next((flops for key, flops in PEAK_BF16.items() if key in name), None)
    return flops_per_step(config, n_params, config.block_size) * positions_per_second / peak if peak else None


def _write(metrics, row: dict[str, Any]) -> None:
    if metrics is not None:
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()


def _trim_metrics(path: Path, step: int) -> None:
    """Drop metric rows past ``step`` (written after the checkpoint a resumed run continues from), and a
    last line cut short by a kill (it would glue itself to the next row); other damage is refused."""
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # torn by a kill mid-write
                break
            raise SlmtokError(f"{path}:{number}: not a JSON line; move the file away to resume") from None
        if row.get("step", 0) <= step:
            kept.append(line)
    if kept != lines or (text and not text.endswith("\n")):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
