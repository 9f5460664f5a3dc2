"""``slmtok.hub.listing``: every file a semantic bundle's loader reads is in its download plan, and
``slmtok list --kind features|vocoders`` lists feature extractors and vocoders with their cards.

The reference is the card files themselves, read with ``tomllib`` (not through slmtok's card parser), and
the roles each feature loader fetches: a transformers-format features card (``mhubert-147``'s features)
needs ``config.json``, the weights and ``preprocessor_config.json``; a fairseq HuBERT card only its
``weights`` (its ``hf-*`` files are an alternative format the bundle does not read). Whether a vocoder's
files are here is checked against a card the test writes and fetches from ``file://``.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest

from slmtok import hub
from slmtok.cli.main import main as cli
from slmtok.hub import listing
from slmtok.registry import FEATURES, VOCODERS

CARDS = Path(listing.__file__).resolve().parent / "cards"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    for var in ("SLMTOK_OFFLINE", "HF_HUB_OFFLINE", "SLMTOK_CARDS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def card_files(family: str, name: str) -> list[dict]:
    return tomllib.loads((CARDS / family / f"{name}.toml").read_text())["files"]


def test_mhubert_147_needs_the_features_config_and_preprocessor():
    """On d26df71 the plan held the features' weights only: a download left ``config.json`` and
    ``preprocessor_config.json`` out, and the bundle could not load offline."""
    plan = listing.needed_files("mhubert-147")
    features = [(f.card.name, f.entry.filename) for f in plan if f.purpose == "features"]
    expected = [
        ("mhubert-147-iter2-base", f["filename"]) for f in card_files("features", "mhubert-147-iter2-base")
    ]
    assert sorted(features) == sorted(expected)
    assert {name for _, name in features} == {"config.json", "pytorch_model.bin", "preprocessor_config.json"}
    kmeans = [(f.card.name, f.entry.filename) for f in plan if f.purpose == "k-means"]
    assert kmeans == [("mhubert-147", card_files("semantic", "mhubert-147")[0]["filename"])]
    # the loader reads the three from one cache folder (transformers_features._fetch): so must the plan
    assert len({Path(f.path).parent for f in plan if f.purpose == "features"}) == 1
    assert listing.availability("mhubert-147")["files_needed"] == 4


def test_fairseq_hubert_bundle_needs_only_the_fairseq_weights():
    plan = listing.needed_files("hubert-base-l9-km500")
    features = [f for f in plan if f.purpose == "features"]
    weights = [f for f in card_files("features", "hubert-base-ls960") if f["role"] == "weights"]
    assert [(f.entry.role, f.entry.filename) for f in features] == [("weights", weights[0]["filename"])]
    assert [f.purpose for f in plan] == ["features", "k-means", "vocoder", "vocoder"]


def test_list_kind_features_names_every_extractor_and_its_card(capsys):
    assert cli(["list", "--kind", "features", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == FEATURES.names()
    expected = {  # the card each loader fetches by default (its files' names in hub/cards/features)
        "hubert-base": "hubert-base-ls960",
        "wavlm-base-plus": "wavlm-base-plus",
        "xlsr-300m": "xlsr-300m",
        "mhubert-147": "mhubert-147-3rd-iter",
        "mhubert-147-iter2": "mhubert-147-iter2-base",
    }
    for name, card in expected.items():
        assert rows[name]["cards"] == [card], name
        assert (CARDS / "features" / f"{card}.toml").is_file()
    wavlm = rows["wavlm-base-plus"]
    assert wavlm["files_needed"] == len(card_files("features", "wavlm-base-plus")) == 3
    assert (wavlm["files_cached"], wavlm["weights"], wavlm["available"]) == (0, "missing", False)
    assert wavlm["package"] == "transformers" and rows["hubert-base"]["files_needed"] == 1
    assert (rows["mfcc"]["cards"], rows["mfcc"]["weights"], rows["mfcc"]["available"]) == (
        [],
        "no card",
        None,
    )


def test_list_kind_vocoders_follows_the_cache(tmp_path, home, monkeypatch, capsys):
    """Every vocoder with its cards (``hifigan-unit-*`` are ``hifigan-unit``'s, not ``hifigan``'s); a
    vocos card whose files were fetched makes ``vocos`` usable, and nothing else is downloaded."""
    assert cli(["list", "--kind", "vocoders", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == VOCODERS.names()
    units = sorted(p.stem for p in (CARDS / "vocoders").glob("hifigan-unit-*.toml"))
    assert len(units) == 3 and rows["hifigan-unit"]["cards"] == units
    assert rows["hifigan"]["cards"] == [] and rows["griffin-lim"]["weights"] == "no card"
    assert rows["vocos"]["cards"] == ["vocos-mel-24khz"] and rows["vocos"]["available"] is False
    assert not (home / "hub").exists()

    cards = tmp_path / "cards"
    cards.mkdir()
    files = []
    for name, role in (("config.yaml", "config"), ("pytorch_model.bin", "weights")):
        data = name.encode() * 100
        (tmp_path / name).write_bytes(data)
        url, digest = (tmp_path / name).as_uri(), hashlib.sha256(data).hexdigest()
        files.append(f'[[files]]\nfilename = "{name}"\nurl = "{url}"\nsha256 = "{digest}"\nrole = "{role}"')
    head = 'name = "vocos-local"\ntitle = "t"\nfamily = "vocoder"\nlicense = "MIT"\nsource = "x"\nsample_rate = 24000'
    (cards / "vocos-local.toml").write_text("\n".join([head, *files]) + "\n")
    monkeypatch.setenv("SLMTOK_CARDS", str(cards))
    hub.fetch("vocos-local", "config")
    half = {r["name"]: r for r in listing.component_rows("vocoders")}["vocos"]
    assert half["cards"] == ["vocos-local", "vocos-mel-24khz"] and half["files_cached"] == 1
    assert half["available"] is False
    hub.fetch("vocos-local", "weights")
    assert cli(["list", "--kind", "vocoders", "vocos", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["files_needed"], row["files_cached"], row["weights"], row["available"]) == (
        4,
        2,
        "cached",
        True,
    )


def test_list_kind_without_a_match_is_one_line(capsys):
    assert cli(["list", "--kind", "vocoders", "nomatch"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("slmtok: error:") and "no vocoders match" in err[0]


def test_features_cards_found_by_name_are_the_loaders_own():
    """``needed_files`` finds a bundle's features card by name (no torch import for ``slmtok download``):
    for every registered feature extractor it must be the card its loader fetches."""
    from slmtok.tokenizers.features import hubert, transformers_features

    tables = {**hubert.VARIANTS, **transformers_features.VARIANTS}
    for name in FEATURES.names():
        if name in tables:
            assert listing._features_card(name) == tables[name].card, name
    assert set(tables) <= set(FEATURES.names())
