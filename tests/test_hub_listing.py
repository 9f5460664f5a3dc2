"""``slmtok.hub.listing.needed_files``: every file a semantic bundle's loader reads is in its download plan.

The reference is the card files themselves, read with ``tomllib`` (not through slmtok's card parser), and
the roles each feature loader fetches: a transformers-format features card (``mhubert-147``'s features)
needs ``config.json``, the weights and ``preprocessor_config.json``; a fairseq HuBERT card only its
``weights`` (its ``hf-*`` files are an alternative format the bundle does not read).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from slmtok.hub import listing

CARDS = Path(listing.__file__).resolve().parent / "cards"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))


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
