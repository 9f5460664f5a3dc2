"""Probe folders (issue #11): the schema module, and the espeak-ng builder (``slmtok probes build``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from slmtok.probes import (
    ProbeError,
    ProbeItem,
    frame_labels,
    items_jsonl_bytes,
    load_probes,
    make_header,
    write_index,
)


def _item(item_id: str, set_name: str = "content", **fields) -> ProbeItem:
    base = dict(
        id=item_id,
        set=set_name,
        audio=f"audio/{item_id}.flac",
        seconds=0.5,
        voice="en-us+f3",
        speaker="en-us+f3",
        text="cat",
        phones=(("SIL", 0.0, 0.1), ("k", 0.1, 0.2), ("a", 0.2, 0.3), ("t", 0.3, 0.4), ("SIL", 0.4, 0.5)),
        words=(("cat", 0.1, 0.4),),
        phone_string="k a t",
    )
    base.update(fields)
    return ProbeItem(**base)


def _write_folder(root, items, seed=0):
    (root / "audio").mkdir(parents=True)
    for item in items:
        sf.write(str(root / item.audio), np.zeros(int(item.seconds * 16000), np.float32), 16000)
    data = items_jsonl_bytes(items)
    header = make_header(
        items,
        data,
        seed=seed,
        voices=[{"id": "en-us+f3", "engine": "espeak-ng", "voice": "en-us+f3", "split": "train"}],
    )
    write_index(root, header, data)
    return header


def test_schema_round_trip_pairs_groups_and_audio(tmp_path):
    items = [
        _item("lex-0001-bad", "lexical", pair="lex-0001", member="bad", text="dat"),
        _item("lex-0001-good", "lexical", pair="lex-0001", member="good"),
        _item("lex-0000-good", "lexical", pair="lex-0000", member="good"),
        _item("lex-0000-bad", "lexical", pair="lex-0000", member="bad"),
        _item("inv-0-noise", "invariance", group="inv-0", variant="noise"),
        _item("inv-0-clean", "invariance", group="inv-0", variant="clean"),
        _item("aco-0-a", "acoustic", pair="aco-0", member="good", variant="consistent"),
        _item("aco-0-b", "acoustic", pair="aco-0", member="bad", variant="changed:pitch"),
        _item("c-1", words=None),
    ]
    header = _write_folder(tmp_path / "P", items)
    probes = load_probes(tmp_path / "P")
    assert probes.header == header and header["sets"] == {
        "content": 1,
        "lexical": 4,
        "acoustic": 2,
        "invariance": 2,
    }
    assert [i.id for i in probes.items] == sorted(i.id for i in items)
    assert set(probes.items) == set(items)  # frozen dataclasses round-trip exactly through JSON
    pairs = probes.pairs("lexical")
    assert [(g.id, b.id) for g, b in pairs] == [
        ("lex-0000-good", "lex-0000-bad"),
        ("lex-0001-good", "lex-0001-bad"),
    ]
    assert [i.variant for i in probes.groups()["inv-0"]] == ["clean", "noise"]
    assert probes.by_set("content")[0].words is None
    wav = probes.read_audio(probes.by_set("content")[0])
    assert wav.dtype.is_floating_point and wav.ndim == 1 and wav.shape[0] == 8000
    # canonical bytes: order of input does not matter
    assert items_jsonl_bytes(reversed(items)) == items_jsonl_bytes(items)


def test_load_probes_one_line_errors(tmp_path):
    with pytest.raises(ProbeError, match="no probe folder"):
        load_probes(tmp_path / "missing")
    root = tmp_path / "P"
    _write_folder(root, [_item("a")])
    header = json.loads((root / "probes.json").read_text())
    (root / "probes.json").write_text(json.dumps({**header, "version": 99}))
    with pytest.raises(ProbeError, match="newer"):
        load_probes(root)
    (root / "probes.json").write_text(json.dumps(header))
    (root / "items.jsonl").write_bytes((root / "items.jsonl").read_bytes() + b"{}\n")
    with pytest.raises(ProbeError, match="fingerprint"):
        load_probes(root)
    header.pop("fingerprint")
    (root / "probes.json").write_text(json.dumps(header))
    with pytest.raises(ProbeError, match="line 2: missing field"):
        load_probes(root)


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(id="../x"), "safe file name"),
        (dict(set="bogus"), "unknown set"),
        (dict(phones=(("a", 0.0, 0.2), ("b", 0.25, 0.3))), "not contiguous"),
        (dict(pair="p"), "both set"),
        (dict(set="invariance", group="g", variant="louder"), "invariance variant"),
        (dict(set="acoustic", pair="p", member="good", variant="clean"), "acoustic variant"),
    ],
)
def test_item_validation(fields, match):
    data = _item("ok").to_dict() | fields
    data["phones"] = [list(p) for p in data["phones"]]
    with pytest.raises(ProbeError, match=match):
        ProbeItem.from_dict(data)


def test_pairs_need_both_members(tmp_path):
    _write_folder(tmp_path / "P", [_item("x-good", "lexical", pair="x", member="good")])
    with pytest.raises(ProbeError, match="lacks"):
        load_probes(tmp_path / "P").pairs("lexical")


def test_frame_labels_at_frame_centres():
    phones = [("SIL", 0.0, 0.1), ("k", 0.1, 0.125), ("a", 0.125, 0.3)]
    # 50 Hz frames: centres 0.01, 0.03, ... ; 0.11 -> k, 0.13 -> a ; past 0.3 -> SIL
    labels = frame_labels(phones, 17, 50.0)
    assert labels[:5] == ["SIL"] * 5
    assert labels[5] == "k" and labels[6] == "a" and labels[14] == "a"
    assert labels[15:] == ["SIL", "SIL"]
    assert frame_labels(phones, 0, 50.0) == []
    with pytest.raises(ProbeError):
        frame_labels(phones, 3, 0.0)
