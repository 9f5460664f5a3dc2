"""BPE over units (issue #11, factor B): exact inverse, batch == single, refusals, the CLI, the LM.

References: the unit streams themselves (random and mfcc-km's), the base tokenizer's own decode without
BPE, and Hugging Face ``tokenizers`` for what the BPE model is; never slmtok's BPE code checking itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import slmtok
from slmtok.batching import pad_stack
from slmtok.bpe import BpeError, bpe_encode_units, load_bpe
from slmtok.bpe.fit import fit
from slmtok.bpe.model import deduplicate_units, fit_bpe, make_model
from slmtok.cli.main import main
from slmtok.corpora import asterisk_prompts
from slmtok.errors import SlmtokError, TokenizerMismatchError

from . import test_conformance as conformance


@pytest.fixture(scope="module")
def prompts() -> list[Path]:
    """Asterisk en prompts: the first 24 to fit on, the next 4 held out."""
    return asterisk_prompts("en")[:28]


@pytest.fixture(scope="module")
def bpe_dirs(prompts, tmp_path_factory) -> dict[str, Path]:
    """BPE folders over mfcc-km units of 24 prompts: plain and over deduplicated units."""
    root = tmp_path_factory.mktemp("bpe")
    train = [str(p) for p in prompts[:24]]
    fit(train, "mfcc-km", root / "plain", vocab_size=400)
    fit(train, "mfcc-km", root / "dedup", vocab_size=400, dedup=True)
    return {"plain": root / "plain", "dedup": root / "dedup"}


@pytest.fixture(scope="module")
def held_out(prompts) -> tuple[torch.Tensor, list[int]]:
    """Four held-out prompts (at most 2.5 s each) as a padded batch ``[4, 1, T]`` and their lengths."""
    wavs = [slmtok.read_audio(p)[0][:, :40000] for p in prompts[24:28]]
    return pad_stack(wavs), [w.shape[-1] for w in wavs]


# ---------------------------------------------------------------------------------------- the model
def _random_streams(seed: int, n: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.repeat(rng.integers(0, 60, 150), rng.integers(1, 5, 150)) for _ in range(n)]


def test_random_unit_streams_round_trip_exactly():
    train = _random_streams(0)
    hf = fit_bpe(train, 60, 300)
    assert hf.get_vocab_size() == 300 and hf.normalizer is None and hf.pre_tokenizer is None
    model = make_model(hf, {"n_units": 60, "dedup": False})
    rng = np.random.default_rng(1)
    unseen = [rng.integers(0, 60, n) for n in (0, 1, 2, 7, 500)] + _random_streams(2, 5)
    for units in train[:5] + unseen:
        ids = model.encode_units(units)
        assert ids.dtype == np.int64 and ids.size <= units.size
        assert np.array_equal(model.decode_ids(ids), units)
    # the HF tokenizer's own tokens are what the ids stand for (reference: tokenizers' id_to_token)
    ids = model.encode_units(train[0])
    text = "".join(hf.id_to_token(int(i)) for i in ids)
    assert np.array_equal(np.array([ord(c) - 0xF0000 for c in text]), train[0])
    assert sum(i.size for i in model.encode_batch(train)) < 0.8 * sum(u.size for u in train)


def test_deduplicate_units_matches_torch_unique_consecutive():
    units = _random_streams(3, 1)[0]
    values, runs = deduplicate_units(units)
    ref_values, ref_runs = torch.unique_consecutive(torch.from_numpy(units), return_counts=True)
    assert np.array_equal(values, ref_values.numpy()) and np.array_equal(runs, ref_runs.numpy())


def test_fit_refuses_bad_requests():
    with pytest.raises(BpeError, match="--vocab"):
        fit_bpe(_random_streams(0, 2), 60, 30)
    with pytest.raises(BpeError, match="no units"):
        fit_bpe([np.zeros(0, np.int64)], 60, 100)
    model = make_model(fit_bpe(_random_streams(0, 5), 60, 100), {"n_units": 60, "dedup": False})
    with pytest.raises(BpeError, match="out of range"):
        model.encode_units(np.array([3, 60]))
    with pytest.raises(BpeError):
        model.decode_ids(np.array([100]))


# ---------------------------------------------------------------------------------------- the tokenizer
@pytest.mark.parametrize("kind", ["plain", "dedup"])
def test_decode_gives_the_base_tokenizers_audio_and_batch_equals_single(kind, bpe_dirs, held_out):
    wav, lengths = held_out
    base = slmtok.load("mfcc-km")
    tok = slmtok.load("mfcc-km", bpe=str(bpe_dirs[kind]))
    assert tok.card.name == f"mfcc-km+bpe{load_bpe(bpe_dirs[kind]).vocab_size}"
    assert tok.card.frame_rate == base.card.frame_rate and tok.card.codebook_sizes == (400,)
    tokens = tok.encode(wav, 16000, lengths=lengths)
    reference = base.encode(wav, 16000, lengths=lengths)
    assert tokens.codes.shape[:2] == (4, 1)
    # durations: the base frames each id stands for, summing to the base's frame count
    frames = tokens.extras["durations"][:, 0].sum(-1)
    assert torch.equal(frames, reference.lengths)
    assert bool((tokens.lengths < reference.lengths).all())
    ours, theirs = tok.decode(tokens), base.decode(reference)
    assert torch.equal(ours.wav, theirs.wav) and torch.equal(ours.lengths, theirs.lengths)
    model = load_bpe(bpe_dirs[kind])
    for i in range(4):
        alone = tok.encode(wav[i, :, : lengths[i]], 16000)
        assert torch.equal(alone.item(0), tokens.item(i))
        for name, extra in alone.extras.items():
            n = int(alone.lengths[0])
            assert torch.equal(extra[0, :, :n], tokens.extras[name][i, :, :n]), name
        # the library function the measures use gives the same ids from frame-level units
        units = reference.item(i)[0].numpy()
        assert np.array_equal(bpe_encode_units(model, units), tokens.item(i)[0].numpy())


def test_dedup_decode_without_unit_durations_keeps_each_ids_frames(bpe_dirs, held_out):
    """LM-generated ids carry only per-id durations: each id keeps its frame count (shared evenly)."""
    wav, lengths = held_out
    tok = slmtok.load("mfcc-km", bpe=str(bpe_dirs["dedup"]))
    tokens = tok.encode(wav, 16000, lengths=lengths)
    exact = tok.decode(tokens)
    rough = tok.decode(type(tokens)(tokens.codes, tokens.lengths, tokens.frame_rate, tokens.tokenizer,
                                    {"durations": tokens.extras["durations"]}))  # fmt: skip
    assert torch.equal(rough.lengths, exact.lengths)


def test_speech_units_compress_on_held_out_prompts(bpe_dirs, held_out):
    wav, lengths = held_out
    base = slmtok.load("mfcc-km")
    frames = int(base.encode(wav, 16000, lengths=lengths).lengths.sum())
    for kind in ("plain", "dedup"):
        tokens = slmtok.load("mfcc-km", bpe=str(bpe_dirs[kind])).encode(wav, 16000, lengths=lengths)
        assert frames / int(tokens.lengths.sum()) > 1.3, kind
    card = json.loads((bpe_dirs["plain"] / "bpe_card.json").read_text())
    assert card["training"]["frames_per_bpe_token"] > 1.5
    assert card["base"]["name"] == "mfcc-km" and card["base"]["hash"] == base.card.hash


def test_refuses_a_bpe_folder_of_another_tokenizer(bpe_dirs, tmp_path):
    with pytest.raises(TokenizerMismatchError, match="fit on 'mfcc-km'"):
        slmtok.load("mel-rvq", bpe=str(bpe_dirs["plain"]))
    other = tmp_path / "other"
    shutil.copytree(bpe_dirs["plain"], other)
    card = json.loads((other / "bpe_card.json").read_text())
    card["base"]["hash"] = "0" * 64
    (other / "bpe_card.json").write_text(json.dumps(card))
    with pytest.raises(TokenizerMismatchError, match="weights 000000000000"):
        slmtok.load("mfcc-km", bpe=str(other))
    (other / "bpe.json").write_text((other / "bpe.json").read_text().replace('"BPE"', '"WordPiece"'))
    with pytest.raises(BpeError, match="sha256 differs"):
        slmtok.load("mfcc-km", bpe=str(other))
    with pytest.raises(BpeError, match="no BPE folder"):
        slmtok.load("mfcc-km", bpe=str(tmp_path / "missing"))
    with pytest.raises(SlmtokError, match="without dedup"):
        slmtok.load("mfcc-km", bpe=str(bpe_dirs["plain"]), dedup=True)


def test_multi_codebook_acoustic_tokenizer_needs_codebook_0(prompts, tmp_path):
    from .conformance import LOAD_OPTIONS

    options = LOAD_OPTIONS["encodec-24khz"](tmp_path)  # a tiny random EnCodec in the upstream format
    train = [str(p) for p in prompts[:3]]
    with pytest.raises(BpeError, match="--codebook 0"):
        fit(train, "encodec-24khz", tmp_path / "a", vocab_size=1100, options=options)
    result = fit(train, "encodec-24khz", tmp_path / "b", vocab_size=1100, codebook=0, options=options)
    assert result.card["codebook"] == 0
    tok = slmtok.load("encodec-24khz", bpe=str(result.folder), **options)
    base = slmtok.load("encodec-24khz", **options)
    wav, rate = slmtok.read_audio(prompts[3])
    wav = wav[:, :24000]
    ours, theirs = tok.decode(tok.encode(wav, rate)), base.decode(base.encode(wav, rate, n_codebooks=1))
    assert torch.equal(ours.wav, theirs.wav)


# ---------------------------------------------------------------------------------------- conformance
@pytest.fixture(scope="module")
def tok(bpe_dirs):
    return slmtok.load("mfcc-km", bpe=str(bpe_dirs["dedup"]))


@pytest.mark.parametrize(
    "check",
    [
        "test_card_is_consistent",
        "test_tokens_layout_and_lengths",
        "test_batch_equals_single",
        "test_padding_content_is_ignored",
        "test_encode_is_deterministic",
        "test_decode_shapes_and_lengths",
        "test_decode_batch_gives_each_item_its_own_audio",
        "test_token_file_round_trip",
        "test_mono_and_stereo",
        "test_n_codebooks_argument",
        "test_decode_refuses_codes_out_of_range",
        "test_decode_refuses_other_tokenizers",
    ],
)
def test_conformance_suite_on_mfcc_km_with_bpe(check, tok, speech_batch, speech_16k, tmp_path):
    import inspect

    function = getattr(conformance, check)
    given = {"tok": tok, "speech_batch": speech_batch, "speech_16k": speech_16k, "tmp_path": tmp_path}
    function(**{name: given[name] for name in inspect.signature(function).parameters})


@pytest.mark.parametrize("n_samples", [1, 160, 400, 800])
def test_conformance_short_inputs(tok, speech_16k, n_samples):
    from .conformance import check_decodes_short_input

    check_decodes_short_input(tok, speech_16k[4000:], n_samples)


# ---------------------------------------------------------------------------------------- CLI and LM
def test_cli_fit_from_token_files_then_encode_decode_and_lm(prompts, tmp_path, capsys):
    train = [str(p) for p in prompts[:12]]
    assert main(["encode", *train, "-t", "mfcc-km", "-o", str(tmp_path / "tok")]) == 0
    assert main(["bpe", "fit", str(tmp_path / "tok"), "-t", "mfcc-km", "--vocab", "300",
                 "-o", str(tmp_path / "bpe")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "mfcc-km+bpe300" in out and "frames/token" in out
    # the same units from audio give the same model (the fingerprint and bpe.json)
    assert main(["bpe", "fit", *train, "-t", "mfcc-km", "--vocab", "300", "-o", str(tmp_path / "bpe2")]) == 0
    cards = [json.loads((tmp_path / d / "bpe_card.json").read_text()) for d in ("bpe", "bpe2")]
    assert cards[0]["training"]["fingerprint"] == cards[1]["training"]["fingerprint"]
    assert cards[0]["model_sha256"] == cards[1]["model_sha256"]
    # refuses to overwrite without --force; one line on stderr
    assert main(["bpe", "fit", *train[:2], "-t", "mfcc-km", "-o", str(tmp_path / "bpe")]) == 1
    assert "--force" in capsys.readouterr().err
    # deduplicated token files are refused (the BPE's --dedup deduplicates)
    assert (
        main(["encode", train[0], "-t", "mfcc-km", "-O", "dedup=true", "-o", str(tmp_path / "d.slmtok")]) == 0
    )
    assert main(["bpe", "fit", str(tmp_path / "d.slmtok"), "-t", "mfcc-km", "-o", str(tmp_path / "x")]) == 1
    assert "deduplicated" in capsys.readouterr().err
    # -O bpe= on encode; decode from the token file alone
    held = str(prompts[20])
    bpe = str(tmp_path / "bpe")
    assert main(["encode", held, "-t", "mfcc-km", "-O", f"bpe={bpe}", "-o", str(tmp_path / "h.slmtok")]) == 0
    assert main(["decode", str(tmp_path / "h.slmtok"), "-o", str(tmp_path / "h.wav")]) == 0
    ours = slmtok.read_audio(tmp_path / "h.wav")[0]
    base = slmtok.load("mfcc-km")
    wav, rate = slmtok.read_audio(held)
    reference = base.decode(base.encode(wav, rate))
    assert ours.shape[-1] == int(reference.lengths[0])
    # the LM trainer consumes it like any tokenizer
    from slmtok.lm.training import train as train_lm

    capsys.readouterr()
    assert main(["lm", "prepare", *train, "-t", "mfcc-km", "-O", f"bpe={bpe}", "-o", str(tmp_path / "lm"),
                 "--valid-fraction", "0.2", "--json"]) == 0  # fmt: skip
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["tokenizer"]["name"] == "mfcc-km+bpe300" and manifest["codebook_sizes"] == [300]
    result = train_lm(tmp_path / "lm", tmp_path / "run", model="tiny", block_size=32, batch_size=4,
                      max_steps=3, warmup_steps=1, eval_interval=3, save_interval=3, log_interval=1,
                      log=lambda line: None)  # fmt: skip
    assert result.step == 3 and np.isfinite(result.evaluation["val_bits_per_second"])


def test_cli_fit_from_a_corpus_run(prompts, tmp_path, capsys):
    files = [str(p) for p in prompts[:3]]
    assert main(["encode-corpus", *files, "-t", "mfcc-km", "-o", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["bpe", "fit", str(tmp_path / "run"), "-t", "mfcc-km", "--vocab", "150",
                 "-o", str(tmp_path / "bpe"), "--json"]) == 0  # fmt: skip
    card = json.loads(capsys.readouterr().out)
    base = slmtok.load("mfcc-km")
    frames = sum(int(base.encode(*slmtok.read_audio(f)).lengths[0]) for f in files)
    assert card["training"]["input"] == "corpus" and card["training"]["frames"] == frames
    # one kind of input per call
    assert (
        main(["bpe", "fit", str(tmp_path / "run"), files[0], "-t", "mfcc-km", "-o", str(tmp_path / "x")]) == 1
    )
    assert "one kind of input" in capsys.readouterr().err
