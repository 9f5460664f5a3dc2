"""Model-based perceptual metrics: speaker similarity (resemblyzer), DNSMOS (speechmos), ViSQOL.

Each is a small class built once (it loads a model) and called per file on mono ``[T]`` audio at a
stated ``sample_rate`` in Hz; audio is resampled to the model's rate (16 kHz for all three). A missing
package or model raises ``BackendUnavailable`` when the class is built. Model paths are settings (an
argument or an environment variable); the defaults are the models shipped inside each package.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from slmtok.metrics.backends import BackendUnavailable, model_path, require, version_of
from slmtok.metrics.signal import MetricError, as_mono, resample_to


def _package_file(module: str, distribution: str, *parts: str) -> Path:
    package = require(module, distribution)
    return Path(package.__file__).resolve().parent.joinpath(*parts)


class SpeakerEncoder:
    """Resemblyzer's d-vector speaker encoder (GE2E LSTM, 256-d unit vectors, 16 kHz).

    ``model``: a resemblyzer ``.pt`` state file (default ``$SLMTOK_RESEMBLYZER_MODEL``, else the one in the
    package); it holds tensors only and loads with torch's ``weights_only`` default.
    """

    sample_rate = 16000

    def __init__(self, model: str | os.PathLike | None = None, *, device: str = "cpu") -> None:
        resemblyzer = require("resemblyzer", "resemblyzer")
        path = model_path(
            model,
            "SLMTOK_RESEMBLYZER_MODEL",
            lambda: _package_file("resemblyzer", "resemblyzer", "pretrained.pt"),
        )
        self.model = str(path)
        self.version = f"resemblyzer {version_of('resemblyzer')}"
        self._encoder = resemblyzer.VoiceEncoder(device=device, verbose=False, weights_fpath=path)
        self._preprocess = resemblyzer.preprocess_wav

    def embed(self, wav: torch.Tensor | np.ndarray, sample_rate: int) -> np.ndarray:
        """Unit-norm speaker embedding ``[256]`` of ``[T]`` audio (volume-normalised, long silences cut)."""
        audio = resample_to(as_mono(wav), sample_rate, self.sample_rate).astype(np.float32)
        audio = self._preprocess(audio)
        if audio.size < self.sample_rate * 0.2:
            raise MetricError("speaker similarity needs at least 0.2 s of voiced audio")
        return np.asarray(self._encoder.embed_utterance(audio), dtype=np.float64)

    def similarity(
        self,
        reference: torch.Tensor | np.ndarray,
        estimate: torch.Tensor | np.ndarray,
        sample_rate: int,
    ) -> float:
        """Cosine similarity (-1..1) of the two signals' embeddings; same speaker is about 0.75-0.9."""
        return speaker_similarity(self.embed(reference, sample_rate), self.embed(estimate, sample_rate))


def speaker_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embedding vectors ``[D]``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0:
        raise MetricError("cosine similarity of a zero vector")
    return float(np.dot(a, b) / norm)


class DNSMOS:
    """Microsoft's DNSMOS P.835 (signal, background, overall) and P.808 MOS, non-intrusive, 16 kHz.

    ``models``: a folder with ``sig_bak_ovr.onnx`` and ``model_v8.onnx`` (default ``$SLMTOK_DNSMOS_MODELS``,
    else the ones in the ``speechmos`` package). Clips shorter than 9.01 s are looped, as DNSMOS does.
    """

    sample_rate = 16000

    def __init__(self, models: str | os.PathLike | None = None) -> None:
        require("onnxruntime", "onnxruntime")
        require("librosa", "librosa")
        dnsmos = require("speechmos.dnsmos", "speechmos")
        folder = model_path(
            models, "SLMTOK_DNSMOS_MODELS", lambda: _package_file("speechmos", "speechmos", "dnsmos_models")
        )
        primary, p808 = folder / "sig_bak_ovr.onnx", folder / "model_v8.onnx"
        for path in (primary, p808):
            if not path.exists():
                raise BackendUnavailable(f"DNSMOS model not found: {path}")
        self.model = str(folder)
        self.version = f"speechmos {version_of('speechmos')}"
        self._model = dnsmos.DNSMOS(str(primary), str(p808))

    def score(self, wav: torch.Tensor | np.ndarray, sample_rate: int) -> dict[str, float]:
        """``{"ovrl", "sig", "bak", "p808"}`` MOS estimates (1..5) of ``[T]`` audio."""
        audio = resample_to(as_mono(wav), sample_rate, self.sample_rate)
        out = self._model(np.clip(audio, -1.0, 1.0).astype(np.float32), self.sample_rate, False)
        return {
            "ovrl": float(out["ovrl_mos"]),
            "sig": float(out["sig_mos"]),
            "bak": float(out["bak_mos"]),
            "p808": float(out["p808_mos"]),
        }


class ViSQOL:
    """ViSQOL v3 in speech mode (16 kHz, full-reference MOS-LQO 1..5) from ``visqol-python``.

    ``lattice=True`` uses the deep-lattice mapping of the C++ release (needs ``visqol-python[lattice]``);
    ``model``: a custom lattice ``.tflite`` file (default ``$SLMTOK_VISQOL_MODEL``, else the bundled one).
    """

    sample_rate = 16000

    def __init__(self, model: str | os.PathLike | None = None, *, lattice: bool = True) -> None:
        visqol = require("visqol", "visqol-python")
        if lattice:
            require("ai_edge_litert", "visqol-python[lattice]")
        custom = model or os.environ.get("SLMTOK_VISQOL_MODEL")
        path = model_path(custom, "SLMTOK_VISQOL_MODEL") if custom else None
        self.model = (
            str(path) if path else "visqol-python bundled " + ("lattice" if lattice else "polynomial")
        )
        self.version = f"visqol-python {version_of('visqol-python')}"
        self._api = visqol.VisqolApi()
        self._api.create(
            mode="speech", use_lattice_model=lattice, lattice_model_path=str(path) if path else None
        )

    def score(
        self,
        reference: torch.Tensor | np.ndarray,
        estimate: torch.Tensor | np.ndarray,
        sample_rate: int,
    ) -> float:
        """MOS-LQO of ``estimate`` against ``reference`` (ViSQOL aligns them itself)."""
        ref = resample_to(as_mono(reference), sample_rate, self.sample_rate)
        est = resample_to(as_mono(estimate), sample_rate, self.sample_rate)
        return float(self._api.measure_from_arrays(ref, est, self.sample_rate).moslqo)
