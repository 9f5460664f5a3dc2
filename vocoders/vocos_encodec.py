"""Vocos (``pip install vocos``) as the decoder of EnCodec 24 kHz codes: ``charactr/vocos-encodec-24khz``.

Used through ``slmtok.load("encodec-24khz", vocoder="vocos")`` (CLI ``-O vocoder=vocos``; a local folder
instead of ``"vocos"`` loads that checkpoint). A checkpoint is the folder the vocos authors publish:
``config.yaml`` (``feature_extractor`` / ``backbone`` / ``head``, each a ``class_path`` + ``init_args``)
and ``pytorch_model.bin`` (a state dict: ``feature_extractor.codebook_weights``, ``backbone.*``,
``head.*``), read by slmtok's one checkpoint policy (``slmtok.hub.safe_load``).

**Why the feature extractor is not built.** vocos 0.1.0's ``EncodecFeatures`` constructs
``EncodecModel.encodec_model_24khz(pretrained=True)``, a download, in its constructor. Decoding codes
needs none of it: ``Vocos.codes_to_features`` only reads ``codebook_weights`` (``[num_q * bins, D]``,
the first ``num_q`` EnCodec codebooks stacked, ``num_q`` codebooks of the config's largest bandwidth),
so the features here are that same sum, ``sum_k codebook_weights[k * bins + codes[k]]`` -> ``[B, D, T]``.
The backbone (``vocos.models.VocosBackbone``) and head (``vocos.heads.ISTFTHead``) are the vocos package's
own, built from the config (``class_path`` must be a vocos class, as for the mel Vocos). The backbone's
adaptive layer norm takes ``bandwidth_id``: the index in the config's ``bandwidths`` of the bitrate the
``K`` codebooks give (EnCodec's ``get_num_quantizers_for_bandwidth``). The published model knows 1.5 / 3
/ 6 / 12 kbps, so ``K`` = 2 / 4 / 8 / 16; any other ``K`` is refused with one line.

**Tied to its EnCodec.** Codes mean something only for the codebooks Vocos was trained on:
``bind(model)`` checks that ``codebook_weights`` equal the loaded EnCodec's own codebooks (and its
rate, hop and codebook size), so Vocos never decodes codes of other EnCodec weights.

Each item is decoded alone at its own length (the backbone's convolutions and the overlap-add would
otherwise see the padding), so a batch gives each item its solo audio. The output is ``T * hop``
samples for ``T`` frames, as EnCodec's own decoder gives.
"""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Any

import torch

from slmtok.errors import CodesError, SlmtokError

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "pytorch_model.bin"
FEATURES_CLASS = "vocos.feature_extractors.EncodecFeatures"
CODEBOOKS_KEY = "feature_extractor.codebook_weights"
#: EnCodec's own weights, which ``Vocos.from_pretrained`` adds from the model it downloads; not used here
ENCODEC_PREFIX = "feature_extractor.encodec."
#: the EnCodec models ``EncodecFeatures`` names, as ``encodec.EncodecModel.encodec_model_24khz`` builds
#: them (sample rate in Hz, codebook size); ``bind`` checks them against the EnCodec actually loaded
ENCODEC_MODELS = {"encodec_24khz": (24000, 1024)}


