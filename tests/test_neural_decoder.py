"""The ``mel-rvq`` neural decoder: shipped weights and card, default decode path, edge lengths, pieces,
and a tiny training run that resumes to the same weights as an uninterrupted one.

References: sha256 of the shipped file (hashlib), the Griffin-Lim path as it was (``vocode`` on the
dequantized frames), the input speech itself (STOI and log-mel distance against it), a whole-input
decode for the pieces, and an uninterrupted run for the resumed one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from pystoi import stoi

import slmtok
from slmtok.tokenizers.baselines import mel_rvq, mfcc_km
from slmtok.tokenizers.baselines import vocode as pieces

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def neural():
    return slmtok.load("mel-rvq")


@pytest.fixture(scope="module")
def griffin_lim():
    return slmtok.load("mel-rvq", decoder="griffin-lim")


def test_shipped_weights_match_their_card():
    card = json.loads(mel_rvq.DECODER_CARD.read_text())
    blob = mel_rvq.DECODER_WEIGHTS.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == card["sha256"] and len(blob) == card["bytes"]
    assert len(blob) <= 20 * 2**20
    for key in ("steps", "train_minutes", "machine", "command", "licence", "data"):
        assert card[key], key
    assert not set(card["data"]["held_out"]) & set(card["data"]["talkers"])
    assert "fr_CA_f_June" in card["data"]["held_out"] and "it_IT_m_Carlo" in card["data"]["held_out"]


def test_default_is_neural_and_griffin_lim_keeps_the_old_path(neural, griffin_lim, speech_16k):
    assert neural.decoder is not None and griffin_lim.decoder is None
    assert neural.decoder_hash == hashlib.sha256(mel_rvq.DECODER_WEIGHTS.read_bytes()).hexdigest()
    tokens = neural.encode(speech_16k, 16000)
    n = int(tokens.lengths[0])
    frames = griffin_lim.dequantize(tokens.codes[0, :, :n])
    old = pieces.vocode(griffin_lim.vocoder, frames, griffin_lim.vocoder.num_samples(n))
    assert torch.equal(griffin_lim.decode(tokens).item(0)[0], old)
    new = neural.decode(tokens).item(0)[0]
    assert new.shape == old.shape and not torch.allclose(new, old, atol=1e-3)


def test_token_hash_does_not_depend_on_the_decoder(neural, griffin_lim, speech_16k):
    """Tokens mean the same codes whichever decoder runs: either decodes the other's tokens."""
    assert neural.card.hash == griffin_lim.card.hash
    tokens = griffin_lim.encode(speech_16k, 16000)
    assert neural.decode(tokens).wav.shape[-1] > 0


def test_token_file_written_before_the_neural_decoder_decodes_with_it():
    """``tests/data/v1-mel-rvq-k2.slmtok`` was written by commit 02c346e (Griffin-Lim only)."""
    tokens = slmtok.load_tokens(DATA / "v1-mel-rvq-k2.slmtok")
    tok = slmtok.load_for(tokens)
    assert tok.decoder is not None
    audio = tok.decode(tokens)
    assert int(audio.lengths[0]) == tok.vocoder.num_samples(int(tokens.lengths[0]))
    assert bool(torch.isfinite(audio.wav).all()) and float(audio.wav.abs().max()) > 1e-3


@pytest.mark.parametrize("n_frames", [0, 1, 2])
def test_zero_one_and_two_frames(neural, speech_16k, n_frames):
    tokens = neural.encode(speech_16k, 16000)
    codes = tokens.codes[..., :n_frames].clone()
    tokens = dataclasses.replace(tokens, codes=codes, lengths=torch.tensor([n_frames]))
    audio = neural.decode(tokens)
    assert int(audio.lengths[0]) == (0 if n_frames == 0 else max(1, (n_frames - 1) * 160))
    assert bool(torch.isfinite(audio.wav).all())


def _log_mel_distance(tok, a: torch.Tensor, b: torch.Tensor) -> float:
    n = min(a.numel(), b.numel())
    return float((tok.features(a[:n]) - tok.features(b[:n])).abs().mean())


