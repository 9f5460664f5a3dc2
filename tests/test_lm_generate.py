"""Generation: the key/value cache is exact, and prompt -> LM -> tokens -> audio runs through real
tokenizers (mel-rvq, 8 codebooks, delay pattern; mfcc-km deduplicated units through the CLI)."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

import slmtok
from slmtok.cli.main import main
from slmtok.corpora import asterisk_prompts
from slmtok.errors import TokenizerMismatchError
from slmtok.lm.generation import continue_steps, generate, load_run
from slmtok.lm.model import KVCache, ModelConfig, SpeechLM
from slmtok.lm.patterns import BOS, make_pattern


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the test box is shared; tiny models gain nothing from two threads
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def prompts():
    return [str(p) for p in asterisk_prompts("en") if p.stat().st_size < 24000][:8]


def random_model(pattern, block_size=48, seed=0):
    torch.manual_seed(seed)
    config = ModelConfig.preset("tiny", block_size=block_size, n_layer=2).with_vocab(
        pattern.stream_vocab_sizes
    )
    return SpeechLM(config).eval()


def test_cached_forward_equals_full_forward():
    pattern = make_pattern("delay", (16, 16, 16))
    model = random_model(pattern)
    steps = pattern.encode(torch.randint(0, 16, (3, 30)))[None, :40]  # [1, 33, 3]
    full = model(steps)
    cache = KVCache.empty(model.config, 1, 48, "cpu", torch.float32)
    parts = [model(steps[:, :10], cache), model(steps[:, 10:13], cache)]  # prefill, then a few at once
    parts += [model(steps[:, i : i + 1], cache) for i in range(13, steps.shape[1])]  # then one by one
    assert cache.length == steps.shape[1]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["delay", "flatten", "parallel"])
def test_greedy_generation_is_the_same_with_and_without_cache(name):
    pattern = make_pattern(name, (16, 12))
    model = random_model(pattern)
    prefix = pattern.special_row(BOS)[None]
    with_cache = continue_steps(model, pattern, prefix, 40, temperature=0, use_cache=True)
    without = continue_steps(model, pattern, prefix, 40, temperature=0, use_cache=False)
    assert torch.equal(with_cache, without)
    codes = pattern.decode(with_cache, strict=False)  # sampling kept the pattern: codes in range
    assert codes.shape[1] == pattern.complete_frames(40)
    assert (codes[0] < 16).all() and (codes[1] < 12).all() and (codes >= 0).all()
    # past the context (48 steps) the cache restarts from its last half and goes on
    long = continue_steps(
        model, pattern, prefix, 120, temperature=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert pattern.decode(long, strict=False).shape[1] == pattern.complete_frames(120)


@pytest.fixture(scope="module")
def mel_rvq_run(tmp_path_factory, prompts):
    root = tmp_path_factory.mktemp("lm-mel-rvq")
    torch.set_num_threads(1)
    slmtok.lm.prepare(prompts, root / "data", tokenizer="mel-rvq", pattern="delay", valid_fraction=0.2)
    slmtok.lm.train(
        root / "data", root / "run", model="tiny", block_size=64, batch_size=4, max_steps=15, warmup_steps=3,
        eval_interval=15, save_interval=15, log=lambda line: None,
    )  # fmt: skip
    return root / "run"


def test_generation_decodes_through_mel_rvq(mel_rvq_run, speech_16k):
    tok = slmtok.load("mel-rvq")
    prompt = (speech_16k[:8000], 16000)  # 0.5 s of a talker the LM never heard
    result = generate(mel_rvq_run, prompt, seconds=0.3, temperature=0.9, top_k=50, seed=1, tokenizer=tok)
    prompt_codes = tok.encode(*prompt).item(0)
    codes = result.tokens.codes[0]
    assert codes.shape == (8, prompt_codes.shape[1] + 30)
    assert torch.equal(codes[:, : prompt_codes.shape[1]], prompt_codes)  # the prompt is kept as it was
    assert result.new_frames == 30 and (codes >= 0).all() and (codes < 1024).all()
    audio = result.audio
    assert audio.sample_rate == 16000 and torch.isfinite(audio.wav).all()
    assert audio.durations[0] == pytest.approx(codes.shape[1] / 100, abs=0.03)
    assert float(audio.item(0)[:, -4800:].abs().mean()) > 1e-4  # the continuation is sound, not silence
    again = generate(mel_rvq_run, prompt, seconds=0.3, temperature=0.9, top_k=50, seed=1, tokenizer=tok)
    assert torch.equal(again.tokens.codes, result.tokens.codes)  # seeded
    with pytest.raises(TokenizerMismatchError, match="mel-rvq"):
        generate(mel_rvq_run, prompt, seconds=0.1, tokenizer=slmtok.load("mfcc-km"))
    assert load_run(mel_rvq_run).model.config.n_streams == 8


def test_cli_prepare_train_generate_on_deduplicated_units(tmp_path, prompts, capsys):
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "out" / "continued.wav"
    assert main(["lm", "prepare", *prompts, "-t", "mfcc-km", "-O", "dedup=true", "--pattern", "flatten",
                 "--valid-fraction", "0.25", "-o", str(data)]) == 0  # fmt: skip
    assert "mfcc-km (1 codebook, flatten pattern)" in capsys.readouterr().out
    assert main(["lm", "train", str(data), "-o", str(run), "--steps", "8", "--block-size", "32",
                 "--batch-size", "4", "--warmup", "2", "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 8 and summary["val_bits_per_second"] > 0
    assert main(["lm", "generate", str(run), "--prompt", prompts[2], "--prompt-seconds", "0.5",
                 "--seconds", "1.0", "-o", str(out), "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    info = sf.info(str(out))
    assert info.samplerate == 16000 and info.frames / 16000 == pytest.approx(
        report["audio_seconds"], abs=1e-3
    )
    # units are deduplicated: the continuation's length comes from the mean unit durations of the data
    assert report["audio_seconds"] == pytest.approx(0.5 + 1.0, abs=0.2)
    # a finished run resumes as a no-op with its saved settings; other settings are refused in one line
    assert main(["lm", "train", str(data), "-o", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 8
    assert main(["lm", "train", str(data), "-o", str(run), "--lr", "0.5"]) == 1
    assert "learning_rate" in capsys.readouterr().err


def test_a_run_folder_never_grants_trust_or_opens_paths(mel_rvq_run, tmp_path, monkeypatch, speech_16k):
    """A run folder is data: ``trust`` written into its config is not obeyed, and a ``checkpoint`` path
    it names without a recorded sha256 is refused in one line, never opened (``slmtok.load_for``)."""
    import shutil

    import slmtok.api
    from slmtok.lm.checkpoint import CONFIG
    from slmtok.provenance import WeightsNotFoundError

    seen = []
    real_load = slmtok.api.load

    def spy(name, **kwargs):
        seen.append(kwargs)
        return real_load(name, **kwargs)

    monkeypatch.setattr(slmtok.api, "load", spy)
    for options in ({"trust": True}, {"trust": True, "checkpoint": "/etc/passwd"}):
        run = tmp_path / f"run{len(options)}"
        shutil.copytree(mel_rvq_run, run)
        config = json.loads((run / CONFIG).read_text())
        config["manifest"]["tokenizer"]["options"] = options
        (run / CONFIG).write_text(json.dumps(config))
        if "checkpoint" in options:
            with pytest.raises(WeightsNotFoundError, match="/etc/passwd") as caught:
                generate(run, (speech_16k[:8000], 16000), seconds=0.1, seed=1)
            assert "\n" not in str(caught.value)
        else:
            result = generate(run, (speech_16k[:8000], 16000), seconds=0.1, seed=1)
            assert result.tokens.codes.shape[1] == 8
    assert len(seen) == 1 and "trust" not in seen[0] and "checkpoint" not in seen[0]
