"""Semantic units from a published FAISS index (``mhubert-147``: mHuBERT-147's ``mhubert147_faiss.index``).

The index is read with FAISS itself (``faiss.read_index``; FAISS's own binary format, no pickle: nothing
in the file is executed), inverted lists memory-mapped, read-only. A frame's unit is:

- for a flat index of K centroids (``IndexFlat``): ``index.search(x, 1)``'s label;
- for an IVF index (optionally behind an ``IndexPreTransform``, e.g. OPQ / PCA): the inverted list the
  frame falls in, ``quantizer.assign(transform(x), 1)`` over its ``nlist`` coarse centroids: the cluster
  id FAISS-based HuBERT label assignment uses (mHuBERT-147). That the published 4.7 GB index is of this
  kind is the authors' description (IVF clustering), not checked on the file here.

``FaissSemanticTokenizer`` is ``SemanticTokenizer`` with those units: features of each item alone (batch
≡ single exactly), units by FAISS, decoded by a unit vocoder given with ``vocoder=`` (none is published).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slmtok.errors import SlmtokError
from slmtok.kmeans import KMeans
from slmtok.tokenizers.semantic.bundle import SemanticTokenizer


class FaissUnits:
    """A FAISS index as a unit assigner: ``[N, D]`` float frames -> ``[N]`` unit ids in ``0..k-1``."""

    def __init__(self, path: str | os.PathLike) -> None:
        import faiss

        self.path = Path(path)
        if not self.path.is_file():
            raise SlmtokError(f"no such FAISS index file: {self.path}")
        try:
            index = faiss.read_index(str(self.path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            raise SlmtokError(f"{self.path} is not a FAISS index faiss can read") from None
        self._owner = index  # the downcast view does not own the C++ index: keep the owner alive
        self.index = faiss.downcast_index(index)
        self.dim = int(self.index.d)
        self.transforms = []
        if isinstance(self.index, faiss.IndexPreTransform):
            chain = self.index.chain
            self.transforms = [chain.at(i) for i in range(chain.size())]
        try:
            self.ivf = faiss.extract_index_ivf(index)
        except RuntimeError:
            self.ivf = None
        if self.ivf is not None:
            self.k = int(self.ivf.nlist)
            centroids = self.ivf.quantizer.reconstruct_n(0, self.k)
        elif isinstance(self.index, faiss.IndexFlat):
            self.k = int(self.index.ntotal)
            centroids = self.index.reconstruct_n(0, self.k)
        else:
            raise SlmtokError(
                f"{self.path}: a {type(self.index).__name__} is neither a flat index of centroids nor an IVF index"
            )
        if self.k < 1:
            raise SlmtokError(f"{self.path}: the FAISS index holds no centroids")
        #: the unit centroids (in the index's transformed space for a pre-transformed IVF)
        self.centroids = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """``[N, D]`` -> ``[N]`` long unit ids."""
        if frames.ndim != 2 or frames.shape[1] != self.dim:
            raise SlmtokError(f"{self.path} takes {self.dim}-d frames, got {tuple(frames.shape)}")
        x = np.ascontiguousarray(frames.detach().cpu().numpy(), dtype=np.float32)
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long)
        if self.ivf is None:
            labels = self.index.search(x, 1)[1]
        else:
            for transform in self.transforms:
                x = transform.apply_py(x)
            labels = self.ivf.quantizer.assign(x, 1)
        return torch.from_numpy(np.asarray(labels).reshape(-1).astype(np.int64))


class FaissSemanticTokenizer(SemanticTokenizer):
    """A published semantic bundle whose units come from a FAISS index (``kmeans=`` a local index file
    replaces the card's). Other options as ``SemanticTokenizer``."""

    def _init_published(self, spec_name: str, checkpoint, kmeans, trust: bool) -> None:
        from slmtok.registry import FEATURES
        from slmtok.tokenizers.semantic.published import BUNDLES

        if spec_name not in BUNDLES:
            raise SlmtokError(f"unknown published semantic bundle {spec_name!r}")
        spec = BUNDLES[spec_name]
        self.features = FEATURES.create(
            spec.features, layer=spec.layer, checkpoint=checkpoint, device=self.device, offline=self.offline
        )
        if kmeans is None:
            from slmtok import hub

            kmeans = hub.fetch(spec.kmeans_card, "kmeans", offline=self.offline)
        self.units = FaissUnits(kmeans)
        if self.units.k != spec.k:
            raise SlmtokError(f"FAISS index {kmeans} has {self.units.k} units, {spec_name} needs K={spec.k}")
        if not self.units.transforms and self.units.dim != self.features.dim:
            raise SlmtokError(
                f"FAISS index {kmeans} takes {self.units.dim}-d frames; {spec.features} layer "
                f"{spec.layer} gives {self.features.dim}-d"
            )
        self.kmeans = KMeans(self.units.centroids, {"backend": "faiss-index", "source": str(kmeans)})
        self.features_config = {**self.features.config(), "units": "faiss-index"}
        self.default_dedup = False
        self.bundle_dir = None
        self._bundle_vocoder = None
        self._vocoder_card = spec.vocoder_card
        self.license, self.source, self.description = spec.license, spec.source, spec.description

    def frame_units(self, wav: torch.Tensor) -> torch.Tensor:
        """``[T]`` audio at ``card.sample_rate`` -> FAISS units ``[T']`` (no deduplication)."""
        return self.units(self.features(wav.to(self.device)))

    def _batch_units(self, wav: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        return [self.frame_units(wav[i, 0, : int(lengths[i])]) for i in range(wav.shape[0])]


def standin_options(folder: str | os.PathLike, k: int = 1000) -> dict[str, Any]:
    """Offline stand-ins for ``mhubert-147`` in ``folder``: a tiny random ``transformers.HubertModel``
    (``save_pretrained``), a flat FAISS index of ``k`` centroids drawn around its layer-9 features of real
    speech (``faiss.write_index``) and a small random unit vocoder with ``k`` units."""
    import faiss
    from transformers import HubertConfig, HubertModel

    import slmtok
    from slmtok.corpora import asterisk_prompts
    from slmtok.tokenizers.features.transformers_features import TransformersFeatures
    from slmtok.tokenizers.semantic.standins import write_unit_vocoder

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=32,
        num_hidden_layers=9,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    HubertModel(config).eval().save_pretrained(folder / "hubert")
    wav = next(
        w for w in (slmtok.read_audio(p)[0][0] for p in asterisk_prompts("en")[:20]) if w.numel() > 32000
    )
    feats = TransformersFeatures("mhubert-147-iter2", checkpoint=folder / "hubert", layer=9)(
        wav[:48000]
    ).numpy()
    rng = np.random.default_rng(0)
    picks = feats[rng.integers(0, feats.shape[0], k)]
    centroids = picks + rng.standard_normal(picks.shape).astype(np.float32) * 0.05 * feats.std(
        0, keepdims=True
    )
    index = faiss.IndexFlatL2(feats.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    faiss.write_index(index, str(folder / "units.index"))
    vocoder = write_unit_vocoder(folder / "vocoder", k, channels=64)
    return {
        "checkpoint": str(folder / "hubert"),
        "kmeans": str(folder / "units.index"),
        "vocoder": str(vocoder),
    }