@pytest.mark.parametrize("n_codebooks", [4, 8])
def test_neural_beats_griffin_lim_on_a_held_out_talker(neural, griffin_lim, speech_16k, n_codebooks):
    """French June is held out from the codebooks and the decoder. The neural decode is closer to the
    input than Griffin-Lim's from the same codes, by STOI and by log-mel distance."""
    tokens = neural.encode(speech_16k, 16000, n_codebooks=n_codebooks)
    ref = speech_16k.numpy()
    scores = {}
    for name, tok in (("neural", neural), ("gl", griffin_lim)):
        out = tok.decode(tokens).item(0)[0]
        n = min(out.numel(), ref.size)
        scores[name] = (stoi(ref[:n], out[:n].numpy(), 16000), _log_mel_distance(tok, out, speech_16k))
    assert scores["neural"][0] > scores["gl"][0], scores
    assert scores["neural"][1] < scores["gl"][1], scores


def test_long_input_in_pieces_matches_the_whole_decode(neural, speech_16k, monkeypatch):
    """Pieces of 40 frames, each with ``context_frames`` of input around it, against one whole-item run.
    Every output frame sees the same inputs in both, so only float rounding of differently sized matrix
    products may differ: 1e-5 of full scale is far below anything audible (-100 dB)."""
    x = speech_16k.repeat(2)
    tokens = neural.encode(x, 16000)
    whole = neural.decode(tokens).item(0)[0]
    monkeypatch.setattr(pieces, "CHUNK_FRAMES", 40)
    chunked = neural.decode(tokens).item(0)[0]
    assert chunked.shape == whole.shape
    assert float((chunked - whole).abs().max()) < 1e-5


def test_batch_equals_single(neural, speech_batch):
    wav, lengths = speech_batch
    tokens = neural.encode(wav, 16000, lengths=lengths)
    batch = neural.decode(tokens)
    for i in range(wav.shape[0]):
        single = neural.decode(tokens.select([i]))
        assert torch.equal(batch.item(i), single.item(0))


def test_unknown_decoder_is_one_clear_error():
    with pytest.raises(slmtok.SlmtokError, match="decoder must be one of"):
        slmtok.load("mel-rvq", decoder="wavenet")


# ------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """Six chirps with noise as a decoder data cache (four 'real', two 'synthetic', one for validation)."""
    from slmtok.tokenizers.baselines.decoder_data import build_cache
    from slmtok.tokenizers.baselines.weights import default_weights, load_weights

    tensors, config = load_weights(default_weights("mel-rvq"), expect="mel-rvq")
    g = torch.Generator().manual_seed(0)
    clips = []
    for i in range(6):
        t = torch.arange(16000 + 4000 * i) / 16000
        noise = 0.02 * torch.randn(t.numel(), generator=g)
        x = 0.3 * torch.sin(2 * torch.pi * (150 + 30 * i) * t * (1 + t)) + noise
        kind = "real" if i < 4 else "synthetic"
        clips.append({"talker": f"t{i % 2}", "kind": kind, "split": "val" if i == 0 else "train", "audio": x})
    path = tmp_path_factory.mktemp("cache") / "cache.safetensors"
    return build_cache(clips, path, tensors["codebooks"].float(), config["mel"])


TINY = ["--dim", "32", "--intermediate-dim", "64", "--num-layers", "2"]
TINY += ["--batch-size", "3", "--segment-frames", "24"]


def _train(cache, out, *extra):
    from slmtok.tokenizers.baselines.train_decoder import main

    main(["--cache", str(cache), "--out", str(out), "--max-steps", "8", "--warmup-steps", "2", *TINY, *extra])


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "checkpoint.safetensors")


def test_tiny_training_resumes_to_the_same_weights(tiny_cache, tmp_path):
    _train(tiny_cache, tmp_path / "whole", "--no-validate", "--no-log")
    _train(tiny_cache, tmp_path / "resumed", "--no-validate", "--no-log", "--stop-at-step", "3")
    assert json.loads(_meta(tmp_path / "resumed"))["step"] == 3
    interrupted = _weights(tmp_path / "resumed")
    _train(tiny_cache, tmp_path / "resumed", "--no-validate", "--no-log")
    whole, resumed = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert json.loads(_meta(tmp_path / "resumed"))["step"] == 8
    assert whole.keys() == resumed.keys()
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k
    assert any(
        not torch.equal(interrupted[k], whole[k]) for k in whole if k.startswith("model.")
    )  # it trained


