"""Synthetic probe sets for measuring what speech tokens carry (issue #11): phone-aligned speech, minimal
pairs (lexical, syntactic, acoustic) and invariance groups. Results are labelled "synthetic"."""

from slmtok.probes.schema import (
    INVARIANCE_VARIANTS,
    PAIR_SETS,
    SAMPLE_RATE,
    SCHEMA,
    SETS,
    SILENCE,
    VERSION,
    ProbeError,
    ProbeItem,
    ProbeSet,
    fingerprint,
    frame_labels,
    items_jsonl_bytes,
    load_probes,
    make_header,
    write_index,
)

__all__ = [
    "INVARIANCE_VARIANTS",
    "PAIR_SETS",
    "SAMPLE_RATE",
    "SCHEMA",
    "SETS",
    "SILENCE",
    "VERSION",
    "ProbeError",
    "ProbeItem",
    "ProbeSet",
    "build_probes",
    "fingerprint",
    "frame_labels",
    "items_jsonl_bytes",
    "load_probes",
    "make_header",
    "write_index",
]


def __getattr__(name: str):
    """``build_probes`` is imported on first use (it pulls in torch and espeak-ng bindings)."""
    if name == "build_probes":
        from slmtok.probes.build import build_probes

        return build_probes
    raise AttributeError(f"module 'slmtok.probes' has no attribute {name!r}")
