"""Where a codec's weights come from: a local checkpoint in the upstream's format, or a hub card.

``resolve_source`` turns the ``checkpoint=`` / ``card=`` load options into local files (fetching the
card's files into the cache when needed) and the provenance that goes on the tokenizer's card.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# one error class for a checkpoint that is missing, unreadable or not in the expected upstream format,
# whether slmtok's loading policy (``slmtok.hub.safe_load``) or a codec's format check finds it
from slmtok.hub.errors import CheckpointError

__all__ = ["CheckpointError", "CodecSource", "check_inited", "fold_weight_norm", "resolve_source"]


@dataclass
class CodecSource:
    """Local files of one codec checkpoint (by role) and where they came from."""

    label: str
    paths: dict[str, Path]
    options: dict[str, Any]
    url: str = ""
    license: str = ""
    trust: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def load(self, role: str = "weights") -> Any:
        """The ``torch.save`` object in the ``role`` file, read through slmtok's one checkpoint policy
        (``slmtok.hub.safe_load``: torch's restricted unpickler; numpy values only for a card-verified or
        ``trust``-ed file; code never)."""
        from slmtok.hub.safe_load import load_torch_checkpoint

        return load_torch_checkpoint(self.paths[role], trust=self.trust)

    def load_state_dict(self, role: str = "weights") -> dict[str, torch.Tensor]:
        """The ``role`` file as a flat ``{name: tensor}`` state dict (``CheckpointError`` otherwise)."""
        state = self.load(role)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{self.paths[role]} is not a state dict of tensors")
        return state


def resolve_source(
    name: str,
    *,
    checkpoint: Any = None,
    card: Any = None,
    trust: bool = False,
    roles: tuple[str, ...] = ("weights",),
    split_checkpoint=None,
) -> CodecSource:
    """Local files for tokenizer ``name``: ``checkpoint`` (a path; ``split_checkpoint`` maps other forms,
    such as a ``(config, weights)`` pair or a folder, to ``{role: path}``), else the files of hub card
    ``card`` (default: the card named ``name``), fetched into the cache if needed."""
    if checkpoint is not None:
        if split_checkpoint is not None:
            paths = split_checkpoint(checkpoint)
        else:
            paths = {"weights": Path(os.fspath(checkpoint))}
        for role, path in paths.items():
            if not path.is_file():
                raise CheckpointError(f"{name}: no such {role} file: {path}")
        option = [str(p) for p in paths.values()] if len(paths) > 1 else str(paths["weights"])
        options: dict[str, Any] = {"checkpoint": option}
        if trust:
            options["trust"] = True
        return CodecSource(
            label=str(paths["weights"]),
            paths=paths,
            options=options,
            url=str(paths["weights"].resolve()),
            license="unknown (local checkpoint)",
            trust=trust,
        )
    from slmtok import hub

    model_card = hub.get_card(card if card is not None else name)
    paths = {role: hub.fetch(model_card, role) for role in roles}
    options: dict[str, Any] = {}
    if card is not None:
        options["card"] = os.fspath(card) if isinstance(card, (str, os.PathLike)) else model_card.path
    if trust:
        options["trust"] = True
    return CodecSource(
        label=f"card {model_card.name}",
        paths=paths,
        options=options,
        url=model_card.file("weights").location,
        license=model_card.license,
        trust=trust,
        extra={"card": model_card},
    )


def check_inited(model: torch.nn.Module, label: str) -> None:
    """Refuse EnCodec-style codebooks that were never initialised (``inited == 0``): upstream would fill
    them by k-means on the first training batch, so such a checkpoint is not a trained codec."""
    for name, buffer in model.named_buffers():
        if name.endswith("_codebook.inited") and not bool(buffer.all()):
            raise CheckpointError(f"{label}: codebook {name.rsplit('.', 2)[0]} was never initialised")


def fold_weight_norm(model: torch.nn.Module) -> None:
    """Fold weight norm into plain weights once: the same ``g * v / |v|`` tensor the upstream hook
    recomputes before every forward, so outputs keep their bits and each call saves the recomputation."""
    for module in model.modules():
        if hasattr(module, "weight_g") and hasattr(module, "weight_v"):
            torch.nn.utils.remove_weight_norm(module)