def _meta(folder: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(folder / "checkpoint.safetensors"), framework="pt") as f:
        return f.metadata()["meta"]


def test_tiny_training_writes_validation_and_a_loadable_decoder(tiny_cache, tmp_path):
    from slmtok.tokenizers.baselines.neural_decoder import load_decoder

    _train(tiny_cache, tmp_path / "run", "--stop-at-step", "2")
    card = json.loads((tmp_path / "run" / "decoder.card.json").read_text())
    blob = (tmp_path / "run" / "decoder.safetensors").read_bytes()
    assert card["sha256"] == hashlib.sha256(blob).hexdigest() and card["steps"] == 2
    assert list((tmp_path / "run" / "val").glob("step000002_clip0_k8.wav"))
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("val/stoi_k8" in x for x in lines)
    from slmtok.tokenizers.baselines.train_decoder import ship

    shipped = ship(tmp_path / "run", "test", weights_dir=tmp_path)
    assert shipped["sha256"] == card["sha256"] and shipped["status"] == "test"
    assert (tmp_path / "mel-rvq-decoder.safetensors").read_bytes() == blob
    model, _ = load_decoder(tmp_path / "run" / "decoder.safetensors")
    tok = slmtok.load("mel-rvq", decoder_weights=tmp_path / "run" / "decoder.safetensors")
    assert tok.decoder_hash == card["sha256"] and model.config.dim == 32


# ------------------------------------------------------------------------------------------ mfcc-km
def test_mfcc_km_training_inputs_are_what_mfcc_km_decodes(tiny_cache):
    """A unit decoder is trained on the frames ``mfcc-km`` hands its decoder at decode time: for each
    cached clip, the first ``U + 1`` training input frames equal the per-unit log-mel rows that
    ``mfcc-km``'s own decode path looks up for the clip's ``U`` units (mel frame m <- unit m - 1)."""
    from slmtok.tokenizers.baselines.decoder_data import load_cache
    from slmtok.tokenizers.baselines.train_decoder import decoder_inputs

    tensors, _ = load_cache(tiny_cache)
    inputs = decoder_inputs("mfcc-km", tensors)
    tok = slmtok.load("mfcc-km", decoder="griffin-lim")
    assert inputs.codebooks.shape == (1, 100, 80) and inputs.k_weights == (1.0,)
    for a0, n, f0, nf in tensors["index"].tolist():
        wav = tensors["audio"][a0 : a0 + n].float() / 32767
        units = tok.encode(wav, 16000).codes[0, 0]
        decoded_frames = tok.mel_table[torch.cat([units[:1], units])]  # as MFCCKMeansTokenizer._decode
        frames = inputs.codebooks[0][inputs.codes[0, f0 : f0 + nf]]
        assert nf >= units.numel() + 1
        assert torch.equal(frames[: units.numel() + 1], decoded_frames)


def test_tiny_mfcc_km_training_ships_a_unit_decoder(tiny_cache, tmp_path):
    from slmtok.tokenizers.baselines.neural_decoder import load_decoder
    from slmtok.tokenizers.baselines.train_decoder import ship

    _train(tiny_cache, tmp_path / "run", "--stop-at-step", "2", "--tokenizer", "mfcc-km")
    assert list((tmp_path / "run" / "val").glob("step000002_clip0_k1.wav"))
    card = ship(tmp_path / "run", "test", weights_dir=tmp_path)
    assert card["file"] == "mfcc-km-decoder.safetensors" and card["train"]["tokenizer"] == "mfcc-km"
    model, _ = load_decoder(tmp_path / "mfcc-km-decoder.safetensors", expect="mfcc-km-decoder")
    assert model.config.max_codebooks == 1
    with pytest.raises(slmtok.SlmtokError, match="not 'mel-rvq-decoder'"):
        load_decoder(tmp_path / "mfcc-km-decoder.safetensors")


