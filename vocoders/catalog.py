"""Built-in vocoders of ``slmtok.vocoders`` (names -> lazy import paths)."""

from __future__ import annotations


def register_builtins() -> None:
    from slmtok.registry import VOCODERS

    VOCODERS.register(
        "griffin-lim",
        "slmtok.vocoders.griffin_lim:GriffinLimVocoder",
        description="log-mel -> audio, weight-free",
        origin="builtin",
    )
