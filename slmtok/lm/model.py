"""A decoder-only transformer over LM steps of ``H`` token streams (see ``slmtok.lm.patterns``).

Pre-norm blocks (RMSNorm or LayerNorm), rotary position embeddings on queries and keys, PyTorch's
``scaled_dot_product_attention``, a GELU MLP, and a key/value cache for generation. The ``H`` tokens of
a step are embedded from one table (each stream at its own offset) and summed; one output layer gives
the logits of every stream side by side (``H`` heads, tied to the embedding by default). Sizes run from
a few hundred thousand to a few hundred million parameters through ``ModelConfig`` presets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slmtok.errors import SlmtokError

#: name -> (n_layer, n_head, n_embd, block_size); parameters without embeddings ~ 12 * n_layer * n_embd**2
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 256},  # 0.1M + embeddings
    "small": {"n_layer": 6, "n_head": 4, "n_embd": 256, "block_size": 512},  # 4.7M + embeddings
    "medium": {"n_layer": 8, "n_head": 5, "n_embd": 320, "block_size": 1024},  # 9.8M + embeddings
    "base": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024},  # 85M + embeddings
    "large": {"n_layer": 24, "n_head": 16, "n_embd": 1024, "block_size": 2048},  # 302M + embeddings
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines the network; saved as JSON beside every checkpoint's weights.

    ``stream_vocab_sizes`` (``[H]``, special tokens included) comes from the data's pattern;
    ``block_size`` is the longest context in steps.
    """

    stream_vocab_sizes: tuple[int, ...] = (259,)
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    block_size: int = 256
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    bias: bool = False
    norm: str = "rmsnorm"
    rope_base: float = 10000.0
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise SlmtokError(f"n_embd={self.n_embd} must split into n_head={self.n_head} heads of even size")
        if self.norm not in ("rmsnorm", "layernorm"):
            raise SlmtokError(f"norm must be rmsnorm or layernorm, got {self.norm!r}")
        if min(self.n_layer, self.block_size, *self.stream_vocab_sizes) < 1:
            raise SlmtokError("n_layer, block_size and vocabulary sizes must be positive")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A preset (``tiny``, ``small``, ``medium``, ``base``, ``large``) with fields overridden."""
        if name not in PRESETS:
            raise SlmtokError(f"unknown model preset {name!r}; one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stream_vocab_sizes"] = list(self.stream_vocab_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SlmtokError(
                f"unknown model config field {unknown[0]!r}; fields: {', '.join(sorted(names))}"
            )
        kept = dict(data)
        if "stream_vocab_sizes" in kept:
            kept["stream_vocab_sizes"] = tuple(int(v) for v in kept["stream_vocab_sizes"])
        return cls(**kept)

    def with_vocab(self, stream_vocab_sizes: tuple[int, ...]) -> ModelConfig:
        return replace(self, stream_vocab_sizes=tuple(stream_vocab_sizes))

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_streams(self) -> int:
        return len(self.stream_vocab_sizes)

    @property
    def vocab_total(self) -> int:
        return sum(self.stream_vocab_sizes)


@dataclass
class KVCache:
    """Keys and values of every layer for generation: ``[B, n_head, max_len, head_dim]`` each, valid up
    to ``length`` steps (positions ``0 .. length-1`` for the rotary embedding)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0

    @classmethod
    def empty(cls, config: ModelConfig, batch_size: int, max_len: int, device, dtype) -> KVCache:
        shape = (batch_size, config.n_head, max_len, config.head_dim)
        return cls(
            [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)],
            [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)],
        )

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]