def test_training_command_reproduces_the_shipped_quality():
    """``benchmarks/results/embedded_baselines_repro.json`` scores a decoder trained again by the shipped
    card's command (on a regenerated cache); per held-out talker and bitrate its PESQ, STOI and speaker
    similarity are within noise of the shipped decoder's (``embedded_baselines.json``, same prompts and
    metrics): PESQ 0.1, STOI 0.01, speaker similarity 0.02."""
    results = Path(__file__).parents[1] / "benchmarks" / "results"
    shipped = json.loads((results / "embedded_baselines.json").read_text())
    repro = json.loads((results / "embedded_baselines_repro.json").read_text())
    card = json.loads(mel_rvq.DECODER_CARD.read_text())
    assert repro["decoder_weights"]["sha256"] != card["sha256"]  # another run, not the shipped file
    rows = {
        (r["tokenizer"], r["talker"]): r
        for r in shipped["per_talker"]
        if r["tokenizer"].startswith("mel-rvq") and "griffin-lim" not in r["tokenizer"]
    }
    assert len(rows) == 6  # 4 and 8 kbps x 3 talkers
    for key, ours in rows.items():
        again = next(r for r in repro["per_talker"] if (r["tokenizer"], r["talker"]) == key)
        assert abs(again["pesq_wb"] - ours["pesq_wb"]) < 0.1, key
        assert abs(again["stoi"] - ours["stoi"]) < 0.01, key
        assert abs(again["speaker_similarity"] - ours["speaker_similarity"]) < 0.02, key


@pytest.fixture(scope="module")
def units_neural():
    return slmtok.load("mfcc-km")


def test_mfcc_km_unit_vocoder_is_shipped_with_its_card_and_the_default(units_neural, speech_16k):
    """The shipped unit vocoder matches its card (sha256, size, provenance; held-out talkers not trained
    on); it is mfcc-km's default, Griffin-Lim still decodes the same tokens as before (``vocode`` on the
    mel-table frames), and the token hash does not depend on the decoder."""
    card = json.loads(mfcc_km.DECODER_CARD.read_text())
    blob = mfcc_km.DECODER_WEIGHTS.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == card["sha256"] and len(blob) == card["bytes"] <= 20 * 2**20
    assert card["train"]["tokenizer"] == "mfcc-km" and "--tokenizer mfcc-km" in card["command"]
    assert not set(card["data"]["held_out"]) & set(card["data"]["talkers"])
    gl = slmtok.load("mfcc-km", decoder="griffin-lim")
    assert units_neural.decoder_hash == card["sha256"] and gl.decoder is None
    assert units_neural.card.hash == gl.card.hash
    tokens = units_neural.encode(speech_16k, 16000)
    units = tokens.codes[0, 0, : int(tokens.lengths[0])]
    old = pieces.vocode(
        gl.vocoder, gl.mel_table[torch.cat([units[:1], units])], (units.numel() - 1) * 160 + 400
    )
    assert torch.equal(gl.decode(tokens).item(0)[0], old)
    new = units_neural.decode(tokens).item(0)[0]
    assert new.shape == old.shape and bool(torch.isfinite(new).all())


def test_mfcc_km_unit_vocoder_beats_griffin_lim_on_a_held_out_talker(units_neural, speech_16k):
    """French June (held out): STOI of the unit vocoder's decode against the input is above Griffin-Lim's
    from the same units (units drop the voice: both are well below mel-rvq's)."""
    gl = slmtok.load("mfcc-km", decoder="griffin-lim")
    tokens = units_neural.encode(speech_16k, 16000)
    ref = speech_16k.numpy()
    scores = []
    for tok in (units_neural, gl):
        out = tok.decode(tokens).item(0)[0].numpy()
        n = min(out.size, ref.size)
        scores.append(stoi(ref[:n], out[:n], 16000))
    assert scores[0] > scores[1], scores


@pytest.mark.parametrize("n_units", [0, 1, 2])
def test_mfcc_km_unit_vocoder_zero_one_and_two_units(units_neural, speech_16k, n_units):
    tokens = units_neural.encode(speech_16k, 16000)
    tokens = dataclasses.replace(
        tokens, codes=tokens.codes[..., :n_units].clone(), lengths=torch.tensor([n_units])
    )
    audio = units_neural.decode(tokens)
    gl = slmtok.load("mfcc-km", decoder="griffin-lim").decode(tokens)
    assert int(audio.lengths[0]) == int(gl.lengths[0])
    assert bool(torch.isfinite(audio.wav).all())
