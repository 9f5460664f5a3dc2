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


# ------------------------------------------------------------------------------ espeak-ng and lexicon

espeak = pytest.importorskip("slmtok.probes.espeak")
lexicon = pytest.importorskip("slmtok.probes.lexicon")


@pytest.fixture(scope="module")
def engine():
    try:
        eng = espeak.Engine()
    except ProbeError as error:
        pytest.skip(str(error))
    yield eng
    eng.close()


def test_espeak_aligns_a_known_word(engine):
    speech = engine.synthesize("[[D@]] [[k'at]].", "en-us", words=["the", "cat"], phonemes=True)
    phones = speech.phones
    assert [p[0] for p in phones] == ["SIL", "D", "@", "k", "a", "t", "SIL"]
    assert phones[0][1] == 0.0 and abs(phones[-1][2] - speech.seconds) < 1e-9
    assert all(a[2] == b[1] for a, b in zip(phones, phones[1:], strict=False))
    assert [w for w, _, _ in speech.words] == ["the", "cat"]
    (_, cat_start, cat_end) = speech.words[1]
    assert cat_start == phones[3][1] and cat_end == phones[5][2]
    # the vowel is voiced speech, the leading silence is quiet
    vowel = speech.audio[int(phones[4][1] * 16000) : int(phones[4][2] * 16000)]
    lead = speech.audio[: int(phones[0][2] * 16000)]
    assert np.sqrt(np.mean(vowel**2)) > 20 * (np.sqrt(np.mean(lead**2)) + 1e-6)


def test_espeak_same_request_same_samples_whatever_came_before(engine):
    first = engine.raw("the big dog runs", "en-us+f3")[0]
    engine.raw("something else entirely", "en+m7")
    again = engine.raw("the big dog runs", "en-us+f3")[0]
    assert np.array_equal(first, again)
    with pytest.raises(ProbeError, match="no voice"):
        engine.raw("a", "xx-nonexistent")


def test_nonwords_are_legal_one_substitution_and_not_words():
    from slmtok.probes import syntax

    rng = np.random.default_rng(0)
    made = 0
    for word in syntax.content_words():
        real = lexicon.pronounce(word)
        fake = lexicon.make_nonword(real, rng)
        if fake is None:
            continue
        made += 1
        assert len(fake) == len(real) and not lexicon.is_word(fake) and lexicon.is_legal(fake)
        changed = [k for k, (a, b) in enumerate(zip(real, fake, strict=True)) if a != b]
        assert len(changed) == 1
        a, b = real[changed[0]], fake[changed[0]]
        assert lexicon._CLASS_OF[lexicon.base(a)] == lexicon._CLASS_OF[lexicon.base(b)]
        assert a[len(lexicon.base(a)) :] == b[len(lexicon.base(b)) :]  # vowel stress kept
    assert made > 0.9 * len(syntax.content_words())
    assert lexicon.is_word(lexicon.pronounce("cat")) and not lexicon.is_legal(["NG", "AE1", "T"])
    assert lexicon.to_espeak(["K", "AE1", "T"]) == "k'at"


# ----------------------------------------------------------------------------------- the builder


@pytest.fixture(scope="module")
def small_probes(tmp_path_factory, engine):
    from slmtok.cli.main import main

    out = tmp_path_factory.mktemp("probes") / "PROBES"
    assert main(["probes", "build", "-o", str(out), "--size", "small", "--seed", "3"]) == 0
    return load_probes(out)


