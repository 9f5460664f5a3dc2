"""The unit HiFi-GAN training loop: generator + MPD + MSD, mel + feature-matching + adversarial losses.

Checkpoints are safetensors (models, optimizers) plus ``state.json``; ``latest.json`` names the newest
complete one, so a run killed at any moment resumes from its last checkpoint and then takes exactly the
steps the uninterrupted run would have taken (batches and dropout are seeded by step, the learning rate
is a function of the step, and the optimizer moments are restored). Validation vocodes held-out files
and writes them as ``samples/step_XXXXXXXX/*.wav``. The finished (or interrupted) generator is exported
as ``generator.safetensors`` + ``config.json`` in the unit HiFi-GAN format, loadable by ``hifigan-unit``.
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
from slmtok.vocoders.mel_hifigan import MelConfig, MelSpectrogram
from slmtok.vocoders.training import losses
from slmtok.vocoders.training.data import UnitCorpus, draw_batch
from slmtok.vocoders.training.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
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


class VocoderTrainer:
    """Owns the models, optimizers and checkpoints of one training run in ``out_dir``."""

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
    ) -> None:
        self.out = Path(out_dir)
        self.corpus = corpus
        self.config = config
        self.model_config = model_config
        self.meta = dict(meta or {})
        self.log = log or (lambda line: None)
        self.validation = validation
        self.training = [i for i in range(len(corpus)) if i not in set(validation)] or list(
            range(len(corpus))
        )
        self.segment_frames = max(4, round(config.segment_seconds * corpus.sample_rate / corpus.hop))
        torch.manual_seed(config.seed)
        self.generator = CodeGenerator(UnitVocoderConfig.from_dict(model_config))
        if not config.duration_predictor:
            self.generator.dur_predictor = None
        self.mpd = MultiPeriodDiscriminator(config.disc_width)
        self.msd = MultiScaleDiscriminator(config.disc_width)
        betas = (config.adam_b1, config.adam_b2)
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), config.learning_rate, betas=betas)
        self.opt_d = torch.optim.AdamW(
            [*self.mpd.parameters(), *self.msd.parameters()], config.learning_rate, betas=betas
        )
        mel = MelConfig(
            corpus.sample_rate, config.n_fft, config.num_mels, config.hop_size, config.win_size, 0.0, None
        )
        self.mel = MelSpectrogram(mel)
        self.step = 0
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        """One discriminator and one generator update on the batch of ``self.step``."""
        c = self.config
        torch.manual_seed(c.seed + self.step)  # dropout of the duration predictor
        lr = c.learning_rate * c.lr_decay ** (self.step // c.decay_every)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        units, audio = draw_batch(
            self.corpus, self.training, self.segment_frames, c.batch_size, c.seed, self.step
        )
        fake = self.generator(units)
        real_mel = self.mel(audio[:, 0])

        adversarial = self.step >= c.adversarial_start
        loss_d = torch.zeros(())
        if adversarial:
            self.opt_d.zero_grad(set_to_none=True)
            for disc in (self.mpd, self.msd):
                real_logits, _ = disc(audio)
                fake_logits, _ = disc(fake.detach())
                loss_d = loss_d + losses.discriminator_loss(real_logits, fake_logits)
            loss_d.backward()
            self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        loss_mel = losses.mel_loss(real_mel, self.mel(fake[:, 0]))
        loss_adv, loss_fm = torch.zeros(()), torch.zeros(())
        if adversarial:
            for disc in (self.mpd, self.msd):
                _, real_features = disc(audio)
                fake_logits, fake_features = disc(fake)
                loss_adv = loss_adv + losses.generator_loss(fake_logits)
                loss_fm = loss_fm + losses.feature_matching_loss(real_features, fake_features)
        loss_dur = self._duration_loss(units)
        loss_g = loss_adv + loss_fm + 45.0 * loss_mel + loss_dur
        loss_g.backward()
        self.opt_g.step()
        self.step += 1
        return {
            "step": self.step,
            "lr": lr,
            "d": float(loss_d.detach()),
            "g": float(loss_g.detach()),
            "mel": float(loss_mel.detach()),
            "fm": float(loss_fm.detach()),
            "adv": float(loss_adv.detach()),
            "dur": float(loss_dur.detach()),
        }

    def _duration_loss(self, units: torch.Tensor) -> torch.Tensor:
        """MSE of log(1 + run length), first and last (cut) runs of each segment left out, as upstream."""
        predictor = self.generator.dur_predictor
        if predictor is None:
            return torch.zeros(())
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
        predicted = predictor(self.generator.dict(padded), mask)[mask]
        target = torch.log(torch.cat(counts).float() + 1)
        return torch.nn.functional.mse_loss(predicted, target)

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
        for i in self.validation:
            units, audio = self.corpus.units[i][None], self.corpus.audio[i][None]
            fake = self.generator(units)[0, 0]
            n = min(fake.numel(), audio.numel())
            distances.append(float(losses.mel_loss(self.mel(audio[:, :n]), self.mel(fake[None, :n]))))
            if write_samples:
                write_audio(folder / f"{self.corpus.names[i]}.wav", fake[None], self.corpus.sample_rate)
        self.generator.train()
        return sum(distances) / max(1, len(distances))

    # ------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_XXXXXXXX/`` and point ``latest.json`` at it (older ones are removed)."""
        from safetensors.torch import save_file

        root = self.out / "checkpoints"
        folder = root / f"step_{self.step:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        models = {f"generator.{k}": v for k, v in self.generator.state_dict().items()}
        models |= {f"mpd.{k}": v for k, v in self.mpd.state_dict().items()}
        models |= {f"msd.{k}": v for k, v in self.msd.state_dict().items()}
        save_file({k: v.contiguous() for k, v in models.items()}, str(folder / "models.safetensors"))
        tensors, groups = {}, {}
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            state = opt.state_dict()
            for index, values in state["state"].items():
                for key, value in values.items():
                    tensors[f"{name}.{index}.{key}"] = torch.as_tensor(value).contiguous()
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
        }
        (folder / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
        with atomic_path(self.out / "latest.json") as tmp:
            tmp.write_text(json.dumps({"checkpoint": folder.name, "step": self.step}), encoding="utf-8")
        for old in root.iterdir():
            if old.is_dir() and old != folder:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    def load_checkpoint(self) -> bool:
        """Resume from ``latest.json`` if there is one; ``False`` when starting fresh."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        latest = self.out / "latest.json"
        if not latest.is_file():
            return False
        folder = self.out / "checkpoints" / json.loads(latest.read_text())["checkpoint"]
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
        saved = json.loads((folder / "state.json").read_text())
        self.step = int(saved["step"])
        self.history = saved.get("history", [])
        return True

    def export(self) -> Path:
        """Write ``generator.safetensors`` + ``config.json`` (unit HiFi-GAN format) into ``out_dir``."""
        from safetensors.torch import save

        state = {k: v.contiguous() for k, v in self.generator.state_dict().items()}
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
        validating and logging on the way; always ends with a checkpoint and an export."""
        c = self.config
        start_step, start = self.step, time.monotonic()
        logged = start
        target = c.steps if stop_after is None else min(c.steps, self.step + stop_after)
        last = {}
        stopped = "steps"
        while self.step < target:
            last = self.train_step()
            now = time.monotonic()
            by_steps = bool(c.log_every) and self.step % c.log_every == 0
            by_time = c.log_every_seconds is not None and now - logged >= c.log_every_seconds
            if by_steps or by_time or self.step == start_step + 1 or self.step == target:
                logged = now
                rate = (self.step - start_step) / max(now - start, 1e-9)
                self.log(
                    f"step {self.step}/{c.steps} | mel {last['mel']:.3f} | g {last['g']:.2f} | "
                    f"d {last['d']:.2f} | dur {last['dur']:.3f} | {rate:.2f} steps/s"
                )
                self.history.append({k: round(v, 5) for k, v in last.items()})
            if self.step % c.validate_every == 0:
                self.log(f"step {self.step}: validation mel L1 {self.validate():.4f}")
            if self.step % c.checkpoint_every == 0:
                self.save_checkpoint()
                self.export()
            if (
                c.max_minutes is not None
                and time.monotonic() - start > 60 * c.max_minutes
                and self.step < target
            ):
                minutes = (time.monotonic() - start) / 60
                stopped = "time limit"
                self.log(f"stopped after {minutes:.1f} min (time limit) at step {self.step} of {c.steps}")
                break
        validation = self.validate() if self.validation else math.nan
        self.save_checkpoint()
        self.export()
        return {
            "step": self.step,
            "validation_mel_l1": validation,
            "seconds": time.monotonic() - start,
            "stopped": stopped,  # "steps" (reached its step count) or "time limit" (max_minutes)
            **last,
        }
