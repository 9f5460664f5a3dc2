"""The tokenizer table (README and ``slmtok list --markdown``), generated from the registry."""

from __future__ import annotations

from typing import Any


def tokenizer_rows(pattern: str = "*", *, check: bool = True) -> list[dict[str, Any]]:
    """One row per registered tokenizer: its card, or why it cannot be loaded here. A codec with a hub
    model card of its name is listed from that card (``slmtok.hub.listing``), never downloaded.

    ``available``: whether ``slmtok.load(name)`` works here now without downloading anything. For a
    card-backed tokenizer: every file ``slmtok download NAME`` fetches is in the cache and checked, and its
    upstream package is installed (``files_needed``, ``files_cached``, ``missing_files``, ``package``,
    ``package_installed``; ``reason`` when not). An embedded tokenizer (no weights to download) is
    loaded to get its card. ``weights``: ``"embedded"``, ``"cached"`` or ``"missing"``. With
    ``check=False`` (the README table, the same on every machine) card-backed rows are not checked against
    this machine's cache and carry no ``available``/``weights`` verdict beyond the card."""
    import slmtok
    from slmtok.hub.listing import availability, card_row

    rows = []
    for name in slmtok.list_tokenizers(pattern):
        entry = slmtok.tokenizer_entry(name)
        from_card = card_row(name, entry.description) if entry.origin == "builtin" else None
        if from_card is not None:
            here = availability(name) if check else {"available": None}
            weights = "cached" if here.get("files_cached") == here.get("files_needed") else "missing"
            rows.append(
                {
                    "name": name,
                    "origin": entry.origin,
                    **from_card,
                    **here,
                    "weights": weights if check else "",
                }
            )
            continue
        try:
            card = slmtok.load(name).card.to_dict()
            rows.append(
                {"name": name, "available": True, "origin": entry.origin, **card, "weights": "embedded"}
            )
        except Exception as error:  # noqa: BLE001 - listed with the reason, never with invented numbers
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            rows.append(
                {
                    "name": name,
                    "available": False,
                    "origin": entry.origin,
                    "reason": reason,
                    "weights": "",
                    "description": entry.description,
                }
            )
    return rows


def codebook_shape(sizes: list[int]) -> str:
    return f"{len(sizes)} x {sizes[0]}" if len(set(sizes)) == 1 else " + ".join(map(str, sizes))


def rate_text(row: dict[str, Any]) -> str:
    """``16000 Hz``, or ``16000 -> 24000 Hz`` for a tokenizer that decodes at another rate than it encodes."""
    rate, out = row["sample_rate"], row.get("output_sample_rate") or row["sample_rate"]
    return f"{rate} Hz" if out == rate else f"{rate} -> {out} Hz"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| name | kind | sample rate | frames/s | codebooks | kbps | tokens/s | description |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "kind" not in r:  # no card: it could not be loaded
            lines.append(f"| `{r['name']}` | - | - | - | - | - | - | unavailable here: {r['reason']} |")
            continue
        lines.append(
            f"| `{r['name']}` | {r['kind']} | {rate_text(r)} | {r['frame_rate']:g} | "
            f"{codebook_shape(r['codebook_sizes'])} | {r['bitrate'] / 1000:.2f} | {r['tokens_per_second']:g} | "
            f"{r['description']} |"
        )
    return "\n".join(lines) + "\n"
