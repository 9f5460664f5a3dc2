"""``tok.streaming()``: chunk-by-chunk encode/decode of causal tokenizers against the upstream models.

References come from the upstream implementations, never from slmtok: tiny random-weight models built
by transformers (``MimiModel``, saved with ``save_pretrained``) and by the ``encodec`` package (a ``.th``
state dict), written by ``slmtok.codecs.standins``. The reference codes are ``MimiModel.encode`` /
``EncodecModel.encode`` on the whole input, the reference audio their ``decode`` of those codes. Chunk
sizes are random (seeded), from 0 samples to about two frames, so most chunks are shorter than a frame.
Torch runs on one thread (the parity tests' fixture), the condition the parity tests use.

Mimi streams with its carried state by default (``slmtok.codecs.mimi_streaming``); the recompute engine
(``engine="recompute"``) is checked on one seed. A second tiny Mimi with a 4-position attention window
(2 frames) and 2 transformer layers runs streams 19 to 40 windows long, so the sliding-window caches
are exercised past the window.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import slmtok
from slmtok import hub
from slmtok.codecs import standins
from slmtok.codecs.mimi_streaming import CarriedDecoder, CarriedEncoder, carried_refusal
from slmtok.codecs.streaming import StreamingDecoder, StreamingEncoder, StreamingError
from slmtok.hub.errors import CardError

from . import test_codec_parity as parity

one_thread = parity.one_thread


@pytest.fixture(scope="module")
def mimi_folder(tmp_path_factory):
    return standins.write_mimi(tmp_path_factory.mktemp("mimi") / "tiny")


@pytest.fixture(scope="module")
def mimi(mimi_folder):
    """slmtok's ``mimi`` and transformers' ``MimiModel`` on the same tiny ``save_pretrained`` folder."""
    from transformers import MimiModel

    folder = mimi_folder
    return slmtok.load("mimi", checkpoint=str(folder)), MimiModel.from_pretrained(str(folder)).eval()


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    """A tiny Mimi whose transformers attend over 4 positions (2 frames at 25 Hz) in 2 layers: slmtok's
    ``mimi`` and transformers' ``MimiModel`` on the same folder."""
    from transformers import MimiModel

    folder = standins.write_mimi(
        tmp_path_factory.mktemp("mimi") / "window4", sliding_window=4, num_hidden_layers=2
    )
    return slmtok.load("mimi", checkpoint=str(folder)), MimiModel.from_pretrained(str(folder)).eval()


@pytest.fixture(scope="module")
def encodec(tmp_path_factory):
    """slmtok's ``encodec-24khz`` and the ``encodec`` package's model on the same tiny ``.th`` file."""
    from slmtok.codecs.encodec import build_model, infer_architecture

    path = standins.write_encodec(tmp_path_factory.mktemp("encodec") / "encodec_24khz-00000000.th")
    state = torch.load(path, weights_only=True)
    model = build_model("24khz", infer_architecture(state))  # encodec.EncodecModel, upstream classes
    model.load_state_dict(state)
    model.set_target_bandwidth(6.0)  # 8 codebooks, slmtok's default
    return slmtok.load("encodec-24khz", checkpoint=str(path)), model


def signal(seconds: float, seed: int) -> torch.Tensor:
    """Speech-like probe ``[T]`` at 24 kHz."""
    return standins.probe_signal(24000, seconds, 1, seed).flatten()


def stream(tok, x: torch.Tensor, seed: int, max_chunk: int, engine: str = "auto"):
    """Push ``x`` in random chunks (0 to ``max_chunk`` samples); return the encoder's outputs (flush
    last) and the number of samples pushed before each output."""
    g = torch.Generator().manual_seed(seed)
    s = tok.streaming(engine=engine)
    outputs, pushed, pos = [], [], 0
    while pos < x.numel():
        size = int(torch.randint(0, max_chunk + 1, (1,), generator=g))
        outputs.append(s.encoder.push(x[pos : pos + size]))
        pos = min(x.numel(), pos + size)
        pushed.append(pos)
    outputs.append(s.encoder.flush())
    pushed.append(pos)
    return s, outputs, pushed


