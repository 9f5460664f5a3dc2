"""Semantic bundles: consistency checks, dedup, registration by name, `slmtok kmeans fit` end to end."""

from __future__ import annotations

import json

import pytest
import torch

import slmtok
from slmtok.corpora import asterisk_prompts
from slmtok.errors import SlmtokError
from slmtok.tokenizers.semantic.standins import write_mfcc_bundle, write_unit_vocoder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_mfcc_bundle(tmp_path_factory.mktemp("bundle"), k=16, files=6)


def test_bundle_encodes_and_decodes(bundle, speech_16k):
    tok = slmtok.load("semantic-bundle", bundle=str(bundle))
    assert tok.card.kind == "semantic" and tok.card.codebook_sizes == (16,) and tok.card.frame_rate == 100
    tokens = tok.encode(speech_16k, 16000)
    assert tokens.tokenizer.options == {"bundle": str(bundle.resolve())}
    units = tok.frame_units(speech_16k)
    assert torch.equal(tokens.item(0)[0], units)
    audio = tok.decode(tokens)
    assert abs(audio.durations[0] - 1.5) < 0.03


def test_dedup_durations_decode_to_the_same_audio(bundle, speech_16k):
    full = slmtok.load("semantic-bundle", bundle=str(bundle))
    dedup = slmtok.load("semantic-bundle", bundle=str(bundle), dedup=True)
    assert dedup.card.hash != full.card.hash
    a, b = full.encode(speech_16k, 16000), dedup.encode(speech_16k, 16000)
    durations = b.extras["durations"][0, 0, : int(b.lengths[0])]
    assert int(durations.sum()) == int(a.lengths[0])
    assert torch.equal(torch.repeat_interleave(b.item(0)[0], durations), a.item(0)[0])
    torch.testing.assert_close(dedup.decode(b).wav, full.decode(a).wav, atol=1e-5, rtol=0)


def test_vocoder_must_fit_the_kmeans(bundle, tmp_path):
    wrong_k = write_unit_vocoder(tmp_path / "k17", 17, channels=32, hop=160)
    with pytest.raises(SlmtokError, match="17 units but .* K=16"):
        slmtok.load("semantic-bundle", bundle=str(bundle), vocoder=str(wrong_k))
    wrong_rate = write_unit_vocoder(tmp_path / "50hz", 16, channels=32, hop=320)
    with pytest.raises(SlmtokError, match="50 units/s"):
        slmtok.load("semantic-bundle", bundle=str(bundle), vocoder=str(wrong_rate))
    silent = slmtok.load("semantic-bundle", bundle=str(bundle), vocoder="none")
    with pytest.raises(SlmtokError, match="no unit vocoder"):
        silent.decode(silent.encode(torch.randn(8000) * 0.1, 16000))


def test_published_bundle_with_standins(tmp_path, speech_16k):
    """hubert-base-l6-km100 from a fairseq .pt, a scikit-learn km.bin and a g_XXXXXXXX unit vocoder."""
    from slmtok.kmeans import load
    from slmtok.tokenizers.semantic.standins import standin_options

    options = standin_options("hubert-base-l6-km100", tmp_path)
    tok = slmtok.load("hubert-base-l6-km100", **options)
    assert tok.card.frame_rate == 50 and tok.card.codebook_sizes == (100,)
    assert torch.equal(tok.centroids, load(options["kmeans"]).centroids)
    tokens = tok.encode(speech_16k[:8000], 16000)
    assert int(tokens.lengths[0]) == 24
    with pytest.raises(SlmtokError, match="K=100"):
        slmtok.load("hubert-base-l6-km50", **options)


def test_published_bundle_offline_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path))
    monkeypatch.setenv("SLMTOK_OFFLINE", "1")
    with pytest.raises(SlmtokError, match="hubert_base_ls960.pt"):
        slmtok.load("hubert-base-l6-km100")


def test_kmeans_fit_cli_makes_a_tokenizer(tmp_path, monkeypatch, capsys):
    from slmtok.cli.main import main
    from slmtok.registry import TOKENIZERS

    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    corpus = [str(p) for p in asterisk_prompts("en")[:8]]
    out = tmp_path / "km"
    args = ["kmeans", "fit", *corpus, "--features", "mfcc", "-k", "12", "-o", str(out), "--restarts", "2",
            "--iterations", "5", "--name", "test-mfcc-km12", "--json"]  # fmt: skip
    try:
        assert main(args) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["k"] == 12 and summary["dim"] == 39 and len(summary["restarts"]) == 2
        assert (out / "bundle.json").is_file() and (out / "kmeans.safetensors.json").is_file()
        assert list((out / "cache").glob("block-*.safetensors"))
        tok = slmtok.load("test-mfcc-km12")  # registered by name
        assert tok.card.name == "test-mfcc-km12" and tok.card.codebook_sizes == (12,)
        tokens = tok.encode(slmtok.read_audio(corpus[0])[0], 16000)
        assert tokens.tokenizer.options == {}
        # a second run reuses the cached feature blocks and gives the same k-means
        assert main(args) == 0
        capsys.readouterr()
        again = slmtok.load("semantic-bundle", bundle=str(out))
        assert torch.equal(again.centroids, tok.centroids)
    finally:
        TOKENIZERS.unregister("test-mfcc-km12")


def test_kmeans_fit_on_log_mel_features_makes_a_loadable_bundle(tmp_path, monkeypatch, capsys):
    """``--features log-mel`` (whose extractor's ``config`` is a dataclass, not a method) once wrote a
    bundle that failed to load with a TypeError; it must load and encode like the mfcc one."""
    from slmtok.cli.main import main

    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    corpus = [str(p) for p in asterisk_prompts("en")[:3]]
    out = tmp_path / "km"
    args = ["kmeans", "fit", *corpus, "--features", "log-mel", "-k", "6", "-o", str(out), "--restarts", "1",
            "--iterations", "3", "--json"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    tok = slmtok.load("semantic-bundle", bundle=str(out))
    assert tok.card.codebook_sizes == (6,) and tok.features_config["features"] == "log-mel"
    tokens = tok.encode(slmtok.read_audio(corpus[0])[0], 16000)
    assert int(tokens.codes.max()) < 6 and int(tokens.lengths[0]) > 0


def test_batched_and_per_item_feature_paths_give_the_same_units(tmp_path):
    """On CPU a bundle runs HuBERT one item at a time; the padded-batch path (GPUs, or
    ``batch_features_on_cpu``) re-decides near-ties alone, so both give every item its solo units."""
    from slmtok.batching import pad_stack
    from slmtok.tokenizers.semantic.standins import standin_options

    tok = slmtok.load("hubert-base-l6-km100", **standin_options("hubert-base-l6-km100", tmp_path))
    files = asterisk_prompts("en")[:3]
    wavs = [slmtok.read_audio(p)[0][:, :n] for p, n in zip(files, (9000, 16000, 12500), strict=True)]
    batch, lengths = pad_stack(wavs), [w.shape[-1] for w in wavs]
    solo = [tok.encode(w, 16000).item(0) for w in wavs]
    per_item = tok.encode(batch, 16000, lengths=lengths)
    tok.batch_features_on_cpu = True
    batched = tok.encode(batch, 16000, lengths=lengths)
    for i, units in enumerate(solo):
        assert torch.equal(per_item.item(i), units) and torch.equal(batched.item(i), units)