class VocosEncodec:
    """EnCodec codes ``[B, K, T]`` -> audio ``[B, 1, T * hop]`` with Vocos. See the module docstring.

    Attributes:
        sample_rate: output rate in Hz (24000).
        hop_length: samples per frame (320).
        bins: codes per codebook (1024).
        bandwidths: the bitrates (kbps) the backbone is conditioned on, in ``bandwidth_id`` order.
        codebook_ids: ``{K: bandwidth_id}`` for the codebook counts it decodes.
    """

    def __init__(
        self,
        model,
        codebook_weights: torch.Tensor,
        *,
        bandwidths: tuple[float, ...],
        encodec_model: str = "encodec_24khz",
        device: str | torch.device = "cpu",
        source: str = "",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)  # vocos.Vocos: backbone + head (no feature extractor)
        self.codebook_weights = codebook_weights.detach().to(self.device)  # [num_q * bins, D]
        self.bandwidths = tuple(float(b) for b in bandwidths)
        self.encodec_model = encodec_model
        self.source = source
        self.sample_rate, self.bins = ENCODEC_MODELS[encodec_model]
        self.hop_length = int(model.head.istft.hop_length)
        self.frame_rate = math.ceil(self.sample_rate / self.hop_length)  # as EncodecModel.frame_rate
        per_codebook = math.log2(self.bins) * self.frame_rate / 1000  # kbps, as the quantizer computes it
        self.codebook_counts = tuple(int(max(1, math.floor(bw / per_codebook))) for bw in self.bandwidths)
        self.codebook_ids = {k: i for i, k in reversed(list(enumerate(self.codebook_counts)))}
        self.num_codebooks = codebook_weights.shape[0] // self.bins  # codebooks stacked in the checkpoint

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, checkpoint: str | os.PathLike, *, device: str | torch.device = "cpu") -> VocosEncodec:
        """A published folder: ``config.yaml`` + ``pytorch_model.bin``. ``SlmtokError`` (one line) for a
        config that is not the EnCodec-token Vocos or weights that do not fit it."""
        import yaml
        from vocos import Vocos

        from slmtok.hub.safe_load import load_torch_checkpoint
        from slmtok.vocoders.vocos import _build

        folder = Path(checkpoint)
        config, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not config.is_file() or not weights.is_file():
            raise SlmtokError(
                f"a Vocos EnCodec checkpoint is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}: {folder}"
            )
        try:
            raw = yaml.safe_load(config.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise SlmtokError(f"cannot read {config}: {str(error).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise SlmtokError(f"{config} is not a Vocos config")
        encodec_model, bandwidths = _features_args(raw.get("feature_extractor"), config)
        backbone = _build(raw.get("backbone"), "backbone", config)
        head = _build(raw.get("head"), "head", config)
        if not isinstance(getattr(getattr(head, "istft", None), "hop_length", None), int):
            raise SlmtokError(f"{config}: head must be vocos.heads.ISTFTHead (an ISTFT with a hop length)")
        adanorm = getattr(getattr(backbone, "norm", None), "scale", None)
        if isinstance(adanorm, torch.nn.Embedding) and adanorm.num_embeddings < len(bandwidths):
            raise SlmtokError(
                f"{config}: the backbone has {adanorm.num_embeddings} bandwidth embeddings for "
                f"{len(bandwidths)} bandwidths"
            )
        try:
            state = load_torch_checkpoint(weights)  # slmtok's one checkpoint policy
            if not isinstance(state, dict) or CODEBOOKS_KEY not in state:
                raise ValueError(f"no {CODEBOOKS_KEY} tensor: not the EnCodec-token Vocos")
            codebooks = state[CODEBOOKS_KEY]
            model = Vocos(feature_extractor=torch.nn.Identity(), backbone=backbone, head=head)
            rest = {k: v for k, v in state.items() if k != CODEBOOKS_KEY and not k.startswith(ENCODEC_PREFIX)}
            model.load_state_dict(rest, strict=True)  # the Identity holds nothing: backbone.* and head.*
        except Exception as error:  # noqa: BLE001 (unpickling / shape errors: one line)
            first = (str(error).splitlines() or [type(error).__name__])[0]
            raise SlmtokError(f"cannot load Vocos weights {weights}: {first}") from None
        bins = ENCODEC_MODELS[encodec_model][1]
        width = int(getattr(backbone, "input_channels", -1))
        if codebooks.ndim != 2 or codebooks.shape[0] % bins or codebooks.shape[1] != width:
            raise SlmtokError(
                f"{weights}: {CODEBOOKS_KEY} of shape {tuple(codebooks.shape)} is not codebooks of {bins} "
                f"x {width} (the backbone's input channels)"
            )
        vocoder = cls(
            model,
            codebooks.float(),
            bandwidths=bandwidths,
            encodec_model=encodec_model,
            device=device,
            source=str(folder),
        )
        deepest = max(vocoder.codebook_ids)
        if vocoder.num_codebooks < deepest:
            raise SlmtokError(
                f"{weights}: {vocoder.num_codebooks} codebooks stacked, but {max(vocoder.bandwidths):g} kbps "
                f"needs {deepest}"
            )
        return vocoder

    def bind(self, encodec, label: str) -> None:
        """Check that this Vocos was trained on ``encodec`` (an ``encodec.EncodecModel``): same sample
        rate, hop, codebook size and bandwidth -> codebook counts, and ``codebook_weights`` equal to its
        first codebooks (to float16 rounding). ``SlmtokError`` (one line) otherwise."""
        quantizer = encodec.quantizer
        hop = int(math.prod(encodec.encoder.ratios))
        have = (self.sample_rate, self.hop_length, self.bins)
        want = (int(encodec.sample_rate), hop, int(quantizer.bins))
        if have != want:
            raise SlmtokError(
                f"Vocos {self.source} decodes {have[0]} Hz, hop {have[1]}, {have[2]} codes per codebook, "
                f"but {label} is {want[0]} Hz, hop {want[1]}, {want[2]} codes"
            )
        counts = [
            quantizer.get_num_quantizers_for_bandwidth(encodec.frame_rate, bw) for bw in self.bandwidths
        ]
        if tuple(counts) != self.codebook_counts or max(counts) > quantizer.n_q:
            raise SlmtokError(f"Vocos {self.source}: bandwidths {self.bandwidths} do not fit {label}")
        n = self.num_codebooks
        if n > quantizer.n_q:
            raise SlmtokError(f"Vocos {self.source} has {n} codebooks, {label} {quantizer.n_q}")
        theirs = torch.cat([layer.codebook for layer in quantizer.vq.layers[:n]]).to(self.codebook_weights)
        if not torch.allclose(self.codebook_weights, theirs, rtol=1e-3, atol=1e-4):
            raise SlmtokError(
                f"Vocos {self.source} was trained on other EnCodec codebooks than {label}'s: its codes "
                "would decode to noise; load the EnCodec weights it was trained with"
            )

    # ------------------------------------------------------------------------------ decoding
    def bandwidth_id(self, n_codebooks: int) -> int:
        """The ``bandwidth_id`` of ``n_codebooks`` codebooks; ``CodesError`` for a count it has none for."""
        if n_codebooks not in self.codebook_ids or n_codebooks > self.num_codebooks:
            known = ", ".join(
                f"{k} ({self.bandwidths[i]:g} kbps)" for k, i in sorted(self.codebook_ids.items())
            )
            raise CodesError(
                f"Vocos decodes EnCodec codes of {known} codebooks, not {n_codebooks}; encode with "
                "one of these n_codebooks, or decode with EnCodec's own decoder (no vocoder)"
            )
        return self.codebook_ids[n_codebooks]

    def state_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Every weight it decodes with (for card hashes): ``codebook_weights``, ``backbone.*``, ``head.*``."""
        tensors = {f"{prefix}{CODEBOOKS_KEY}": self.codebook_weights}
        tensors.update({f"{prefix}{k}": v for k, v in self.model.state_dict().items()})
        return tensors

    def features(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` ``[B, K, T]`` -> ``[B, D, T]``: the sum of each codebook's vector, as vocos's
        ``Vocos.codes_to_features`` (codebook ``k``'s rows start at ``k * bins``)."""
        offsets = torch.arange(0, self.bins * codes.shape[1], self.bins, device=codes.device)
        index = codes.transpose(0, 1) + offsets.view(-1, 1, 1)  # [K, B, T]
        features = torch.nn.functional.embedding(index, self.codebook_weights).sum(dim=0)  # [B, T, D]
        return features.transpose(1, 2)

    @torch.inference_mode()
    def __call__(
        self, codes: torch.Tensor, lengths: torch.Tensor | list[int] | None = None
    ) -> tuple[torch.Tensor, list[int]]:
        """``codes`` ``[B, K, T]`` (valid up to ``lengths`` frames, ``[B]``) -> wav ``[B, 1, T * hop]``
        (zeros past each item) and sample lengths (``lengths * hop``). Items run alone."""
        if codes.ndim != 3:
            raise CodesError(f"Vocos takes EnCodec codes [B, K, T], got {tuple(codes.shape)}")
        bandwidth_id = torch.tensor([self.bandwidth_id(codes.shape[1])], device=self.device)
        frames = [codes.shape[-1]] * codes.shape[0] if lengths is None else [int(n) for n in lengths]
        out = torch.zeros(codes.shape[0], 1, codes.shape[-1] * self.hop_length, device=self.device)
        for i, n in enumerate(frames):
            if n <= 0:
                continue
            features = self.features(codes[i : i + 1, :, :n].to(self.device))
            wav = self.model.decode(features, bandwidth_id=bandwidth_id)[0]  # [n * hop]
            out[i, 0, : wav.numel()] = wav
        return out, [n * self.hop_length for n in frames]


def _features_args(init: Any, config: Path) -> tuple[str, tuple[float, ...]]:
    """``encodec_model`` and ``bandwidths`` of an ``EncodecFeatures`` entry (its defaults where absent),
    read without building it (its constructor downloads EnCodec)."""
    from vocos.feature_extractors import EncodecFeatures

    if not isinstance(init, dict) or init.get("class_path") != FEATURES_CLASS:
        found = init.get("class_path") if isinstance(init, dict) else None
        raise SlmtokError(
            f"{config}: feature_extractor {found!r} is not {FEATURES_CLASS}: not the EnCodec-token Vocos "
            "(a mel Vocos loads as vocoder 'vocos')"
        )
    args = init.get("init_args") or {}
    defaults = {
        k: p.default for k, p in inspect.signature(EncodecFeatures.__init__).parameters.items() if k != "self"
    }
    unknown = sorted(set(args) - set(defaults)) if isinstance(args, dict) else ["init_args"]
    if unknown:
        raise SlmtokError(f"{config}: EncodecFeatures has no argument {unknown[0]!r}")
    encodec_model = args.get("encodec_model", defaults["encodec_model"])
    bandwidths = args.get("bandwidths", defaults["bandwidths"])
    if encodec_model not in ENCODEC_MODELS:
        raise SlmtokError(
            f"{config}: Vocos for {encodec_model!r}; slmtok decodes {', '.join(ENCODEC_MODELS)} codes only"
        )
    if (
        not isinstance(bandwidths, list)
        or not bandwidths
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and b > 0 for b in bandwidths)
    ):
        raise SlmtokError(f"{config}: bandwidths must be a list of positive kbps, got {bandwidths!r}")
    return encodec_model, tuple(float(b) for b in bandwidths)


def load_vocos_encodec(
    checkpoint: str | os.PathLike | None = None,
    *,
    card: str | os.PathLike = "vocos-encodec-24khz",
    device: str | torch.device = "cpu",
    offline: bool | None = None,
) -> VocosEncodec:
    """Registry factory of ``vocos-encodec``: ``checkpoint`` folder, else the card's files from the cache."""
    from slmtok.vocoders.vocos import card_folder

    return VocosEncodec.load(checkpoint or card_folder(card, offline=offline), device=device)