def rotary_tables(head_dim: int, positions: torch.Tensor, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin ``[S, head_dim / 2]`` for integer ``positions`` ``[S]``."""
    inv = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * inv[None, :]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of ``x`` ``[B, nh, S, hd]`` by the angles ``[S, hd/2]``."""
    a, b = x.float().chunk(2, dim=-1)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x, cos, sin, cache: KVCache | None, layer: int) -> torch.Tensor:
        """``x`` ``[B, S, D]`` -> ``[B, S, D]``; with a cache, ``x`` continues its ``length`` steps."""
        b, s, d = x.shape
        nh, hd = self.config.n_head, self.config.head_dim
        q, k, v = (t.view(b, s, nh, hd).transpose(1, 2) for t in self.qkv(x).split(d, dim=2))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.length
            cache.keys[layer][:, :, past : past + s] = k
            cache.values[layer][:, :, past : past + s] = v
            k = cache.keys[layer][:, :, : past + s]
            v = cache.values[layer][:, :, : past + s]
        dropout = self.config.dropout if self.training else 0.0
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        elif s == 1:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:  # several new steps after a cached prefix: step i sees the prefix and new steps <= i
            mask = torch.ones(s, past + s, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.proj(y.transpose(1, 2).reshape(b, s, d))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        norm = nn.RMSNorm if config.norm == "rmsnorm" else nn.LayerNorm
        hidden = int(config.mlp_ratio * config.n_embd)
        self.norm1 = norm(config.n_embd)
        self.attn = Attention(config)
        self.norm2 = norm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, hidden, bias=config.bias),
            nn.GELU(),
            nn.Linear(hidden, config.n_embd, bias=config.bias),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, cos, sin, cache, layer):
        x = x + self.dropout(self.attn(self.norm1(x), cos, sin, cache, layer))
        return x + self.dropout(self.mlp(self.norm2(x)))


class SpeechLM(nn.Module):
    """Decoder-only transformer: steps ``[B, S, H]`` -> logits ``[B, S, sum(stream_vocab_sizes)]``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        offsets = torch.tensor([0, *config.stream_vocab_sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.embed = nn.Embedding(config.vocab_total, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.RMSNorm(config.n_embd) if config.norm == "rmsnorm" else nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_total, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by depth
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, embeddings: bool = True) -> int:
        """Parameter count (shared tensors once); without the embedding table if ``embeddings=False``."""
        total = sum(p.numel() for p in self.parameters())
        return total if embeddings else total - self.embed.weight.numel()

    def forward(self, steps: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """``steps`` int ``[B, S, H]`` (per-stream ids) -> logits float ``[B, S, sum(stream_vocab_sizes)]``.

        With a ``cache``, ``steps`` continue the cached ones (rotary positions from ``cache.length``)
        and the cache grows by ``S``.
        """
        b, s, h = steps.shape
        if h != self.config.n_streams:
            raise SlmtokError(f"model has {self.config.n_streams} streams, input has {h}")
        start = cache.length if cache is not None else 0
        if start + s > (cache.capacity if cache is not None else self.config.block_size):
            raise SlmtokError(f"{start + s} steps exceed the context of {self.config.block_size}")
        x = self.drop(self.embed(steps + self.offsets).sum(dim=2))  # [B, S, D]
        positions = torch.arange(start, start + s, device=steps.device)
        cos, sin = rotary_tables(self.config.head_dim, positions, self.config.rope_base)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, i)
        if cache is not None:
            cache.length += s
        return self.head(self.norm(x))

    def stream_logits(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """Split ``[..., sum V]`` logits into the ``H`` streams' ``[..., V_h]``."""
        return list(logits.split(list(self.config.stream_vocab_sizes), dim=-1))


def sequence_loss(model: SpeechLM, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy (nats) over every target that is not ``-100``, and how many there are.

    ``logits`` ``[B, S, sum V]``, ``targets`` int ``[B, S, H]`` (``-100`` = not scored).
    """
    return sequence_nats(model, logits, targets), int((targets != -100).sum())


def sequence_nats(model: SpeechLM, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (nats, a 0-d tensor) of ``sequence_loss``, without reading anything back to
    the host (the training loop counts the targets on the host)."""
    total = logits.new_zeros((), dtype=torch.float32)
    for h, part in enumerate(model.stream_logits(logits)):
        total = total + F.cross_entropy(
            part.reshape(-1, part.shape[-1]).float(),
            targets[..., h].reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
    return total


def flops_per_step(config: ModelConfig, n_params: int, context: int) -> float:
    """Training FLOPs per LM step (forward + backward), PaLM appendix B: ``6 N + 12 L D S``."""
    return 6.0 * n_params + 12.0 * config.n_layer * config.n_embd * context