def test_cli_small_build_is_well_formed(small_probes):
    probes = small_probes
    header = probes.header
    assert header["label"] == "synthetic" and header["seed"] == 3 and header["espeak_ng"]
    assert set(header["sets"]) == {
        "train",
        "valid",
        "content",
        "lexical",
        "syntactic",
        "acoustic",
        "invariance",
    }
    heldout = {v["id"] for v in header["voices"] if v["split"] == "heldout"}
    assert heldout and not heldout & {i.voice for i in probes.by_set("train") + probes.by_set("valid")}
    for item in probes.items:
        wav = probes.read_audio(item)
        assert abs(len(wav) / 16000 - item.seconds) < 1e-6
        assert item.phones[0][1] == 0.0 and abs(item.phones[-1][2] - item.seconds) < 1e-5
        assert item.phone_string == " ".join(p[0] for p in item.phones if p[0] != "SIL")
        if item.words is not None:
            assert [w for w, _, _ in item.words] == item.text.split()
    for good, bad in probes.pairs("lexical"):
        assert good.voice == bad.voice and len(good.phone_string.split()) == len(bad.phone_string.split())
        assert good.text in lexicon.cmu() and good.phone_string != bad.phone_string
    for good, bad in probes.pairs("syntactic"):
        assert good.voice == bad.voice and good.variant == bad.variant and good.text != bad.text
        assert len(good.text.split()) == len(bad.text.split())
    factors = set()
    for good, bad in probes.pairs("acoustic"):
        assert good.text == bad.text and good.variant == "consistent"
        assert abs(good.seconds - bad.seconds) <= 0.05 * good.seconds
        factors.add(bad.variant)
    assert factors == {"changed:speaker", "changed:pitch", "changed:rate", "changed:background"}
    for group in probes.groups().values():
        by_variant = {i.variant: i for i in group}
        assert set(by_variant) == {"clean", "noise", "pitch+2", "pitch-2", "speed0.9", "speed1.1", "voice"}
        clean = by_variant["clean"]
        assert by_variant["voice"].voice in heldout and by_variant["noise"].phones == clean.phones
        assert abs(by_variant["speed0.9"].seconds - clean.seconds / 0.9) < 0.01
        assert {i.text for i in group} == {clean.text}
    # content: the same sentences in every voice
    texts_by_voice: dict[str, set[str]] = {}
    for item in probes.by_set("content"):
        texts_by_voice.setdefault(item.voice, set()).add(item.text)
    assert (
        len(texts_by_voice) == len(header["voices"])
        and len({frozenset(t) for t in texts_by_voice.values()}) == 1
    )


def test_cli_refuses_to_overwrite_without_force(small_probes, capsys):
    from slmtok.cli.main import main

    before = (small_probes.root / "items.jsonl").read_bytes()
    assert main(["probes", "build", "-o", str(small_probes.root), "--size", "small"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"slmtok: error: {small_probes.root} exists and is not empty: use --force to replace it"]
    assert (small_probes.root / "items.jsonl").read_bytes() == before
    assert (
        main(["probes", "build", "-o", str(small_probes.root), "--voices", "en-us", "--heldout-voices", ""])
        == 1
    )
    assert "two voices" in capsys.readouterr().err
    new = small_probes.root.parent / "other"
    assert main(["probes", "build", "-o", str(new), "--size", "small", "--voices", "en-us,zz-bogus"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "slmtok: error: espeak-ng has no voice 'zz-bogus' (see: espeak-ng --voices=en)"
    ]
    assert not new.exists() and not [p for p in new.parent.iterdir() if p.name.startswith(".")]


def test_build_is_deterministic(tmp_path, engine):
    from slmtok.probes.build import Size, build_probes

    tiny = Size(
        train_minutes=0.05,
        valid_fraction=0.1,
        content_per_voice=1,
        lexical=2,
        syntactic=2,
        acoustic=4,
        invariance=1,
    )
    voices = dict(voices=["en-us+f3"], heldout_voices=["en-us+m3"])
    runs = [
        build_probes(tmp_path / name, seed=seed, size=tiny, **voices)
        for name, seed in (("a", 5), ("b", 5), ("c", 6))
    ]
    a, b, c = (sorted(p.rglob("*")) for p in runs)
    assert [p.relative_to(runs[0]) for p in a] == [p.relative_to(runs[1]) for p in b]
    for x, y in zip(a, b, strict=True):
        assert x.is_dir() or x.read_bytes() == y.read_bytes(), x.name
    assert (runs[0] / "items.jsonl").read_bytes() != (runs[2] / "items.jsonl").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left
