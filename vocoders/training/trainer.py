"""The unit HiFi-GAN training loop: generator + MPD + MSD, mel + feature-matching + adversarial losses.

Checkpoints are safetensors (models, optimizers) plus ``state.json``; ``latest.json`` names the newest
complete one, so a run killed at any moment resumes from its last checkpoint and then takes exactly the
steps the uninterrupted run would have taken (batches and dropout are seeded by step, the learning rate
is a function of the step, and the optimizer moments are restored). Validation vocodes held-out files
and writes them as ``samples/step_XXXXXXXX/*.wav``. The finished (or interrupted) generator is exported
as ``generator.safetensors`` + ``config.json`` in the unit HiFi-GAN format, loadable by ``hifigan-unit``.

Devices: CPU or a CUDA GPU (``device``), and several of either under ``torchrun`` (DDP; every process
trains on its rows of the step's batch, see ``distributed``). ``precision="bf16"`` autocasts the generator
and discriminator forward passes only; the weights, AdamW, the STFT/mel and every loss stay fp32 (a bf16
STFT loses the small magnitudes the log-mel loss weighs, and fp32 losses need no gradient scaler).
Progress goes to the log by time, and as scalars to ``metrics.jsonl`` and TensorBoard (``scalars``).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from slmtok.atomic import atomic_path
from slmtok.errors import SlmtokError
from slmtok.vocoders.mel_hifigan import MelConfig, MelSpectrogram
from slmtok.vocoders.training import losses
from slmtok.vocoders.training.data import UnitCorpus, draw_batch
from slmtok.vocoders.training.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from slmtok.vocoders.training.distributed import Placement, all_sum, barrier, wrap
from slmtok.vocoders.training.scalars import ScalarLog
from slmtok.vocoders.unit_hifigan import CodeGenerator, UnitVocoderConfig

#: generator sizes: upsample_initial_channel, embedding_dim, resblock kernels
SIZES = {
    "tiny": (32, 32, (3,), ((1, 3, 5),)),
    "small": (128, 128, (3, 7, 11), ((1, 3, 5), (1, 3, 5), (1, 3, 5))),
    "base": (512, 128, (3, 7, 11), ((1, 3, 5), (1, 3, 5), (1, 3, 5))),  # the published unit vocoders
}


@dataclass
class TrainConfig:
    """Training settings (steps, sizes, optimizer; the defaults of speech-resynthesis where they apply)."""

    size: str = "small"
    disc_width: float = 0.25
    segment_seconds: float = 0.56
    batch_size: int = 8
    learning_rate: float = 2e-4
    adam_b1: float = 0.8
    adam_b2: float = 0.99
    lr_decay: float = 0.999
    decay_every: int = 500
    steps: int = 20000
    max_minutes: float | None = None
    checkpoint_every: int = 500
    validate_every: int = 1000
    log_every: int | None = None  # steps between progress lines (None: by time only)
    log_every_seconds: float | None = 30.0  # seconds between progress lines (None: by steps only)
    duration_predictor: bool = True
    adversarial_start: int = 0  # steps of mel-loss-only training before the discriminators join
    seed: int = 1234
    num_mels: int = 80
    n_fft: int = 1024
    hop_size: int = 256
    win_size: int = 1024
    tensorboard: bool = True  # TensorBoard scalars beside metrics.jsonl (when tensorboard is installed)


def upsampling(hop: int) -> tuple[list[int], list[int]]:
    """Upsampling rates whose product is ``hop`` — 5s and 3s, at most two 4s, then 2s, as the published
    ``[5, 4, 4, 2, 2]`` for 320 — and their kernel sizes (``2 r``, odd rates ``2 r + 1``)."""
    rates, rest = [], hop
    for factor, limit in ((5, 99), (3, 99), (4, 2), (2, 99)):
        while rest % factor == 0 and limit > 0:
            rates.append(factor)
            rest //= factor
            limit -= 1
    if rest != 1 or not rates:
        raise ValueError(f"hop {hop} is not a product of 2, 3 and 5")
    return rates, [2 * r + r % 2 for r in rates]


def vocoder_config(
    size: str, *, num_units: int, hop: int, sample_rate: int, duration_predictor: bool
) -> dict:
    """A unit HiFi-GAN ``config.json`` for ``num_units`` units at ``sample_rate / hop`` frames/s."""
    if size not in SIZES:
        raise ValueError(f"unknown vocoder size {size!r}; one of {', '.join(SIZES)}")
    channels, embed, kernels, dilations = SIZES[size]
    rates, kernel_sizes = upsampling(hop)
    config = {
        "resblock": "1",
        "upsample_rates": rates,
        "upsample_kernel_sizes": kernel_sizes,
        "upsample_initial_channel": channels,
        "resblock_kernel_sizes": list(kernels),
        "resblock_dilation_sizes": [list(d) for d in dilations],
        "num_embeddings": num_units,
        "embedding_dim": embed,
        "model_in_dim": embed,
        "code_hop_size": hop,
        "sampling_rate": sample_rate,
        "f0": False,
    }
    if duration_predictor:
        config["dur_predictor_params"] = {
            "encoder_embed_dim": embed,
            "var_pred_hidden_dim": embed,
            "var_pred_kernel_size": 3,
            "var_pred_dropout": 0.5,
        }
    return config


STATS = ("d", "g", "mel", "fm", "adv", "dur")  # the losses a step reports, in this order


class VocoderTrainer:
    """Owns the models, optimizers and checkpoints of one training run in ``out_dir``.

    ``placement`` says where this process trains (default: one process on the CPU in fp32); under
    torchrun every process builds a trainer, and rank 0 alone validates, writes checkpoints and logs.
    """

    def __init__(
        self,
        out_dir: Path,
        corpus: UnitCorpus,
        config: TrainConfig,
        model_config: dict[str, Any],
        *,
        validation: list[int],
        meta: dict[str, Any] | None = None,
        log: Callable[[str], None] | None = None,
        placement: Placement | None = None,
    ) -> None:
        self.out = Path(out_dir)
        self.corpus = corpus
        self.config = config
        self.model_config = model_config
        self.meta = dict(meta or {})
        self.place = placement or Placement()
        self.log = (log or (lambda line: None)) if self.place.is_main else (lambda line: None)
        if config.batch_size % self.place.world:
            raise SlmtokError(
                f"batch size {config.batch_size} does not split over {self.place.world} processes; "
                "use a multiple of the process count"
            )
        self.validation = validation
        self.training = [i for i in range(len(corpus)) if i not in set(validation)] or list(
            range(len(corpus))
        )
        self.segment_frames = max(4, round(config.segment_seconds * corpus.sample_rate / corpus.hop))
        device = self.place.device
        torch.manual_seed(config.seed)
        self.generator = CodeGenerator(UnitVocoderConfig.from_dict(model_config))
        if not config.duration_predictor:
            self.generator.dur_predictor = None
        self.mpd = MultiPeriodDiscriminator(config.disc_width)
        self.msd = MultiScaleDiscriminator(config.disc_width)
        for module in (self.generator, self.mpd, self.msd):
            module.to(device)
        # DDP wrappers (the modules themselves under one process): they average gradients over processes
        self.g_net = wrap(self.generator, self.place)
        self.d_nets = [wrap(self.mpd, self.place), wrap(self.msd, self.place)]
        betas = (config.adam_b1, config.adam_b2)
        fused = {"fused": True} if device.type == "cuda" else {}
        self.opt_g = torch.optim.AdamW(
            self.generator.parameters(), config.learning_rate, betas=betas, **fused
        )
        self.opt_d = torch.optim.AdamW(
            [*self.mpd.parameters(), *self.msd.parameters()], config.learning_rate, betas=betas, **fused
        )
        mel = MelConfig(
            corpus.sample_rate, config.n_fft, config.num_mels, config.hop_size, config.win_size, 0.0, None
        )
        self.mel = MelSpectrogram(mel, device=device)
        self.step = 0
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        """One discriminator and one generator update on the batch of ``self.step``; the losses averaged
        over the processes (``STATS``), the step reached and the learning rate."""
        lr = self._lr()
        stats = self._step()
        return {"step": self.step, "lr": lr, **dict(zip(STATS, stats.tolist(), strict=True))}

    def _lr(self) -> float:
        c = self.config
        return c.learning_rate * c.lr_decay ** (self.step // c.decay_every)

    def _step(self) -> torch.Tensor:
        """The update of ``train_step``; returns the ``STATS`` losses as one ``[6]`` tensor on the device
        (read back only when logged: no host sync per step on a GPU)."""
        c, place = self.config, self.place
        device = place.device
        torch.manual_seed(c.seed + self.step + 1_000_003 * place.rank)  # dropout of the duration predictor
        lr = self._lr()
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        rows = range(place.rank, c.batch_size, place.world)
        units, audio = draw_batch(
            self.corpus, self.training, self.segment_frames, c.batch_size, c.seed, self.step, rows
        )
        loss_dur = self._duration_loss(units)  # run lengths counted on the host, before the move
        units, audio = units.to(device, non_blocking=True), audio.to(device, non_blocking=True)
        with place.autocast():
            fake = self.g_net(units)
        fake = fake.float()  # the STFT and every loss in fp32
        real_mel = self.mel(audio[:, 0])
        n = audio.shape[0]

        adversarial = self.step >= c.adversarial_start
        zero = torch.zeros((), device=device)
        loss_d = zero
        if adversarial:
            self.opt_d.zero_grad(set_to_none=True)
            both = torch.cat([audio, fake.detach()])  # one pass over real and generated audio
            for disc in self.d_nets:
                with place.autocast():
                    logits, _ = disc(both)
                loss_d = loss_d + losses.discriminator_loss([x[:n] for x in logits], [x[n:] for x in logits])
            loss_d.backward()
            self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        loss_mel = losses.mel_loss(real_mel, self.mel(fake[:, 0]))
        loss_adv, loss_fm = zero, zero
        if adversarial:
            # the discriminators are fixed here: no gradients for their weights (nor DDP traffic)
            discs = (self.mpd, self.msd)
            frozen = [p for d in discs for p in d.parameters() if p.requires_grad]
            for p in frozen:
                p.requires_grad_(False)
            try:
                for disc in discs:
                    with place.autocast():
                        with torch.no_grad():
                            _, real_features = disc(audio)
                        fake_logits, fake_features = disc(fake)
                    loss_adv = loss_adv + losses.generator_loss(fake_logits)
                    loss_fm = loss_fm + losses.feature_matching_loss(real_features, fake_features)
            finally:
                for p in frozen:
                    p.requires_grad_(True)
        loss_g = loss_adv + loss_fm + 45.0 * loss_mel + loss_dur
        loss_g.backward()
        self.opt_g.step()
        self.step += 1
        stats = torch.stack([loss_d, loss_g, loss_mel, loss_fm, loss_adv, loss_dur]).detach().float()
        return all_sum(stats, place) / place.world

    def _duration_loss(self, units: torch.Tensor) -> torch.Tensor:
        """MSE of log(1 + run length) for ``units`` ``[B, F]`` (on the CPU), first and last (cut) runs of each segment left out, as upstream.

        Under several processes the squared errors are divided by the run count of the whole batch (times
        the process count, which DDP's gradient average divides out again): the gradient is the one of a
        single process that holds every row."""
        predictor = self.generator.dur_predictor
        device = self.place.device
        if predictor is None:
            return torch.zeros((), device=device)
        runs, counts = [], []
        for row in units:
            values, count = torch.unique_consecutive(row, return_counts=True)
            if values.numel() > 2:
                values, count = values[1:-1], count[1:-1]
            runs.append(values)
            counts.append(count)
        width = max(r.numel() for r in runs)
        padded = torch.zeros(len(runs), width, dtype=torch.long)
        mask = torch.zeros(len(runs), width, dtype=torch.bool)
        for i, r in enumerate(runs):
            padded[i, : r.numel()] = r
            mask[i, : r.numel()] = True
        padded, mask = padded.to(device), mask.to(device)
        target = torch.log(torch.cat(counts).float() + 1).to(device)
        with self.place.autocast():
            predicted = predictor(self.generator.dict(padded), mask)[mask]
        squared = torch.sum((predicted.float() - target) ** 2)
        total = all_sum(torch.tensor(float(target.numel()), device=device), self.place)
        return squared / total * self.place.world

    # ------------------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, write_samples: bool = True) -> float:
        """Mean L1 log-mel distance on the held-out items; writes their resynthesis as wav files."""
        from slmtok.audio import write_audio

        self.generator.eval()
        distances = []
        folder = self.out / "samples" / f"step_{self.step:08d}"
        if write_samples:
            folder.mkdir(parents=True, exist_ok=True)
        device = self.place.device
        for i in self.validation:
            units, audio = self.corpus.units[i][None].to(device), self.corpus.audio[i][None].to(device)
            with self.place.autocast():
                fake = self.generator(units)
            fake = fake[0, 0].float()
            n = min(fake.numel(), audio.numel())
            distances.append(float(losses.mel_loss(self.mel(audio[:, :n]), self.mel(fake[None, :n]))))
            if write_samples:
                write_audio(folder / f"{self.corpus.names[i]}.wav", fake[None].cpu(), self.corpus.sample_rate)
        self.generator.train()
        return sum(distances) / max(1, len(distances))

    # ------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_XXXXXXXX/`` and point ``latest.json`` at it (older ones are removed).
        Call it on rank 0 only (every process holds the same weights and optimizer moments)."""
        from safetensors.torch import save_file

        root = self.out / "checkpoints"
        folder = root / f"step_{self.step:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        models = {f"generator.{k}": v for k, v in self.generator.state_dict().items()}
        models |= {f"mpd.{k}": v for k, v in self.mpd.state_dict().items()}
        models |= {f"msd.{k}": v for k, v in self.msd.state_dict().items()}
        save_file({k: _host(v) for k, v in models.items()}, str(folder / "models.safetensors"))
        tensors, groups = {}, {}
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            state = opt.state_dict()
            for index, values in state["state"].items():
                for key, value in values.items():
                    tensors[f"{name}.{index}.{key}"] = _host(torch.as_tensor(value))
            groups[name] = state["param_groups"]
        save_file(
            tensors, str(folder / "optimizers.safetensors"), metadata={"param_groups": json.dumps(groups)}
        )
        state = {
            "step": self.step,
            "config": asdict(self.config),
            "model_config": self.model_config,
            "history": self.history,
            "meta": self.meta,
            "placement": self.place.describe(),
        }
        (folder / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
        with atomic_path(self.out / "latest.json") as tmp:
            tmp.write_text(json.dumps({"checkpoint": folder.name, "step": self.step}), encoding="utf-8")
        for old in root.iterdir():
            if old.is_dir() and old != folder:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    def load_checkpoint(self) -> bool:
        """Resume from ``latest.json`` if there is one; ``False`` when starting fresh. A checkpoint written
        under another process count, device type or precision is refused (one line)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        latest = self.out / "latest.json"
        if not latest.is_file():
            return False
        folder = self.out / "checkpoints" / json.loads(latest.read_text())["checkpoint"]
        saved = json.loads((folder / "state.json").read_text())
        written = saved.get("placement", Placement().describe())  # before placements: 1 CPU process, fp32
        here = self.place.describe()
        if written != here:
            raise SlmtokError(
                f"{self.out} was trained by {_describe(written)}, this run is {_describe(here)}; resume it "
                "the same way, or train into a new folder (--fresh)"
            )
        models = load_file(str(folder / "models.safetensors"))
        for prefix, module in (("generator.", self.generator), ("mpd.", self.mpd), ("msd.", self.msd)):
            module.load_state_dict({k[len(prefix) :]: v for k, v in models.items() if k.startswith(prefix)})
        with safe_open(str(folder / "optimizers.safetensors"), framework="pt") as f:
            groups = json.loads(f.metadata()["param_groups"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                owner, index, field = key.split(".", 2)
                if owner == name:
                    state.setdefault(int(index), {})[field] = value
            opt.load_state_dict({"state": state, "param_groups": groups[name]})
        self.step = int(saved["step"])
        self.history = saved.get("history", [])
        return True

    def export(self) -> Path:
        """Write ``generator.safetensors`` + ``config.json`` (unit HiFi-GAN format) into ``out_dir``."""
        from safetensors.torch import save

        state = {k: _host(v) for k, v in self.generator.state_dict().items()}
        config = {**self.model_config, "slmtok": {**self.meta, "step": self.step}}
        if self.generator.dur_predictor is None:
            config.pop("dur_predictor_params", None)
        with atomic_path(self.out / "generator.safetensors") as tmp:
            tmp.write_bytes(save(state))
        with atomic_path(self.out / "config.json") as tmp:
            tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return self.out

    # ------------------------------------------------------------------------------ the loop
    def run(self, *, stop_after: int | None = None) -> dict[str, Any]:
        """Train until ``config.steps`` (or ``stop_after`` more steps, or ``max_minutes``), checkpointing,
        validating and logging on the way; always ends with a checkpoint and an export.

        Every process of a torchrun group calls it; they stop at the same step (the time limit is agreed
        every ``TIME_CHECK`` steps). Rank 0 logs, validates, writes; its summary holds the losses of the
        last logged step, averaged over the processes."""
        c, place = self.config, self.place
        start_step, start = self.step, time.monotonic()
        window = (start, start_step)  # time and step of the last progress line
        target = c.steps if stop_after is None else min(c.steps, self.step + stop_after)
        last: dict[str, float] = {}
        stopped = "steps"
        scalars = ScalarLog(self.out, self.step, tensorboard=c.tensorboard) if place.is_main else None
        if scalars is not None and scalars.missing:
            self.log(
                "tensorboard is not installed: scalars go to metrics.jsonl only (pip install tensorboard)"
            )
        try:
            while self.step < target:
                lr = self._lr()
                stats = self._step()
                now = time.monotonic()
                over_time = self.step < target and self._over_time(start)
                by_steps = bool(c.log_every) and self.step % c.log_every == 0
                by_time = c.log_every_seconds is not None and now - window[0] >= c.log_every_seconds
                edge = self.step in (start_step + 1, target) or over_time
                if place.is_main and (by_steps or by_time or edge):
                    last = {"step": self.step, "lr": lr, **dict(zip(STATS, stats.tolist(), strict=True))}
                    rate = (self.step - window[1]) / max(now - window[0], 1e-9)
                    window = (now, self.step)
                    self.log(
                        f"step {self.step}/{c.steps} | mel {last['mel']:.3f} | g {last['g']:.2f} | "
                        f"d {last['d']:.2f} | dur {last['dur']:.3f} | {rate:.2f} steps/s"
                    )
                    self.history.append({k: round(v, 5) for k, v in last.items()})
                    row = {k: last[k] for k in ("lr", *STATS)}
                    scalars.write(
                        self.step, "train", {**row, "steps_per_second": rate, "seconds": now - start}
                    )
                if self.step % c.validate_every == 0:
                    self._validate(scalars)
                if self.step % c.checkpoint_every == 0:
                    self._checkpoint(scalars)
                if over_time:
                    minutes = (time.monotonic() - start) / 60
                    stopped = "time limit"
                    self.log(f"stopped after {minutes:.1f} min (time limit) at step {self.step} of {c.steps}")
                    break
            validation = self._validate(scalars) if self.validation else math.nan
            self._checkpoint(scalars)
        finally:
            if scalars is not None:
                scalars.close()
        return {
            "step": self.step,
            "validation_mel_l1": validation,
            "seconds": time.monotonic() - start,
            "stopped": stopped,  # "steps" (reached its step count) or "time limit" (max_minutes)
            **last,
        }

    def _over_time(self, start: float) -> bool:
        """Past ``max_minutes``? Agreed by every process (every ``TIME_CHECK`` steps under torchrun)."""
        limit = self.config.max_minutes
        if limit is None or (self.place.world > 1 and self.step % TIME_CHECK):
            return False
        over = time.monotonic() - start > 60 * limit
        if self.place.world > 1:
            flag = all_sum(torch.tensor(float(over), device=self.place.device), self.place)
            over = bool(flag > 0)
        return over

    def _validate(self, scalars: ScalarLog | None) -> float:
        """Validation on rank 0 (``nan`` on the others), then every process goes on together."""
        value = math.nan
        if self.place.is_main:
            value = self.validate()
            self.log(f"step {self.step}: validation mel L1 {value:.4f}")
            if scalars is not None:
                scalars.write(self.step, "validation", {"mel_l1": value})
        barrier(self.place)
        return value

    def _checkpoint(self, scalars: ScalarLog | None) -> None:
        """Checkpoint and export on rank 0, then every process goes on together."""
        if self.place.is_main:
            self.save_checkpoint()
            self.export()
            if scalars is not None:
                scalars.flush()
        barrier(self.place)


#: steps between the processes' agreement on the time limit (a collective; every step would cost a sync)
TIME_CHECK = 10


def _host(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu().contiguous()


def _describe(placement: dict[str, Any]) -> str:
    world, device, precision = placement["world_size"], placement["device_type"], placement["precision"]
    return f"{world} process(es) on {device} in {precision}"