@pytest.mark.parametrize(
    ("seed", "engine"), [(0, "carried"), (1, "carried"), (2, "carried"), (0, "recompute")]
)
def test_mimi_streaming_codes_equal_transformers_whole_input_codes(mimi, one_thread, seed, engine):
    """Mimi, random chunkings (most chunks shorter than its 1920-sample frame), both engines: the
    streamed codes are transformers' codes of the whole input (its last, partial frame included), bit
    for bit, frames emitted as soon as they are final."""
    tok, model = mimi
    x = signal(1.7 + 0.3 * seed, seed)
    s, outputs, pushed = stream(tok, x, seed, 2 * 1920, engine)
    assert type(s.encoder) is {"carried": CarriedEncoder, "recompute": StreamingEncoder}[engine]
    with torch.inference_mode():
        reference = model.encode(x[None, None], num_quantizers=8).audio_codes  # [1, 8, T]
    codes = torch.cat([o.codes for o in outputs], dim=-1)
    assert codes.shape == reference.shape
    assert int((codes != reference).sum()) == 0
    emitted = torch.cumsum(torch.tensor([o.codes.shape[-1] for o in outputs]), 0)
    assert emitted[:-1].tolist() == [n // 1920 for n in pushed[:-1]]  # every final frame, no more
    assert all(o.tokenizer == tok.ref for o in outputs)
    samples = torch.cat([o.extras["samples"] for o in outputs if o.codes.shape[-1]], dim=-1)
    assert torch.equal(samples, tok.encode(x, 24000).extras["samples"])  # what decode trims by


def chunkings(n: int, seed: int) -> dict[str, list[int]]:
    """Chunk sizes that add up to ``n`` samples: random (0 to 2.5 frames), whole frames one at a time,
    three frames at a time, and everything in one push."""
    g = torch.Generator().manual_seed(seed)
    sizes, total = [], 0
    while total < n:
        sizes.append(min(n - total, int(torch.randint(0, 4800, (1,), generator=g))))
        total += sizes[-1]
    return {
        "random": sizes,
        "frames": [1920] * (n // 1920 + 1),
        "3 frames": [5760] * (n // 5760 + 1),
        "whole": [n],
    }


@pytest.mark.parametrize("seconds", [3.0, 6.25])
def test_mimi_carried_stream_past_the_attention_window_equals_whole_input(windowed, one_thread, seconds):
    """A Mimi whose transformers attend over 2 frames: streams of 37.5 and 78.125 frames (19 and 40
    windows; the second ends in a partial frame) give transformers' whole-input codes bit for bit for
    every chunking, and their streamed decode gives transformers' whole decode within float32 rounding
    (max |difference| <= 1e-5 of the peak; sums in another order, about 1e-6 measured)."""
    tok, model = windowed
    x = signal(seconds, 11)
    with torch.inference_mode():
        reference = model.encode(x[None, None], num_quantizers=8).audio_codes
        audio_reference = model.decode(reference).audio_values[..., : x.numel()]
    for name, sizes in chunkings(x.numel(), 11).items():
        s, outputs, pos = tok.streaming(), [], 0
        for size in sizes:
            outputs.append(s.encoder.push(x[pos : pos + size]))
            pos += size
        outputs.append(s.encoder.flush())
        codes = torch.cat([o.codes for o in outputs], dim=-1)
        assert codes.shape == reference.shape, name
        assert int((codes != reference).sum()) == 0, name
        audio = torch.cat([s.decoder.push(o).wav for o in outputs] + [s.decoder.flush().wav], dim=-1)
        assert audio.shape == audio_reference.shape, name
        peak = float(audio_reference.abs().max())
        assert float((audio - audio_reference).abs().max()) <= 1e-5 * peak, name


def test_mimi_carried_stream_has_no_length_bound(windowed, one_thread):
    """61 s (past the recompute engine's 60 s default bound, 1525 windows) in two pushes: the carried
    engine takes it and gives the whole-input codes; the recompute engine refuses it in one line."""
    tok, model = windowed
    x = signal(61.0, 16)
    s = tok.streaming()
    codes = torch.cat(
        [s.encoder.push(x[:732000]).codes, s.encoder.push(x[732000:]).codes, s.encoder.flush().codes], -1
    )
    with torch.inference_mode():
        assert torch.equal(codes, model.encode(x[None, None], num_quantizers=8).audio_codes)
    with pytest.raises(StreamingError, match="max_seconds=60"):
        tok.streaming(engine="recompute").encoder.push(x)


def test_mimi_carried_state_stops_growing_past_the_window(windowed, one_thread):
    """The carried state (caches, overlaps, buffers) grows while the attention window fills (2 frames)
    and then stays the same size however long the stream runs (here 40 frames)."""
    tok, _ = windowed
    x = signal(3.2, 12)
    s = tok.streaming()
    sizes = []
    for start in range(0, x.numel(), 1920):
        s.decoder.push(s.encoder.push(x[start : start + 1920]))
        sizes.append((s.encoder.state_bytes(), s.decoder.state_bytes()))
    assert sizes[0][0] < sizes[-1][0] and sizes[0][1] < sizes[-1][1]  # the measure sees the caches
    assert all(size == sizes[-1] for size in sizes[3:])


@pytest.mark.parametrize("engine", ["carried", "recompute"])
def test_mimi_streaming_decode_equals_transformers_whole_decode(mimi, one_thread, engine):
    """Decoding the streamed tokens chunk by chunk gives transformers' ``decode`` of the whole codes, cut
    to the input length, within float rounding (max |difference| <= 1e-5 of the peak)."""
    tok, model = mimi
    x = signal(1.9, 5)
    s, outputs, _ = stream(tok, x, 5, 3000, engine)
    assert type(s.decoder) is {"carried": CarriedDecoder, "recompute": StreamingDecoder}[engine]
    audio = torch.cat([s.decoder.push(o).wav for o in outputs] + [s.decoder.flush().wav], dim=-1)
    with torch.inference_mode():
        codes = model.encode(x[None, None], num_quantizers=8).audio_codes
        reference = model.decode(codes).audio_values[..., : x.numel()]
    assert audio.shape == reference.shape == (1, 1, x.numel())
    assert float((audio - reference).abs().max()) <= 1e-5 * float(reference.abs().max())


def test_mimi_carried_stream_of_a_batch_and_of_less_than_a_frame(mimi, one_thread):
    """Two items streamed together give each item's solo codes (``tok.encode``); an input shorter than
    one frame gives its whole-input code at ``flush``; whole frames leave nothing to flush."""
    tok, _ = mimi
    x = torch.stack([signal(1.3, 13), signal(1.3, 14)])[:, None]  # [2, 1, T]
    s = tok.streaming(batch_size=2)
    outputs = [s.encoder.push(x[..., i : i + 2500]) for i in range(0, x.shape[-1], 2500)]
    codes = torch.cat([o.codes for o in outputs + [s.encoder.flush()]], dim=-1)
    assert torch.equal(codes, torch.cat([tok.encode(x[i], 24000).codes for i in range(2)]))
    for n, flushed in ((700, 1), (3 * 1920, 0)):
        s = tok.streaming()
        first = s.encoder.push(signal(1.0, 15)[:n])
        last = s.encoder.flush()
        assert last.codes.shape[-1] == flushed
        codes = torch.cat([first.codes, last.codes], dim=-1)
        assert torch.equal(codes, tok.encode(signal(1.0, 15)[:n], 24000).codes)


def test_engines_are_chosen_and_refused_in_one_line(mimi, encodec):
    """``auto`` takes Mimi's carried state and EnCodec's recompute engine; a tokenizer without carried
    state, an unknown engine and a Mimi configuration transformers cannot stream are one line each."""
    from transformers import MimiConfig

    (mimi_tok, _), (encodec_tok, _) = mimi, encodec
    assert type(mimi_tok.streaming().encoder) is CarriedEncoder
    assert type(mimi_tok.streaming(engine="recompute").encoder) is StreamingEncoder
    assert type(encodec_tok.streaming().encoder) is StreamingEncoder
    for tok, engine in ((encodec_tok, "carried"), (mimi_tok, "fast")):
        with pytest.raises(StreamingError) as info:
            tok.streaming(engine=engine)
        assert "\n" not in str(info.value)
    assert carried_refusal(MimiConfig()) is None
    assert "shortcut" in carried_refusal(MimiConfig(use_conv_shortcut=True))
    assert "non-causal" in carried_refusal(MimiConfig(use_causal_conv=False))


@pytest.mark.parametrize(("seed", "max_chunk"), [(3, 2 * 320), (5, 40), (7, 3000), (9, 5), (11, 200)])
def test_encodec_streaming_codes_equal_whole_input_codes(encodec, one_thread, seed, max_chunk):
    """EnCodec 24 kHz, random chunkings (0 to ``max_chunk`` samples: most chunks shorter than a 320-sample
    frame in three of them): the streamed codes are ``tok.encode`` of the whole input, bit for bit, and
    frames are emitted as soon as they are final: the first 7 (``warmup_frames``) once 7 frames of input
    arrived, then one per 320 samples. (Before ``slmtok.codecs.stable``, PyTorch's width-dependent rounding
    flipped 2 of 1239 such frames at near-ties.) The whole-input codes equal the ``encodec`` package's
    except at near-ties (``test_codec_parity``)."""
    tok, _ = encodec
    x = signal(1.5 + 0.25 * (seed % 3), seed)
    s, outputs, pushed = stream(tok, x, seed, max_chunk)
    assert tok.warmup_frames == 7
    whole = tok.encode(x, 24000).codes[0]
    start = 0
    for out, n in zip(outputs, pushed, strict=True):
        stop = start + out.codes.shape[-1]
        if out is not outputs[-1]:
            final = n // 320
            assert stop == (final if final >= 7 else 0)
        start = stop
    codes = torch.cat([o.codes for o in outputs], dim=-1)
    assert codes.shape == whole[None].shape
    assert torch.equal(codes[0], whole)


def test_encodec_prefix_codes_need_the_warmup(encodec, one_thread):
    """Why the stream holds back its first 7 frames: EnCodec's causal convolutions pad on the left by
    reflection, so its last one (kernel 7 at 75 Hz) makes frame 0 read latent frame 6. Upstream's
    latents of a 6-frame prefix differ from its whole-input latents there by far more than rounding
    (~0.06; its codes too), from 7 frames on only by rounding (< 1e-5)."""
    _, model = encodec
    x = signal(0.5, 11)
    with torch.inference_mode():
        whole = model.encoder(x[None, None])
        prefix = {f: model.encoder(x[None, None, : f * 320]) for f in (6, 7, 9, 16)}
        codes = model.encode(x[None, None])[0][0][0]
        codes6 = model.encode(x[None, None, : 6 * 320])[0][0][0]
    assert (prefix[6] - whole[..., :6]).abs().max() > 1e-2
    assert not torch.equal(codes6, codes[:, :6])
    for f in (7, 9, 16):
        torch.testing.assert_close(prefix[f], whole[..., :f], rtol=0, atol=1e-5)


def test_encodec_streaming_decode_equals_whole_decode(encodec, one_thread):
    """Upstream ``decode`` of the whole codes vs the streamed decode of the same codes pushed in pieces
    (0 to 6 frames). Tolerance 1e-3 (peak ~0.3): upstream's own decode of a 3-frame prefix differs from
    its whole decode by 1.9e-4 on these weights (oneDNN kernels round otherwise at small widths; changing
    every later code changes none of those samples, so this is rounding, not lookahead)."""
    tok, model = encodec
    x = signal(1.2, 4)
    tokens = tok.encode(x, 24000)
    s = tok.streaming()
    g = torch.Generator().manual_seed(4)
    audio, start = [], 0
    while start < tokens.codes.shape[-1]:
        stop = start + int(torch.randint(0, 7, (1,), generator=g))
        piece = slmtok.codecs.streaming.slice_frames(tokens, start, min(stop, tokens.codes.shape[-1]))
        audio.append(s.decoder.push(piece).wav)
        start = stop
    audio = torch.cat(audio, dim=-1)
    with torch.inference_mode():
        reference = model.decode([(tokens.codes, None)])
    assert audio.shape == reference.shape
    torch.testing.assert_close(audio, reference, rtol=0, atol=1e-3)


def card(relative: str):
    """A built-in hub card read from its file (``hub/cards/<family>/<name>.toml``)."""
    from slmtok.hub.cards import card_dirs

    return hub.load_card(card_dirs()[0] / relative)


def test_cards_and_tokenizers_state_causality_and_latency(mimi, encodec, tmp_path):
    """The hub cards say which tokenizers stream and their algorithmic latency (one frame + lookahead)."""
    mimi_card, encodec_card = card("hybrid/mimi.toml"), card("codec/encodec-24khz.toml")
    assert (mimi_card.causal, mimi_card.lookahead) == (True, 0)
    assert mimi_card.latency == pytest.approx(1920 / 24000)
    assert mimi_card.to_dict()["latency"] == pytest.approx(0.08)
    assert encodec_card.latency == pytest.approx(320 / 24000)
    assert card("codec/encodec-48khz.toml").causal is False
    assert card("codec/encodec-48khz.toml").latency is None
    for (tok, _), c in ((mimi, mimi_card), (encodec, encodec_card)):
        assert (tok.causal, tok.lookahead) == (c.causal, c.lookahead)
    text = Path(encodec_card.path).read_text().replace("causal = true", "").replace("lookahead = 0", "")
    for bad in ('causal = "yes"', "lookahead = -1"):
        path = tmp_path / "bad.toml"
        path.write_text(bad + "\n" + text)
        with pytest.raises(CardError):
            hub.load_card(path)


def test_non_causal_tokenizer_refuses_streaming_in_one_line(tmp_path):
    path = standins.write_encodec(tmp_path / "encodec_48khz-00000000.th", "48khz")
    tok = slmtok.load("encodec-48khz", checkpoint=str(path))
    with pytest.raises(StreamingError) as info:
        tok.streaming()
    assert "not causal" in str(info.value) and "\n" not in str(info.value)


def test_bad_pushes_are_one_line_errors_and_lose_nothing(mimi, one_thread):
    tok, model = mimi
    x = signal(1.0, 7)
    s = tok.streaming(max_seconds=1.2)
    first = s.encoder.push(x[:5000])
    for bad in (torch.zeros(2, 1, 100), torch.zeros(1, 1, 1, 10), "audio"):
        with pytest.raises(StreamingError):
            s.encoder.push(bad)
    with pytest.raises(StreamingError, match="max_seconds"):
        s.encoder.push(torch.zeros(24000))  # 5000 + 24000 samples > 1.2 s
    rest = s.encoder.push(x[5000:])
    last = s.encoder.flush()
    codes = torch.cat([first.codes, rest.codes, last.codes], dim=-1)
    with torch.inference_mode():
        reference = model.encode(x[None, None], num_quantizers=8).audio_codes
    assert torch.equal(codes, reference)
    with pytest.raises(StreamingError, match="flushed"):
        s.encoder.push(x[:10])
    with pytest.raises(StreamingError):
        tok.streaming(batch_size=0)


def test_stream_resynth_cli_reports_latency(mimi, mimi_folder, tmp_path, capsys):
    """``slmtok stream-resynth``: writes the resynthesis (transformers' whole decode, cut to the input)
    and reports per-chunk latency; a missing input is one line, exit 1."""
    from slmtok.audio import read_audio, write_audio
    from slmtok.cli.main import main

    tok, model = mimi
    x = signal(1.0, 8) * 0.5
    src = tmp_path / "in.wav"
    write_audio(src, x[None], 24000)
    x = read_audio(src)[0][0]  # what the file holds (16-bit PCM)
    folder = mimi_folder
    out = tmp_path / "out.wav"
    args = ["stream-resynth", str(src), "-o", str(out), "--checkpoint", str(folder), "--json"]
    assert main(args + ["--chunk-ms", "80"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["chunks"] == 13 and report["latency_p95_ms"] >= report["latency_median_ms"] > 0
    assert isinstance(report["keeps_up"], bool) and report["engine"] == "carried"
    wav, rate = read_audio(out)
    with torch.inference_mode():
        codes = model.encode(x[None, None], num_quantizers=8).audio_codes
        reference = model.decode(codes).audio_values[0, :, : x.numel()].clamp(-1, 1)
    assert rate == 24000 and wav.shape == reference.shape
    torch.testing.assert_close(wav, reference, rtol=0, atol=2 / 32768)
    assert main(["stream-resynth", str(tmp_path / "missing.wav"), "-o", str(out)]) == 1
    assert "slmtok: error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "stride", "dilation", "steps", "bias"),
    [
        (12, 20, 16, 8, 1, 4, True),  # strided, as the encoder's downsampling layers
        (9, 7, 7, 1, 1, 40, False),
        (5, 6, 3, 1, 2, 3, True),  # dilated
        (4, 3, 2, 1, 1, 1, True),  # a single output step
        (6, 5, 3, 1, 1, 200, True),  # more steps than SMALL_STEPS: torch's own path
    ],
)
def test_small_convolutions_as_matrix_products_equal_torch(
    one_thread, cin, cout, kernel, stride, dilation, steps, bias
):
    """The carried engine's ``conv1d`` / ``conv_transpose1d`` (one matrix product when few steps are due)
    against ``torch.nn.Conv1d`` / ``ConvTranspose1d`` themselves: same shape, float32 rounding apart."""
    from slmtok.codecs.mimi_streaming import conv1d, conv_transpose1d

    torch.manual_seed(steps)
    conv = torch.nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation, bias=bias)
    x = torch.randn(2, cin, (steps - 1) * stride + (kernel - 1) * dilation + 1)
    with torch.inference_mode():
        expected, got = conv(x), conv1d(conv, x)
    assert got.shape == expected.shape == (2, cout, steps)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    if dilation == 1:
        transposed = torch.nn.ConvTranspose1d(cin, cout, kernel, stride=stride, bias=bias)
        x = torch.randn(2, cin, steps)
        with torch.inference_mode():
            expected, got = transposed(x), conv_transpose1d(transposed, x)
        assert got.shape == expected.shape == (2, cout, (steps - 1) * stride + kernel)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
